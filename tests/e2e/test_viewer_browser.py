"""The Imaging page's viewer in Chromium: it draws above the fold, the mouse windows, an overlay toggles,
the wheel and the arrow keys scroll slices, the planes switch, the caliper measures in mm, and a fast
scroll drawn at a reduced resolution lands on the exact slice and ends on the full-resolution picture.

Why in a browser: the viewer is WebGL (NiiVue) inside a component iframe; AppTest sees only the
arguments it is sent. What is on screen is read two ways: the viewer's own state
(``window.oncolensViewer.state()``: slice, window, overlays, measurement) and the canvas's pixels
(screenshots compared), so a state that changes without the picture changing fails too.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.helpers import (
    ARTIFACTS,
    assert_no_exception,
    open_page,
    screenshot,
    settle,
    sign_in,
)

VIEWER_IFRAME = "iframe[title*='oncolens_viewer']"
# eight wheel steps over the canvas in one task (one frame), away from the volume's ends; what moved
# and how many draws followed by the next frame
BURST = """async (n) => {
  const v = window.oncolensViewer;
  const canvas = document.getElementById("gl");
  v.scroll(32 - v.state().vox[2]);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const start = v.state();
  const r = canvas.getBoundingClientRect();
  for (let i = 0; i < n; i++) {
    canvas.dispatchEvent(new WheelEvent("wheel", { deltaY: 120, clientX: r.left + r.width / 2,
      clientY: r.top + r.height / 2, bubbles: true, cancelable: true }));
  }
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const end = v.state();
  return { moved: end.vox[2] - start.vox[2], draws: end.draws - start.draws, slice: end.vox[2] };
}"""


# A fast burst of wheel steps over the canvas, ``per_frame`` of them in each animation frame: where the
# slice is after each frame, the canvas's backing-store width then, and the draws the burst cost.
FAST_WHEEL = """async ({ n, perFrame, deltaY }) => {
  const v = window.oncolensViewer;
  const canvas = document.getElementById("gl");
  const r = canvas.getBoundingClientRect();
  const start = v.state();
  const widths = [], slices = [];
  let frames = 0;
  for (let i = 0; i < n; i++) {
    canvas.dispatchEvent(new WheelEvent("wheel", { deltaY, clientX: r.left + r.width / 2,
      clientY: r.top + r.height / 2, bubbles: true, cancelable: true }));
    if ((i + 1) % perFrame === 0) {
      await new Promise((done) => requestAnimationFrame(() => done()));
      frames += 1;
      widths.push(canvas.width);
      slices.push(v.state().vox[2]);
    }
  }
  return { start: start.vox[2], startDraws: start.draws, frames, widths, slices };
}"""
SETTLED = "window.oncolensViewer.state().lod.settled"
BENCH_APP = Path(__file__).resolve().parents[2] / "bench" / "viewer_app.py"


def _frame(page, previous: str | None = None):
    """The viewer's frame once it has drawn a payload (a new one when ``previous`` is given)."""
    page.wait_for_selector(VIEWER_IFRAME)
    frame = page.locator(VIEWER_IFRAME).first.element_handle().content_frame()
    if previous is None:
        frame.wait_for_selector("body[data-ready]")
    else:
        frame.wait_for_function(
            "prev => document.body.dataset.ready && document.body.dataset.ready !== prev",
            arg=previous,
        )
    return frame


def _state(frame) -> dict:
    return frame.evaluate("window.oncolensViewer.state()")


def _pixels(frame) -> np.ndarray:
    png = frame.locator("#gl").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey-level difference between two canvas screenshots (0-255)."""
    assert a.shape == b.shape
    return float(np.abs(a - b).mean())


def _drag(page, frame, dx: float, dy: float, start=(0.5, 0.5)) -> None:
    box = frame.locator("#gl").bounding_box()
    x0, y0 = box["x"] + box["width"] * start[0], box["y"] + box["height"] * start[1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):  # in steps, as a hand moves: NiiVue windows on every move
        page.mouse.move(x0 + dx * k / 10, y0 + dy * k / 10)
    page.mouse.up()


# The multiplanar view's tiles in CSS pixels: [left, top, width, height] of each plane's image.
MPR_TILES = """(() => { const nv = window.oncolensViewer.nv, d = nv.uiData.dpr || 1;
  return nv.screenSlices.filter((t) => t.axCorSag <= 2).map((t) => t.leftTopWidthHeight.map((v) => v / d)); })()"""


def _tiles_stand_apart(frame, min_gap_px: float = 12.0) -> None:
    """Neighbouring tiles of the multiplanar view are apart by at least ``min_gap_px``: NiiVue draws
    each tile's side labels just inside its edges, so touching tiles ran one tile's "L" into the
    next one's "P" ("LP", seen at 1366 x 768)."""
    tiles = frame.evaluate(MPR_TILES)
    for i, a in enumerate(tiles):
        for b in tiles[i + 1 :]:
            left, right = sorted((a, b), key=lambda t: t[0])
            top, below = sorted((a, b), key=lambda t: t[1])
            if min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1]):  # side by side
                assert right[0] - (left[0] + left[2]) >= min_gap_px, tiles
            if min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]):  # one above the other
                assert below[1] - (top[1] + top[3]) >= min_gap_px, tiles


