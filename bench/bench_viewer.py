"""The in-browser viewer: first render of a volume after the page opens, and slices per second scrolling.

A Streamlit app (``bench/viewer_app.py``) shows the demo volume (128 x 128 x 64, the
issue's series size) in the viewer, served as ``streamlit run`` serves it; Debian's
Chromium, driven by Playwright, opens it afresh each time (a new browser context, so a
cold cache, after one warm-up run so Python's imports are not counted).

Every time is read on the browser's own clocks, not Playwright's (whose polling under load
adds seconds): the page's navigation start is 0.

- first render: navigation start -> the viewer's draw, with where the time went: the
  payload's websocket frame arriving (Chrome DevTools Protocol, Network domain), the iframe
  starting to load, then in the frame: module loaded, render event, NiiVue attached, decoded,
  uploaded, drawn; beside it Streamlit's own floor, an empty page's first element
  (``bench/viewer_empty_app.py``, served beside it);
- scrolling by the wheel: real wheel events over the canvas, each waited for until the
  viewer has moved the slice and drawn it; with the draws per wheel step, the resolution the
  level of detail learned for the scroll, and the time from the last step to the
  full-resolution picture;
- scrolling per frame: one slice per animation frame, for as long as the browser keeps up
  (what the screen shows, capped by its refresh rate, 60/s on most screens): with the level
  of detail as it learns (the viewer's default), every frame at its lowest resolution, and
  every frame at full resolution (no level of detail, as before it existed);
- the floors of this browser: its frame rate with nothing to draw, with a bare WebGL canvas
  of the viewer's size cleared each frame (what any WebGL viewer pays here per frame), and
  with NiiVue redrawing an unchanged slice each frame;
- the payload: its bytes over the websocket and its build time in Python, built and cached.

Targets (issue 21): first render <= 2 s, scrolling >= 20 slices/s. Headless Chromium
here draws WebGL in software (SwiftShader) on 2 shared cores: a clinician's GPU is faster.
``--gpu-compositing`` runs Chromium without ``--disable-gpu``: the page is composited by the
(software) GPU process too, as on a machine with a GPU, instead of read back per frame.

    python -m bench.bench_viewer [--runs 5] [--slices 40] [--gpu-compositing]
"""

from __future__ import annotations

import argparse
import base64
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

from tests.e2e import serving

