"""A series uploaded as a zip on the Imaging page, in Chromium: the browser's own file input takes
it, the page offers it once as a volume and draws it in the 3D viewer with the AI outline.

Why in a browser: AppTest hands the page its files directly; only a browser shows that the
uploader takes several files or a zip as a user gives them, and that the WebGL viewer draws the
uploaded volume (its state: a volume of the series' slices, the AI outline among its overlays).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

import numpy as np
import pytest
from pydicom.uid import generate_uid

from tests.e2e.conftest import SeriesApp
from tests.e2e.helpers import assert_no_exception, open_page, screenshot, settle, sign_in

VIEWER_IFRAME = "iframe[title*='oncolens_viewer']"


@pytest.fixture(scope="module")
def upload_app(series_app: SeriesApp, tmp_path_factory: pytest.TempPathFactory):
    """The small served demo store (``series_app``, shared with the 3D viewer's test) and a zip of
    a held-out brain MR series with a 26 mm lesion."""
    # here, not at the top: the phantom only where this test runs
    from models.volumes import phantoms
    from models.volumes.write import SeriesHeader, write_series

    folder = tmp_path_factory.mktemp("e2e-upload")
    rng = np.random.default_rng([4242, 1])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 26.0), 26.0)
    header = SeriesHeader(
        "MR", "UPLOAD-1", "UPLOAD^TEST", generate_uid(), generate_uid(), generate_uid(),
        dt.date(2026, 1, 5), "BRAIN", "brain mr", "axial t1 post",
    )  # fmt: skip
    files = write_series(
        vol.values, folder / "series", header, origin_lps=vol.origin_lps,
        pixel_spacing=(vol.spacing_mm[1], vol.spacing_mm[2]), slice_spacing=vol.spacing_mm[0],
    )  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            zf.writestr(f"brain/{path.name}", path.read_bytes())
        zf.writestr("brain/README.txt", b"not an image")
    archive = folder / "brain_series.zip"
    archive.write_bytes(buf.getvalue())
    return series_app.url, archive, len(files)


VIEWPORTS = ((1366, 768), (1920, 1080))


def test_a_zipped_series_uploaded_in_the_browser_is_one_3d_read(browser, upload_app):
    """Uploaded once, at 1366 x 768, then read again with the window at 1920 x 1080.

    Why one upload for both sizes: what differs between them is the page's layout of the answer
    (the pick, the list of files not read, the viewer), not the upload; each size used to sign in,
    open Imaging and upload the series again (a 3D read each, about 40 s of a loaded machine).
    """
    url, archive, slices = upload_app
    width, height = VIEWPORTS[0]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(120_000)
    page = context.new_page()
    try:
        sign_in(page, url, "oncologist", "oncologist-demo")
        open_page(page, "Imaging")
        page.locator(".st-key-imaging_source input").click()
        page.locator('[role="option"]').filter(has_text="Upload DICOM files").first.click()
        settle(page)
        page.locator(".st-key-imaging_upload input[type='file']").set_input_files(str(archive))
        page.get_by_text(re.compile(r"file\(s\) de-identified before display")).wait_for()
        settle(page)
        page.get_by_text("Grad-CAM 3D verdict").wait_for()
        for width, height in VIEWPORTS:
            page.set_viewport_size({"width": width, "height": height})
            _the_upload_is_one_volume(page, slices, width)
    finally:
        context.close()


def _the_upload_is_one_volume(page, slices: int, width: int) -> None:
    assert_no_exception(page, f"Imaging with an uploaded series at {width} px")
    assert "1 volume(s), 0 2D image(s)" in page.locator(".st-key-imaging_upload_pick").inner_text()
    picked = page.locator(".st-key-imaging_upload_pick input").input_value()
    assert picked.startswith(f"series of {slices} images (3D) · MR"), picked
    assert page.get_by_text("1 file(s) not read").count()  # the README, listed under the image
    frame = page.locator(VIEWER_IFRAME).last.element_handle().content_frame()
    frame.wait_for_selector("body[data-ready]")
    state = frame.evaluate("window.oncolensViewer.state()")
    assert state["dims"][2] == slices  # the whole series, one volume
    assert "AI outline" in {o["name"] for o in state["overlays"]}
    # back to the top (the previous size scrolled to the viewer), whichever element scrolls
    page.evaluate("() => document.querySelectorAll('*').forEach((e) => { e.scrollTop = 0; })")
    screenshot(page, f"imaging-upload3d-{width}")  # what the user sees first
    page.locator(VIEWER_IFRAME).last.scroll_into_view_if_needed()
    screenshot(page, f"imaging-upload3d-viewer-{width}")