def _open_imaging(page, app) -> None:
    sign_in(page, app.url, "oncologist", "oncologist-demo")
    open_page(page, "Imaging")
    page.get_by_role("heading", name="AI read").wait_for()


def test_the_image_is_in_the_viewer_above_the_fold_and_the_mouse_windows_it(page, app):
    _open_imaging(page, app)
    frame = _frame(page)
    assert_no_exception(page, "Imaging with the viewer")
    view = page.viewport_size
    top = frame.locator("#gl").bounding_box()["y"]  # Playwright gives it in the page's viewport
    # above the fold: the image starts in the first screen and at least 300 px of it show there
    assert top < view["height"] - 300, f"the image starts at {top:.0f} px of {view['height']}"
    screenshot(page, f"imaging-viewer-{view['width']}x{view['height']}")
    ARTIFACTS.mkdir(
        parents=True, exist_ok=True
    )  # and the first screen alone: what is above the fold
    page.screenshot(
        path=str(ARTIFACTS / f"imaging-viewer-fold-{view['width']}x{view['height']}.png")
    )

    before = _state(frame)
    assert not before["dims"][2] > 1  # a 2D image: one slice
    pixels = _pixels(frame)
    _drag(page, frame, 160, -90)  # W/L is the left button's tool by default
    after = _state(frame)
    assert after["window"] != before["window"]
    assert _changed(pixels, _pixels(frame)) > 2.0, "the window changed but the picture did not"

    # a preset puts a known window back, in the browser alone
    frame.locator("#preset").select_option(index=0)
    assert _state(frame)["window"] == before["window"]


def test_an_overlay_toggle_and_its_opacity_change_the_picture(page, app):
    _open_imaging(page, app)
    frame = _frame(page)
    names = [o["name"] for o in _state(frame)["overlays"]]
    assert "Saliency" in names, names
    box = frame.locator("input[data-overlay='Saliency']")
    assert not box.is_checked()  # off until asked for
    plain = _pixels(frame)
    box.check()
    with_map = _pixels(frame)
    assert _changed(plain, with_map) > 1.0, "the saliency overlay drew nothing"
    frame.locator("input[data-opacity='Saliency']").fill("1")
    assert _changed(with_map, _pixels(frame)) > 0.3, "opacity did not change the overlay"
    box.uncheck()
    assert _changed(plain, _pixels(frame)) < 0.5, "hiding the overlay did not restore the image"