APP = Path(__file__).resolve().parent / "viewer_app.py"
EMPTY_APP = Path(__file__).resolve().parent / "viewer_empty_app.py"
IFRAME = "iframe[title*='oncolens_viewer']"
EMPTY_MARK = "viewer bench: an empty page"
# the page's clock when its first text element appears (the empty page's floor)
FIRST_ELEMENT = """(() => {
  const seen = () => {
    if (!window.__firstElement && document.querySelector('[data-testid="stMarkdownContainer"]'))
      window.__firstElement = performance.now();
  };
  new MutationObserver(seen).observe(document, { childList: true, subtree: true });
})()"""
PER_FRAME = """async (n) => {
  const v = window.oncolensViewer;
  v.scroll(-v.state().vox[2]); // from the bottom slice
  await new Promise((r) => requestAnimationFrame(() => r()));
  const t0 = performance.now();
  let moved = 0;
  for (let i = 0; i < n; i++) {
    v.scroll(i < 60 ? 1 : -1); // up to the top, then back down
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


# From the last scroll step to the full-resolution picture (the level of detail's stop), in ms; 0 for a
# viewer without a level of detail.
TO_FULL = """async () => {
  const v = window.oncolensViewer;
  const t0 = performance.now();
  while (v.state().lod && !v.state().lod.settled) await new Promise((r) => requestAnimationFrame(() => r()));
  return performance.now() - t0;
}"""
# the scroll frames' budget (ms; Infinity: never reduced, 0: always the lowest resolution); False for a
# viewer without a level of detail
BUDGET = """(ms) => {
  const v = window.oncolensViewer;
  if (!v.setFrameBudget) return false;
  v.setFrameBudget(ms);
  return true;
}"""


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
# A bare WebGL2 canvas of the viewer's size over it, cleared to a new colour every frame for 2 s:
# what any WebGL viewer pays per presented frame in this browser, before drawing anything.
BARE_GL = """async () => {
  const under = document.getElementById("gl");
  const c = document.createElement("canvas");
  c.width = under.width;
  c.height = under.height;
  c.style.cssText = `position:absolute;left:0;top:0;width:${under.clientWidth}px;height:${under.clientHeight}px`;
  under.parentElement.appendChild(c);
  const gl = c.getContext("webgl2", { antialias: false });
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 2000) {
    gl.clearColor((n % 50) / 50, 0.2, 0.3, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    await new Promise((r) => requestAnimationFrame(() => r()));
    n += 1;
  }
  const rate = n / ((performance.now() - t0) / 1000);
  c.remove();
  return rate;
}"""
# NiiVue redrawing the same slice every frame for 2 s: the viewer's draw with nothing moved.
NV_PER_FRAME = """async () => {
  const nv = window.oncolensViewer.nv;
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 2000) {
    nv.drawScene();
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
  const deferred = "draws" in v.state(); // scroll draws at the next frame: draw here instead
  gl.finish();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    v.scroll(i < 60 ? 1 : -1);
    if (deferred) v.nv.drawScene();
    gl.finish();
  }
  return n / ((performance.now() - t0) / 1000);
}"""
# the slice moved and a draw followed (a viewer without a draw counter, as before it had one: moved)
SHOWN = """(prev) => {
  const s = window.oncolensViewer.state();
  return s.vox[2] !== prev[0] && (s.draws === undefined || s.draws > prev[1]);
}"""


# the slice moved (drawn or not): the wheel loop's own floor, Playwright's round trips
MOVED = "(prev) => window.oncolensViewer.state().vox[2] !== prev[0]"


def _wheel_rate(page, frame, n: int, check: str) -> float:
    """Wheel steps per second over the canvas, each waited for until ``check`` (JS, given the
    previous [slice, draws]) holds: ``SHOWN`` moved and drawn, ``MOVED`` moved only."""
    state = "window.oncolensViewer.state()"
    s0 = frame.evaluate(state)
    shown, step = [s0["vox"][2], s0.get("draws")], -120
    t = time.perf_counter()
    for _ in range(n):
        if shown[0] in (0, s0["dims"][2] - 1):  # an end of the volume: back the other way
            step = -step
        page.mouse.wheel(0, step)
        frame.wait_for_function(check, arg=shown)
        shown = frame.evaluate(f"[{state}.vox[2], {state}.draws]")
    return n / (time.perf_counter() - t)


def payload_figures() -> tuple[float, float, int]:
    """(ms to build the payload, ms when cached, bytes sent) for the demo volume, best of 5."""
    # imported here, not at the top: the bench app imports this module for demo_volume alone
    from dashboard.figures.volume import Overlay, payload

    try:
        from dashboard.components.viewer.component import cached_payload
    except ImportError:  # a checkout from before the cache (the "before" of a comparison)
        cached_payload = None

    p = demo_volume()
    best, cached, size = float("inf"), float("inf"), 0
    for _ in range(5):
        t = time.perf_counter()
        data = payload(p.volume, p.affine, overlays=[Overlay("lesion", p.lesion)])
        best = min(best, time.perf_counter() - t)
        size = data.n_bytes
        if cached_payload is not None:
            cached_payload(p.volume, p.affine, overlays=[Overlay("lesion", p.lesion)])
            t = time.perf_counter()
            again = [Overlay("lesion", p.lesion.copy())]
            cached_payload(p.volume.copy(), p.affine, overlays=again)
            cached = min(cached, time.perf_counter() - t)
    return best * 1e3, cached * 1e3, size


class _Network:
    """The page's document request and websocket frames on the browser's monotonic clock (CDP)."""

    def __init__(self, context, page) -> None:
        self.document_at: float | None = None
        self.frames: list[tuple[float, int]] = []  # (seconds, bytes) of each frame received
        cdp = context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.webSocketFrameReceived", self._frame)
        cdp.send("Network.enable")

    def _request(self, event: dict) -> None:
        if self.document_at is None and event.get("type") == "Document":
            self.document_at = event["timestamp"]

    def _frame(self, event: dict) -> None:
        data = event["response"].get("payloadData", "")
        size = len(base64.b64decode(data)) if event["response"].get("opcode") == 2 else len(data)
        self.frames.append((event["timestamp"], size))

    def largest(self) -> tuple[float, int]:
        """(seconds after the document request, bytes) of the largest frame: the payload's."""
        at, size = max(self.frames, key=lambda f: f[1])
        return at - (self.document_at or at), size


