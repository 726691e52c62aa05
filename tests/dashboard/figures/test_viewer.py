"""dashboard.figures.viewer: presets per modality, scale bar length, figure in mm with contours."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dashboard.figures import viewer
from models.dicom.reader import DicomImage


def _image(modality: str, pixels: np.ndarray, spacing=(0.5, 0.5)) -> DicomImage:
    return DicomImage(
        pixels=pixels.astype(np.float32),
        spacing_mm=spacing,
        spacing_source="PixelSpacing",
        window_center=float(pixels.mean()),
        window_width=float(np.ptp(pixels) or 1),
        voi_lut_applied=False,
        modality=modality,
        body_part=None,
        photometric="MONOCHROME2",
        frame=0,
        n_frames=1,
        rows=pixels.shape[0],
        columns=pixels.shape[1],
        sop_instance_uid=None,
        series_uid=None,
        study_uid=None,
        study_date=None,
        patient_id=None,
        transfer_syntax="1.2.840.10008.1.2.1",
    )


def test_ct_gets_the_standard_windows_and_the_file_window_first() -> None:
    p = viewer.presets(_image("CT", np.linspace(-1000, 2000, 10000).reshape(100, 100)))
    assert list(p)[0] == viewer.FILE_WINDOW and p[viewer.FILE_WINDOW] is None
    assert p["Lung (-600/1500)"] == (-600.0, 1500.0)


def test_mg_presets_follow_the_images_range() -> None:
    p = viewer.presets(_image("MG", np.linspace(0, 4000, 10000).reshape(100, 100)))
    centre, width = p["Full range (0.5–99.5 %)"]
    assert centre == pytest.approx(2000, rel=0.01) and width == pytest.approx(3960, rel=0.01)
    assert any(k.startswith("Dense tissue") for k in p)


@pytest.mark.parametrize(
    ("field", "expected"), [(256 * 0.8, 20.0), (50, 10.0), (1000, 200.0), (3, 0.5)]
)
def test_scale_bar_is_a_round_length(field: float, expected: float) -> None:
    assert viewer.nice_scale_length_mm(field) == expected


def test_figure_axes_are_in_mm_and_contour_hugs_the_lesion() -> None:
    shown = np.zeros((200, 100), np.uint8)
    mask = np.zeros((200, 100), bool)
    mask[50:70, 20:40] = True
    fig = viewer.image_figure(shown, (0.5, 0.25), mask=mask)
    assert fig.layout.xaxis.range == (0, 25.0) and fig.layout.yaxis.range == (100.0, 0)
    assert "mm" in fig.layout.xaxis.title.text
    line = [t for t in fig.data if t.type == "scatter"][0]
    assert min(line.x) == pytest.approx(20 * 0.25, abs=0.25) and max(line.x) == pytest.approx(
        40 * 0.25, abs=0.25
    )
    assert min(line.y) == pytest.approx(50 * 0.5, abs=0.5) and max(line.y) == pytest.approx(
        70 * 0.5, abs=0.5
    )
    assert any("mm" in a.text for a in fig.layout.annotations)


def test_without_spacing_axes_say_pixels_and_no_scale_bar() -> None:
    fig = viewer.image_figure(np.zeros((64, 64), np.uint8), None)
    assert "pixels" in fig.layout.xaxis.title.text
    assert not fig.layout.annotations


def test_large_images_are_subsampled_for_the_browser_but_keep_their_extent() -> None:
    fig = viewer.image_figure(np.zeros((4096, 3328), np.uint8), (0.1, 0.1))
    img = fig.data[0]
    assert img.dx == pytest.approx(0.4) and fig.layout.xaxis.range == (0, pytest.approx(332.8))
    assert len(img.source) < 200_000


def test_slider_range_covers_the_image() -> None:
    img = _image("MR", np.arange(100.0).reshape(10, 10))
    lo, hi = viewer.slider_range(img)
    assert lo < 0 and hi > 99
    flat = viewer.slider_range(dataclasses.replace(img, pixels=np.full((2, 2), 5.0, np.float32)))
    assert flat[0] < 5.0 < flat[1]  # a constant image still gets a usable slider