def test_the_demo_volume_scrolls_switches_planes_and_measures_in_mm(page, app):
    _open_imaging(page, app)
    first = _frame(page)
    previous = first.evaluate("document.body.dataset.ready")
    page.locator(".st-key-imaging_source input").click()
    page.keyboard.type("Demo volume")
    page.keyboard.press("Enter")
    settle(page)
    page.get_by_text(re.compile("not a patient")).first.wait_for()
    frame = _frame(page, previous)
    assert_no_exception(page, "the demo volume")
    state = _state(frame)
    assert state["dims"] == [128, 128, 64] and state["plane"] == "Axial"
    start = state["vox"][2]

    # the mouse wheel over the image scrolls slices
    gl = frame.locator("#gl")
    gl.hover()
    pixels = _pixels(frame)
    for _ in range(5):
        page.mouse.wheel(0, -120)
    frame.wait_for_function(f"window.oncolensViewer.state().vox[2] !== {start}")
    scrolled = _state(frame)["vox"][2]
    assert abs(scrolled - start) >= 3
    assert _changed(pixels, _pixels(frame)) > 0.5, "the slice index moved but the picture did not"
    # and the keys: up one slice, page down five
    gl.click()  # focus (W/L tool: a click without a drag changes nothing else)
    page.keyboard.press("ArrowUp")
    assert _state(frame)["vox"][2] == min(scrolled + 1, 63)
    page.keyboard.press("PageDown")
    assert _state(frame)["vox"][2] == min(scrolled + 1, 63) - 5
    assert re.search(r"Axial slice \d+/64", frame.locator("#status").inner_text())

    # a burst of wheel steps within one frame (a fast wheel, a trackpad): every step moves the
    # slice, the picture is drawn once for the frame (NiiVue alone draws, and waits, per event)
    burst = frame.evaluate(BURST, 8)
    assert burst["moved"] == 8, burst
    assert 1 <= burst["draws"] <= 2, burst
    assert re.search(rf"Axial slice {burst['slice'] + 1}/64", frame.locator("#status").inner_text())

    # another plane scrolls along its own axis
    frame.locator("button[data-plane='Coronal']").click()
    coronal = _state(frame)
    assert coronal["plane"] == "Coronal"
    gl.click()
    page.keyboard.press("ArrowUp")
    moved = _state(frame)
    assert moved["vox"][1] != coronal["vox"][1] and moved["vox"][2] == coronal["vox"][2]
    frame.locator("button[data-plane='MPR']").click()
    assert _state(frame)["plane"] == "Multiplanar"
    # in the multiplanar view the wheel scrolls the plane under the pointer, one slice a step
    box = gl.bounding_box()
    tiles = frame.evaluate(
        "(() => { const nv = window.oncolensViewer.nv, d = nv.uiData.dpr || 1;"
        " return nv.screenSlices.filter((t) => t.axCorSag <= 2)"
        ".map((t) => ({ plane: t.axCorSag, x: (t.leftTopWidthHeight[0] + t.leftTopWidthHeight[2] / 2) / d,"
        " y: (t.leftTopWidthHeight[1] + t.leftTopWidthHeight[3] / 2) / d })); })()"
    )
    assert sorted(t["plane"] for t in tiles) == [0, 1, 2], tiles
    _tiles_stand_apart(frame)
    for tile in tiles:
        before = _state(frame)["vox"]
        page.mouse.move(box["x"] + tile["x"], box["y"] + tile["y"])
        page.mouse.wheel(0, 120 if before[2 - tile["plane"]] < 10 else -120)
        frame.wait_for_function(
            "prev => window.oncolensViewer.state().vox.join() !== prev",
            arg=",".join(map(str, before)),
        )
        after = _state(frame)["vox"]
        moved = [abs(a - b) for a, b in zip(after, before, strict=True)]
        # axial moves k, coronal j, sagittal i (NiiVue's plane codes 0, 1, 2)
        assert moved == [1 if axis == 2 - tile["plane"] else 0 for axis in range(3)], (tile, moved)
    frame.wait_for_function(SETTLED)  # the full-resolution picture, not a scroll frame's
    screenshot(page, f"imaging-viewer-volume-mpr-{page.viewport_size['width']}")
    frame.locator("button[data-plane='Axial']").click()

    # the caliper: a horizontal drag across a known number of voxels reads their width in mm
    frame.locator("button[data-tool='Caliper']").click()
    box = gl.bounding_box()
    # the axial slice is 128 x 128 voxels of 1.6 mm, fitted to the canvas
    px_per_mm = min(box["width"], box["height"]) / (128 * 1.6)
    drag_px = 120.0
    _drag(page, frame, drag_px, 0, start=(0.35, 0.5))
    measured = _state(frame)["measurementMm"]
    assert measured == pytest.approx(drag_px / px_per_mm, rel=0.06)
    assert "caliper" in frame.locator("#status").inner_text()
    screenshot(page, f"imaging-viewer-volume-{page.viewport_size['width']}")


def test_a_series_read_in_3d_shows_its_outline_and_the_saliency_map_toggles(browser, series_app):
    url, patients = series_app.url, series_app.volume_patients
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.set_default_timeout(90_000)
    page = context.new_page()
    try:
        sign_in(page, url, "oncologist", "oncologist-demo")
        ask = page.get_by_role("button", name=re.compile("Compute the saliency map"))
        for pid in patients:  # the MR patient has the 3D read; the CT one has none
            page.goto(f"{url}/imaging?patient={pid}")
            settle(page)
            # her series is offered once, as a series (never its slices), and opens in the viewer
            page.locator(".st-key-imaging_source input").click()
            options = page.locator('[role="option"]')
            options.first.wait_for()
            labels = options.all_inner_texts()
            assert not [t for t in labels if re.search(r" · (MR|CT) · .* · image \d+$", t)], labels
            series = options.filter(has_text=re.compile(r"series of \d+ images \(3D\)"))
            if not series.count():  # a patient whose series was not filed (the demo's CT)
                page.keyboard.press("Escape")
                continue
            series.first.click()
            settle(page)
            if ask.count():
                break
            assert page.get_by_text("No 3D AI read of this series").count()  # the CT one: why not
        ask.click()
        settle(page)
        page.get_by_text("Map peak").wait_for()
        assert_no_exception(page, "Imaging with a series read in 3D")
        frame = page.locator(VIEWER_IFRAME).last.element_handle().content_frame()
        frame.wait_for_selector("body[data-ready]")
        state = _state(frame)
        assert state["dims"][2] > 3  # a volume, not a slice
        assert {"AI outline", "Saliency (Grad-CAM 3D)"} <= {o["name"] for o in state["overlays"]}
        page.locator(VIEWER_IFRAME).last.scroll_into_view_if_needed()
        screenshot(page, "imaging-series3d-1366")
        box = frame.locator("input[data-overlay='Saliency (Grad-CAM 3D)']")
        assert box.is_checked()  # asked for, so shown
        with_map = _pixels(frame)
        box.uncheck()
        plain = _pixels(frame)
        # the map covers the lesion only (a small part of the canvas): a strong local change
        assert float(np.abs(with_map - plain).max()) > 20, "hiding the 3D map changed nothing"
        assert _changed(with_map, plain) > 0.05, "hiding the 3D map did not change the picture"
        box.check()
        assert _changed(with_map, _pixels(frame)) < 0.05, "showing it again drew another picture"
    finally:
        context.close()


