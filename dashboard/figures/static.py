"""Plotly figures as PNG bytes for documents (the tumour-board report), offline.

Why two renderers: Plotly's own exporter, ``kaleido`` (1.x), draws the figure
exactly as the app shows it, but it drives a Chrome/Chromium installed on the
machine (Debian: ``apt-get install chromium``; kaleido 0.2.1, which bundled its
own browser, no longer works with Plotly 7). Where no browser is installed or
it fails to start, the figure is redrawn with matplotlib from the same figure
spec: scatter lines, markers and bands, waterfalls and bars, with each trace's
subplot, colours and titles. It is plainer than the app, but the numbers and
the layout are the same, and a report never fails because a browser is missing.

``renderer()`` says which one is in use; the report prints it.

Why one browser kept open (``keep_warm``, issue 23): starting kaleido's Chromium took most of the
tumour-board PDF's time (18 of 20 s on a loaded two-core machine, 4-11 s quiet), for two figures
that then draw in well under a second each. The app starts one browser in the background when a
patient's report section is shown and keeps it for the process (about 150 MB); every report's
figures go to it, one at a time. Plotly's exporter draws exactly what it drew before, so the
PDF's content is unchanged. If that browser dies, the figure is drawn by a fresh one (the old
path) and the next report starts another; if none starts, matplotlib redraws, as before. The CLI
(``oncolens report``, one report per process) does not keep one: it starts one per report.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_KALEIDO_STATE: dict[str, object] = {}  # "ok": bool once tried; "why": the reason it is off
CHROME_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _kaleido_png(fig: go.Figure, width: int, height: int) -> bytes:
    # lazy: warnings is imported only when this is used (start-up time)
    import warnings

    # lazy: plotly is imported only when this is used (start-up time)
    import plotly.io as pio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "kopts ignored if using a server": expected
        return pio.to_image(fig, format="png", width=width, height=height, scale=1)


def kaleido_available() -> tuple[bool, str]:
    """(usable, why not): kaleido >= 1 imports and a Chrome/Chromium binary is on the PATH."""
    try:
        import kaleido  # noqa: F401

        # lazy: plotly is imported only when this is used (start-up time)
        from plotly.io._kaleido import kaleido_available as plotly_sees_it
    except ImportError as exc:
        return False, f"kaleido is not installed ({exc})"
    if not plotly_sees_it():
        return False, "plotly needs kaleido >= 1"
    if not any(shutil.which(n) for n in CHROME_NAMES):
        return False, "no Chrome/Chromium installed (apt-get install chromium)"
    return True, ""


def renderer() -> str:
    """``"kaleido"`` or ``"matplotlib"``: what ``figure_png`` uses in this process."""
    ok, _ = kaleido_available()
    return "kaleido" if ok and _KALEIDO_STATE.get("ok", True) else "matplotlib"


BROWSER_NICE = 10  # the kept browser's priority: below the app's script runs
WARM_TIMEOUT_S = 120.0  # the warm browser's start and each figure, at most (a loaded machine)


class WarmBrowser:
    """One kaleido Chromium kept open in a thread of its own, with its own asyncio loop.

    Why not kaleido's ``start_sync_server``: its callers wait on a queue with no timeout, so a
    browser that dies leaves every later report waiting forever. Here each figure waits at most
    ``WARM_TIMEOUT_S``, a dead browser is seen (``alive``) and replaced.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop = None
        self._stop = None
        self._kaleido = None
        self.error: BaseException | None = None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the browser in the background (returns at once); nothing if it is running."""
        if self.alive():
            return
        self._ready.clear()
        self._kaleido, self.error = None, None
        self._thread = threading.Thread(target=self._run, name="oncolens-kaleido", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # lazy: asyncio and kaleido only in the thread that keeps the browser
        import asyncio
        import contextlib  # lazy: (the same)
        import os  # lazy: (the same)

        # Linux keeps a nice value per thread, and the browser this thread starts inherits it: its
        # start (seconds of CPU) then yields to the page being drawn on the same cores. (Run as
        # root, as in some containers, Chromium raises its own main process again.)
        with contextlib.suppress(OSError, AttributeError):
            os.nice(BROWSER_NICE)

        # lazy: kaleido is imported only when this is used (start-up time)
        import kaleido

        async def hold() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with kaleido.Kaleido(n=1, timeout=WARM_TIMEOUT_S) as k:
                await k.calc_fig(go.Figure().to_dict(), opts={"format": "png"})  # loads Plotly.js
                self._kaleido = k
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(hold())
        except BaseException as exc:  # noqa: BLE001 - said by png(); the thread ends
            self.error = exc
        finally:
            self._kaleido = None
            self._ready.set()

    def png(self, fig: go.Figure, width: int, height: int) -> bytes:
        """The figure drawn by the warm browser (waits for its start); raises if it is not up."""
        # lazy: asyncio only where the warm browser is used
        import asyncio

        if not self._ready.wait(WARM_TIMEOUT_S) or self._kaleido is None or self._loop is None:
            raise RuntimeError(f"the kept browser is not up ({self.error or 'still starting'})")
        opts = {"format": "png", "width": width, "height": height, "scale": 1}
        job = asyncio.run_coroutine_threadsafe(
            self._kaleido.calc_fig(fig.to_dict(), opts=opts), self._loop
        )
        return job.result(WARM_TIMEOUT_S)

    def stop(self) -> None:
        """Close the browser and wait for its thread (at exit; tests)."""
        if self.alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)


_WARM = WarmBrowser()
_WARM_LOCK = threading.Lock()
# PNGs the kept browser drew, by the figure's JSON and size (the app's process only): a report built
# again for the same patient and data redraws nothing (issue 23); a few MB at most
DRAWN_KEPT = 16
_DRAWN: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()


def keep_warm() -> bool:
    """Start (once per process) the browser every later figure of this process goes to.

    Returns whether kaleido is the renderer (False: matplotlib redraws, nothing to start).
    """
    if renderer() != "kaleido":
        return False
    with _WARM_LOCK:
        if not _WARM.alive():
            if _WARM._thread is None:  # first start in this process: close it at exit
                # lazy: atexit only where a browser is kept
                import atexit

                atexit.register(_WARM.stop)
            _WARM.start()
    return True


def figure_png(
    fig: go.Figure, width: int = 1000, height: int | None = None, *, prefer: str = "auto"
) -> bytes:
    """The figure as PNG bytes; ``prefer="matplotlib"`` skips kaleido (tests of the fallback).

    With a kept browser (``keep_warm``) it draws there; if that fails, a browser of its own
    draws it (kaleido's one-shot path), and if none starts, matplotlib.
    """
    height = int(height or fig.layout.height or 500)
    if prefer != "matplotlib" and renderer() == "kaleido":
        if _WARM._thread is not None:  # this process keeps a browser
            key = (hashlib.sha256(fig.to_json().encode()).hexdigest(), width, height)
            with _LOCK:
                if key in _DRAWN:  # the same figure drawn before: the same PNG (a second report)
                    _DRAWN.move_to_end(key)
                    return _DRAWN[key]
            try:
                with _LOCK:  # one figure at a time: two cores
                    png = _WARM.png(fig, width, height)
                    _DRAWN[key] = png
                    while len(_DRAWN) > DRAWN_KEPT:
                        _DRAWN.popitem(last=False)
                    return png
            except Exception as exc:  # noqa: BLE001 - a browser that died: a fresh one below
                log.warning("the kept kaleido browser failed (%s); starting another", exc)
                _WARM.stop()
                keep_warm()  # for the next figure or report
        try:
            with (
                _LOCK
            ):  # one browser at a time: two cores, and kaleido's sync server is per process
                return _kaleido_png(fig, width, height)
        except Exception as exc:  # noqa: BLE001 - a browser that does not start: redraw instead
            _KALEIDO_STATE.update(ok=False, why=str(exc))
            log.warning("kaleido failed (%s); figures are redrawn with matplotlib", exc)
    return matplotlib_png(fig, width, height)


def figures_png_later(figs: list[tuple[go.Figure, int, int | None]]) -> Callable[[], list[bytes]]:
    """``figures_png(figs)``, started now where a browser is kept, collected by calling the result.

    Why (issue 23): in the app the kept browser draws the report's figures while the report reads
    its key images (the model's work), instead of after; the PDF waited for both, one after the
    other. Where no browser is kept (the CLI) it draws when called, exactly as before. Errors
    are raised by the call, as ``figures_png`` raises them.
    """
    if _WARM._thread is None:
        return lambda: figures_png(figs)
    done: dict[str, object] = {}

    def draw() -> None:
        try:
            done["pngs"] = figures_png(figs)
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller's collect()
            done["error"] = exc

    worker = threading.Thread(target=draw, name="oncolens-report-figures", daemon=True)
    worker.start()

    def collect() -> list[bytes]:
        worker.join()
        if "error" in done:
            raise done["error"]  # type: ignore[misc]
        return done["pngs"]  # type: ignore[return-value]

    return collect


def figures_png(figs: list[tuple[go.Figure, int, int | None]]) -> list[bytes]:
    """Several figures at once: with kaleido one browser serves them all (about 4 s to start it, then
    a fraction of a second per figure, instead of 6 s each), and it is stopped afterwards. In a
    process that keeps a browser (``keep_warm``: the app) they all go to that one instead."""
    if _WARM._thread is not None:
        return [figure_png(fig, width, height) for fig, width, height in figs]
    server = False
    if renderer() == "kaleido" and len(figs) > 1:
        try:
            # lazy: kaleido is imported only when this is used (start-up time)
            import kaleido

            kaleido.start_sync_server(silence_warnings=True)
            server = True
        except Exception as exc:  # noqa: BLE001 - fall back to one browser per figure
            log.info("kaleido server did not start: %s", exc)
    try:
        return [figure_png(fig, width, height) for fig, width, height in figs]
    finally:
        if server:
            # lazy: kaleido is imported only when this is used (start-up time)
            import kaleido

            kaleido.stop_sync_server(silence_warnings=True)


# --- the matplotlib redraw -------------------------------------------------------------------


def _axis_index(ref: str | None, prefix: str) -> int:
    ref = ref or prefix
    tail = ref[len(prefix) :]
    return int(tail) if tail else 1


def _colour(value, default="#1f77b4"):
    if not value:
        return default
    text = str(value).strip()
    if text.startswith("rgba(") or text.startswith("rgb("):
        parts = [float(p) for p in text[text.index("(") + 1 : -1].split(",")]
        rgb = tuple(p / 255 for p in parts[:3])
        return (*rgb, parts[3]) if len(parts) == 4 else rgb
    return text


def _plain(values):
    """A trace's values as a list: Plotly keeps numeric arrays as typed base64 ("bdata") objects."""
    if isinstance(values, dict) and "bdata" in values:
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        return flat.tolist()
    return list(values) if values is not None else []


def _xs(values):
    arr = _plain(values)
    if arr and isinstance(arr[0], str):
        try:
            return list(pd.to_datetime(arr))
        except (ValueError, TypeError):
            return arr
    return arr


def matplotlib_png(fig: go.Figure, width: int = 1000, height: int = 500) -> bytes:
    """Redraw the figure's scatter, waterfall and bar traces with matplotlib (Agg), one panel per y axis."""
    # lazy: matplotlib is imported only when this is used (start-up time)
    import matplotlib

    matplotlib.use("Agg", force=False)
    # lazy: matplotlib is imported only when this is used (start-up time)
    import matplotlib.pyplot as plt

    spec = fig.to_dict()
    layout = spec.get("layout", {})
    y_axes = sorted({_axis_index(t.get("yaxis"), "y") for t in spec.get("data", [])} or {1})
    # subplot order: top panel first (larger domain start = higher up)
    domains = {
        i: (layout.get("yaxis" if i == 1 else f"yaxis{i}", {}) or {}).get("domain", [0, 1])
        for i in y_axes
    }
    y_axes.sort(key=lambda i: -domains[i][0])
    sizes = [max(domains[i][1] - domains[i][0], 0.1) for i in y_axes]
    dpi = 100
    mfig, axes = plt.subplots(
        len(y_axes),
        1,
        figsize=(width / dpi, height / dpi),
        dpi=dpi,
        squeeze=False,
        gridspec_kw={"height_ratios": sizes},
    )
    ax_of = {i: axes[k][0] for k, i in enumerate(y_axes)}
    titles = [
        a.get("text")
        for a in layout.get("annotations", [])
        if a.get("xref") == "paper" and a.get("yanchor") == "bottom" and a.get("text")
    ]
    for k, i in enumerate(y_axes):
        if len(y_axes) > 1 and k < len(titles):
            ax_of[i].set_title(titles[k], fontsize=9, loc="left")
    for trace in spec.get("data", []):
        ax = ax_of[_axis_index(trace.get("yaxis"), "y")]
        kind = trace.get("type", "scatter")
        name = trace.get("name")
        label = name if trace.get("showlegend", True) and name else None
        if kind == "scatter":
            x, y = _xs(trace.get("x")), _plain(trace.get("y"))
            if not x or not y:
                continue
            mode = trace.get("mode") or "lines"
            line = trace.get("line") or {}
            marker = trace.get("marker") or {}
            if trace.get("fill") == "toself":
                ax.fill(
                    x, y, color=_colour(trace.get("fillcolor"), "#cccccc"), linewidth=0, label=label
                )
                continue
            style = {"dash": "--", "dot": ":", "dashdot": "-."}.get(line.get("dash"), "-")
            colour = _colour(line.get("color") or marker.get("color"))
            if "lines" in mode:
                ax.plot(
                    x,
                    y,
                    linestyle=style,
                    color=colour,
                    linewidth=min(float(line.get("width") or 1.5), 8),
                    label=label,
                    drawstyle="steps-post" if line.get("shape") == "hv" else "default",
                )
                label = None
            if "markers" in mode:
                ax.scatter(
                    x,
                    y,
                    s=(float(marker.get("size") or 6)) ** 2 / 2,
                    color=_colour(marker.get("color")),
                    label=label,
                    zorder=3,
                )
            if "text" in mode and trace.get("text"):
                for xi, yi, t in zip(x, y, trace["text"], strict=False):
                    ax.annotate(
                        str(t), (xi, yi), fontsize=7, textcoords="offset points", xytext=(0, 5)
                    )
        elif kind == "waterfall":
            labels, values = _plain(trace.get("y")), [float(v) for v in _plain(trace.get("x"))]
            measures = list(trace.get("measure") or ["relative"] * len(values))
            start, running, lefts, widths, colours = 0.0, 0.0, [], [], []
            for v, m in zip(values, measures, strict=False):
                if m == "absolute":
                    running, start = v, 0.0
                    lefts.append(0.0)
                    widths.append(v)
                    colours.append("#5f6b73")
                elif m == "total":
                    lefts.append(0.0)
                    widths.append(running)
                    colours.append("#5f6b73")
                else:
                    start = running
                    running += v
                    lefts.append(start)
                    widths.append(v)
                    colours.append("#0072B2" if v >= 0 else "#D55E00")
            pos = np.arange(len(labels))
            ax.barh(pos, widths, left=lefts, color=colours)
            ax.set_yticks(pos, labels, fontsize=7)
            ax.invert_yaxis()
            for p, left, w, text in zip(pos, lefts, widths, trace.get("text") or [], strict=False):
                ax.annotate(
                    str(text),
                    (left + w, p),
                    fontsize=7,
                    va="center",
                    xytext=(3 if w >= 0 else -3, 0),
                    textcoords="offset points",
                    ha="left" if w >= 0 else "right",
                )
        elif kind == "bar":
            x, y = _plain(trace.get("x")), _plain(trace.get("y"))
            if trace.get("orientation") == "h":
                ax.barh(y, x, label=label)
            else:
                ax.bar(x, y, label=label)
    for i, ax in ax_of.items():
        axis = layout.get("yaxis" if i == 1 else f"yaxis{i}", {}) or {}
        title = (axis.get("title") or {}).get("text")
        if title:
            ax.set_ylabel(title.replace("<br>", "\n"), fontsize=8)
        if axis.get("range") and axis.get("type") != "category":
            ax.set_ylim(*axis["range"])
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
    # the builders' x range (the timeline spans her own course), the same on the shared axis of every panel
    x_range = (layout.get("xaxis") or {}).get("range")
    if x_range and len(x_range) == 2:
        for ax in ax_of.values():
            ax.set_xlim(*_xs(x_range))
    xaxis_title = ((layout.get("xaxis") or {}).get("title") or {}).get("text")
    if xaxis_title:
        axes[-1][0].set_xlabel(xaxis_title.replace("<br>", " "), fontsize=8)
    title = (layout.get("title") or {}).get("text")
    if title:
        mfig.suptitle(title.replace("<br>", " "), fontsize=10)
    mfig.tight_layout()
    buffer = io.BytesIO()
    mfig.savefig(buffer, format="png", dpi=dpi)
    plt.close(mfig)
    return buffer.getvalue()
