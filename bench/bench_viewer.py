"""The in-browser viewer: first render of a volume after the page opens, and slices per second scrolling.

A Streamlit app (``bench/viewer_app.py``) shows the demo volume (128 x 128 x 64, the
issue's series size) in the viewer, served as ``streamlit run`` serves it; Debian's
Chromium, driven by Playwright, opens it afresh each time (a new browser context,
after one warm-up run so Python's imports are not counted).

- first render: from ``page.goto`` to the viewer's ``body[data-ready]`` (the volume
  decoded, on the GPU and drawn), with where the time went in the frame (module
  loaded, render event, NiiVue attached, decoded, uploaded, drawn);
- scrolling by the wheel: real wheel events over the canvas, each waited for until the
  viewer reports the next slice (input to state, not the screen's refresh);
- scrolling per frame: one slice per animation frame, for as long as the browser keeps
  up (what the screen shows, capped by its refresh rate, 60/s on most screens);
- the payload: NIfTI + gzip in Python and its size over the websocket.

Targets (issue 21): first render <= 2 s, scrolling >= 20 slices/s. Headless Chromium
here draws WebGL in software (SwiftShader) on 2 shared cores: a clinician's GPU is faster.

    python -m bench.bench_viewer [--runs 5] [--slices 40]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

from tests.e2e import serving

APP = Path(__file__).resolve().parent / "viewer_app.py"
IFRAME = "iframe[title*='oncolens_viewer']"
PER_FRAME = """async (n) => {
  const v = window.oncolensViewer;
  const start = 0;
  v.scroll(-v.state().vox[2]); // from the bottom slice
  const t0 = performance.now();
  let moved = 0;
  for (let i = 0; i < n; i++) {
    v.scroll(start + i < 60 ? 1 : -1); // up to the top, then back down
    moved += 1;
    await new Promise((r) => requestAnimationFrame(() => r()));
  }
  return { moved, ms: performance.now() - t0 };
}"""


@functools.cache
def demo_volume():
    """The demo volume, drawn once per process (the bench app's page reruns reuse it)."""
    from models.training.phantom_volume import brain_phantom

    return brain_phantom()


# The browser's own frame rate with nothing to draw: the ceiling of anything per frame on this machine.
RAF_CEILING = """async () => {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 2000) {
    await new Promise((r) => requestAnimationFrame(() => r()));
    n += 1;
  }
  return n / ((performance.now() - t0) / 1000);
}"""
# The viewer's own work per slice (move, draw, wait for the GPU), without waiting for the screen.
DRAW = """(n) => {
  const v = window.oncolensViewer;
  v.scroll(-v.state().vox[2]);
  const gl = v.nv.gl;
  gl.finish();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    v.scroll(i < 60 ? 1 : -1);
    gl.finish();
  }
  return n / ((performance.now() - t0) / 1000);
}"""


def payload_figures() -> tuple[float, int]:
    """(ms to build the payload, bytes sent) for the demo volume, best of 5."""
    from dashboard.figures.volume import Overlay, payload
    from models.training.phantom_volume import brain_phantom

    p = brain_phantom()
    best, size = float("inf"), 0
    for _ in range(5):
        t = time.perf_counter()
        data = payload(p.volume, p.affine, overlays=[Overlay("lesion", p.lesion)])
        best = min(best, time.perf_counter() - t)
        size = data.n_bytes
    return best * 1e3, size


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(120_000)
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(IFRAME, state="attached")
    frame = page.locator(IFRAME).first.element_handle().content_frame()
    frame.wait_for_selector("body[data-ready]")
    seconds = time.perf_counter() - t
    # when the iframe began loading, after the page's own navigation: Streamlit's share of the wait
    iframe_at = (
        frame.evaluate("performance.timeOrigin") - page.evaluate("performance.timeOrigin")
    ) / 1e3
    return context, page, frame, (seconds, iframe_at)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slices", type=int, default=40)
    args = ap.parse_args(argv)
    print("## Viewer (issue 21): first render <= 2 s, scrolling >= 20 slices/s")
    ms, size = payload_figures()
    print(f"payload (128x128x64 + outline, NIfTI): {ms:.0f} ms in Python, {size / 1e6:.2f} MB sent")
    chromium = serving.chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        print("browser figures skipped: no Chromium or no Playwright (make browser-deps)")
        return 0
    with serving.serving(serving.run_command(APP), None, timeout_s=60) as (url, _proc, _s):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=serving.CHROMIUM_ARGS)
            context, *_ = _open(browser, url)  # warm-up: Python's imports, the first script run
            context.close()
            opens, iframes, stages = [], [], []
            for _ in range(args.runs):
                context, page, frame, (seconds, iframe_at) = _open(browser, url)
                opens.append(seconds)
                iframes.append(iframe_at)
                stages.append(frame.evaluate("window.oncolensViewer.state().timings"))
                context.close()
            context, page, frame, _ = _open(browser, url)
            canvas = frame.locator("#gl")
            canvas.hover()
            slice_now = "window.oncolensViewer.state().vox[2]"
            current, step = frame.evaluate(slice_now), -120
            t = time.perf_counter()
            for _ in range(args.slices):
                if current in (0, 63):  # an end of the volume: scroll back the other way
                    step = -step
                page.mouse.wheel(0, step)
                frame.wait_for_function(f"prev => {slice_now} !== prev", arg=current)
                current = frame.evaluate(slice_now)
            wheel = args.slices / (time.perf_counter() - t)
            per_frame = frame.evaluate(PER_FRAME, args.slices)
            ceiling = frame.evaluate(RAF_CEILING)
            drawn = frame.evaluate(DRAW, 60)
            renderer = frame.evaluate(
                "(() => { const g = document.createElement('canvas').getContext('webgl2');"
                " const d = g && g.getExtension('WEBGL_debug_renderer_info');"
                " return d ? g.getParameter(d.UNMASKED_RENDERER_WEBGL) : 'unknown'; })()"
            )
            context.close()
            browser.close()
    o = np.array(opens)
    print(
        f"first render after page open: median {np.median(o):.2f} s, worst {o.max():.2f} s "
        f"over {len(o)} runs (target <= 2 s)"
    )
    print(
        f"  of which Streamlit (page load, websocket, script run) until the viewer's iframe starts "
        f"loading: median {np.median(iframes):.2f} s; the viewer from there to drawn: median "
        f"{np.median([st['drawn'] for st in stages]) / 1e3:.2f} s"
    )
    keys = ["module", "renderEvent", "attached", "decoded", "uploaded", "drawn"]
    med = {k: float(np.median([s.get(k, np.nan) for s in stages])) for k in keys}
    print(
        "  in the frame (ms since the iframe began loading, medians): "
        + ", ".join(f"{k} {med[k]:.0f}" for k in keys)
    )
    print(f"scrolling by the wheel: {wheel:.1f} slices/s (each slice waited for; target >= 20)")
    rate = per_frame["moved"] / (per_frame["ms"] / 1e3)
    print(
        f"scrolling per animation frame: {rate:.1f} slices/s; the browser's empty frame rate here "
        f"{ceiling:.1f}/s (the ceiling of anything per frame)"
    )
    print(f"the viewer's work per slice (move, draw, GPU finish): {drawn:.0f} slices/s")
    print(
        f"WebGL renderer: {renderer}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