@pytest.fixture(scope="module")
def viewer_app(browser_prerequisites: str, tmp_path_factory: pytest.TempPathFactory):
    """The viewer benchmark's page (the demo volume with its outline, nothing else), served."""
    # here, not at the top: the serving helpers start processes only where this test runs
    from tests.e2e.serving import run_command, serving

    log = tmp_path_factory.mktemp("e2e-viewer") / "streamlit.log"
    try:
        with serving(run_command(BENCH_APP), log, timeout_s=120) as served:
            yield served[0]
    except RuntimeError as exc:
        pytest.fail(str(exc))


def test_a_fast_scroll_lands_on_the_exact_slice_and_ends_on_the_full_picture(browser, viewer_app):
    """The level of detail: a burst of wheel steps drawn at a reduced resolution (forced here with a
    zero frame budget, so it does not depend on this machine's speed) moves one slice per step, never
    draws more than once a frame, and once it stops the picture is the one a slow scroll at full
    resolution (no level of detail at all, as before it existed) ends on: the same pixels."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.set_default_timeout(90_000)
    page = context.new_page()
    try:
        page.goto(viewer_app)
        frame = _frame(page)
        gl = frame.locator("#gl")
        full_width = _state(frame)["canvas"]["width"]
        frame.evaluate("window.oncolensViewer.scroll(40 - window.oncolensViewer.state().vox[2])")
        frame.wait_for_function(SETTLED)
        assert _state(frame)["vox"][2] == 40

        frame.evaluate("window.oncolensViewer.setFrameBudget(0)")  # every scroll frame reduced
        reduced_before = _state(frame)["lod"]["reducedDraws"]
        burst = frame.evaluate(FAST_WHEEL, {"n": 24, "perFrame": 3, "deltaY": -120})
        # every wheel step moved the slice by one, frame by frame, none lost
        assert burst["start"] == 40
        assert burst["slices"] == [40 - 3 * (k + 1) for k in range(burst["frames"])], burst
        assert min(burst["widths"]) < full_width, f"no frame drawn at a reduced resolution: {burst}"
        frame.wait_for_function(SETTLED)
        after = _state(frame)
        assert after["vox"][2] == 40 - 24
        assert after["canvas"]["width"] == full_width and after["lod"]["scale"] == 1
        assert after["lod"]["reducedDraws"] > reduced_before
        # one draw per animation frame at most: the burst's frames (eight), one for a frame that
        # may follow the last step, and the full-resolution picture at the stop
        assert after["draws"] - burst["startDraws"] <= burst["frames"] + 2, (after, burst)
        assert re.search(r"Axial slice 17/64", frame.locator("#status").inner_text())
        fast = _pixels(frame)

        # the same slice reached slowly, one wheel step at a time, with no level of detail
        frame.evaluate("window.oncolensViewer.setFrameBudget(Infinity)")
        frame.evaluate("window.oncolensViewer.scroll(6)")
        frame.wait_for_function(SETTLED)
        gl.hover()
        for _ in range(6):
            at = _state(frame)["vox"][2]
            page.mouse.wheel(0, -120)
            frame.wait_for_function(f"window.oncolensViewer.state().vox[2] === {at - 1}")
            frame.wait_for_function(SETTLED)
        slow = _state(frame)
        assert (
            slow["vox"][2] == 40 - 24
            and slow["lod"]["reducedDraws"] == after["lod"]["reducedDraws"]
        )
        slow_pixels = _pixels(frame)
        assert float(np.abs(fast - slow_pixels).max()) == 0.0, (
            "the picture after a fast scroll differs"
        )
        # and the picture is the slice's, not a blank canvas
        assert float(fast.std()) > 5.0
    finally:
        context.close()