def _open(browser, url: str) -> dict:
    """One fresh page; the figures of its first render (seconds from navigation start)."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(120_000)
    net = _Network(context, page)
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(IFRAME, state="attached")
    frame = page.locator(IFRAME).first.element_handle().content_frame()
    frame.wait_for_selector("body[data-ready]")
    wall = time.perf_counter() - t
    # the iframe's clock starts when it begins loading: its offset on the page's clock
    iframe_at = (
        frame.evaluate("performance.timeOrigin") - page.evaluate("performance.timeOrigin")
    ) / 1e3
    stages = frame.evaluate("window.oncolensViewer.state().timings")
    ws_at, ws_bytes = net.largest()
    return {
        "context": context,
        "page": page,
        "frame": frame,
        "wall": wall,
        "iframe": iframe_at,
        "drawn": iframe_at + stages["drawn"] / 1e3,
        "stages": stages,
        "ws_at": ws_at,
        "ws_bytes": ws_bytes,
    }


def _open_empty(browser, url: str) -> tuple[float, float]:
    """Streamlit's floor: (page clock, Playwright wall) seconds to an empty page's first element."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.add_init_script(FIRST_ELEMENT)
    page = context.new_page()
    page.set_default_timeout(120_000)
    t = time.perf_counter()
    page.goto(url)
    page.get_by_text(EMPTY_MARK).wait_for()
    wall = time.perf_counter() - t
    at = page.evaluate("window.__firstElement") / 1e3
    context.close()
    return at, wall


def _tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's live descendants: the Streamlit
    servers, Playwright's driver and every Chromium process. Less sensitive than wall time to the
    load of a shared machine (NaN where there is no /proc)."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        parent, cpu = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:  # fields after the command's ")": state ppid ... utime (14th) stime (15th)
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a process that ended meanwhile
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError):
        return float("nan")
    mine, total = {os.getpid()}, 0.0
    grew = True
    while grew:
        new = {pid for pid, pp in parent.items() if pp in mine and pid not in mine}
        mine |= new
        grew = bool(new)
    for pid in mine - {os.getpid()}:
        total += cpu.get(pid, 0.0)
    return total


def _median(values) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slices", type=int, default=40)
    ap.add_argument(
        "--gpu-compositing",
        action="store_true",
        help="Chromium without --disable-gpu: composited by its (here software) GPU process",
    )
    args = ap.parse_args(argv)
    print("## Viewer (issue 21): first render <= 2 s, scrolling >= 20 slices/s")
    ms, cached_ms, size = payload_figures()
    print(
        f"payload (128x128x64 + outline, NIfTI): {ms:.0f} ms in Python, {cached_ms:.1f} ms when "
        f"cached (a rerun, the same series), {size / 1e6:.2f} MB sent"
    )
    chromium = serving.chromium_path()
    try:
        from playwright.sync_api import sync_playwright  # optional: make browser-deps
    except ImportError:
        chromium = None
    if chromium is None:
        print("browser figures skipped: no Chromium or no Playwright (make browser-deps)")
        return 0
    flags = list(serving.CHROMIUM_ARGS)
    if args.gpu_compositing:
        flags = [f for f in flags if f != "--disable-gpu"] + ["--enable-unsafe-swiftshader"]
    with (
        serving.serving(serving.run_command(APP), None, timeout_s=60) as (url, _proc, _s),
        serving.serving(serving.run_command(EMPTY_APP), None, timeout_s=60) as (empty, _p, _t),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        _open(browser, url)["context"].close()  # warm-up: Python's imports, the first run
        _open_empty(browser, empty)
        opens, empties = [], []
        for _ in range(args.runs):
            cpu = _tree_cpu_seconds()
            run = _open(browser, url)
            run["cpu"] = _tree_cpu_seconds() - cpu
            run["context"].close()
            opens.append(run)
            empties.append(_open_empty(browser, empty))
        run = _open(browser, url)
        page, frame = run["page"], run["frame"]
        frame.locator("#gl").hover()
        state = "window.oncolensViewer.state()"
        s0 = frame.evaluate(state)
        wheel = _wheel_rate(page, frame, args.slices, SHOWN)
        after = frame.evaluate(f"{state}.draws")
        draws_per_step = (after - s0["draws"]) / args.slices if after is not None else float("nan")
        to_full = frame.evaluate(TO_FULL)
        lod = frame.evaluate(f"{state}.lod")
        harness = _wheel_rate(page, frame, args.slices, MOVED)
        frame.evaluate(TO_FULL)
        cpu = _tree_cpu_seconds()
        per_frame = frame.evaluate(PER_FRAME, args.slices)
        per_frame["cpu"] = (_tree_cpu_seconds() - cpu) / per_frame["moved"]
        frame.evaluate(TO_FULL)
        variants = {}
        for name, budget in (("lowest", 0), ("full", 1e12)):
            if not frame.evaluate(BUDGET, budget):
                break
            cpu = _tree_cpu_seconds()
            run_v = frame.evaluate(PER_FRAME, args.slices)
            run_v["cpu"] = (_tree_cpu_seconds() - cpu) / run_v["moved"]
            variants[name] = run_v
            frame.evaluate(TO_FULL)
        ceiling = frame.evaluate(RAF_CEILING)
        bare = frame.evaluate(BARE_GL)
        nv_frames = frame.evaluate(NV_PER_FRAME)
        drawn = frame.evaluate(DRAW, 60)
        renderer = frame.evaluate(
            "(() => { const g = document.createElement('canvas').getContext('webgl2');"
            " const d = g && g.getExtension('WEBGL_debug_renderer_info');"
            " return d ? g.getParameter(d.UNMASKED_RENDERER_WEBGL) : 'unknown'; })()"
        )
        run["context"].close()
        browser.close()
    drawn_at = [o["drawn"] for o in opens]
    print(
        f"first render after page open (browser clock, navigation start -> drawn): median "
        f"{_median(drawn_at):.2f} s, worst {max(drawn_at):.2f} s over {len(opens)} runs "
        f"(target <= 2 s); Playwright saw it at median {_median([o['wall'] for o in opens]):.2f} s; "
        f"CPU (Streamlit + Chromium, all processes) median {_median([o['cpu'] for o in opens]):.2f} s"
    )
    print(
        f"  Streamlit's floor, an empty page's first element: median "
        f"{_median([e[0] for e in empties]):.2f} s (Playwright: "
        f"{_median([e[1] for e in empties]):.2f} s)"
    )
    print(
        f"  the payload's websocket frame ({_median([o['ws_bytes'] for o in opens]) / 1e6:.2f} MB) "
        f"in at median {_median([o['ws_at'] for o in opens]):.2f} s; the viewer's iframe starts "
        f"loading at {_median([o['iframe'] for o in opens]):.2f} s; the viewer from there to drawn: "
        f"{_median([o['stages']['drawn'] for o in opens]) / 1e3:.2f} s"
    )
    keys = ["module", "ready", "attachSync", "renderEvent", "attached", "decoded", "uploaded"]
    keys.append("drawn")
    print(
        "  in the frame (ms since the iframe began loading, medians): "
        + ", ".join(f"{k} {_median([o['stages'].get(k, np.nan) for o in opens]):.0f}" for k in keys)
    )
    c = s0.get("canvas")
    if c:
        print(
            f"canvas {c['width']}x{c['height']} px for {c['cssWidth']}x{c['cssHeight']} CSS px "
            f"(devicePixelRatio {c['dpr']}), {s0['tiles']} tile(s) drawn (axial)"
        )
    print(
        f"scrolling by the wheel: {wheel:.1f} slices/s (each slice waited for until moved and "
        f"drawn; target >= 20), {draws_per_step:.2f} draws per wheel step; the loop's own floor "
        f"(waiting for the slice index only: Playwright's round trips) {harness:.1f} steps/s"
    )
    if lod:
        print(
            f"  level of detail: scroll frames drawn at {lod['scrollScale']:.2f} of the resolution "
            f"(learned; last frame {lod['lastFrameMs'] or 0:.0f} ms, budget {lod['budgetMs']:.0f} ms), "
            f"{lod['reducedDraws']} reduced draws; last step -> full-resolution picture "
            f"{to_full:.0f} ms"
        )
    rate = per_frame["moved"] / (per_frame["ms"] / 1e3)
    print(
        f"scrolling per animation frame: {rate:.1f} slices/s, "
        f"{per_frame['cpu'] * 1e3:.0f} ms CPU per slice (Chromium, all processes)"
    )
    labels = {
        "lowest": "every frame at the lowest resolution",
        "full": "every frame at full resolution",
    }
    for name, run_v in variants.items():
        print(
            f"  {labels[name]}: {run_v['moved'] / (run_v['ms'] / 1e3):.1f} slices/s, "
            f"{run_v['cpu'] * 1e3:.0f} ms CPU per slice"
        )
    print(
        f"  this browser's floors, frames/s: nothing to draw {ceiling:.1f}; a bare WebGL canvas of "
        f"the viewer's size cleared each frame {bare:.1f}; NiiVue redrawing the same slice "
        f"{nv_frames:.1f}"
    )
    print(f"the viewer's work per slice (move, draw, GPU finish): {drawn:.0f} slices/s")
    mode = "GPU compositing (no --disable-gpu)" if args.gpu_compositing else "--disable-gpu"
    print(
        f"WebGL renderer: {renderer}; Chromium {mode}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
