"""The Imaging page's viewer helpers: a 3D map on the model's grid lands on the series' own voxels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from dashboard.components.viewer.imaging import _model_label, _percent, on_source_grid


def test_a_map_on_the_model_grid_lands_on_the_same_place_of_the_series_grid() -> None:
    # model grid: 2 mm voxels from the origin; series grid: 1 mm voxels, shifted by 4 mm in z
    model_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    source_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    source_affine[0, 3] = 4.0
    heat = np.zeros((10, 10, 10), np.float32)
    heat[5, 3, 7] = 1.0  # at (10, 6, 14) mm
    volume = SimpleNamespace(affine_ras=source_affine, shape=(20, 20, 20))
    out = on_source_grid(heat, model_affine, volume)
    assert out.shape == (20, 20, 20) and out.dtype == np.float32
    peak = np.unravel_index(int(np.argmax(out)), out.shape)
    assert peak == (6, 6, 14)  # 10 mm - 4 mm shift = index 6 in z; y 6; x 14
    assert out.max() == 1.0 and out.min() == 0.0  # linear: no overshoot, no negative ring


def test_a_probability_is_never_shown_as_certain() -> None:
    assert _percent(0.99996) == "> 99.9 %"
    assert _percent(0.00001) == "< 0.1 %"
    assert _percent(0.8125) == "81.2 %"


def test_the_3d_model_picker_shows_no_read_before_the_sign_off_gate() -> None:
    """The picker stands above ``gate_view``: an option naming the read ("lesion", "refused")
    would show a withheld model's output to anyone choosing between two models."""
    for label, refused in (("lesion", False), ("no lesion", False), ("lesion", True)):
        row = SimpleNamespace(
            model_name="brain_mets_3d", model_version="1.2.0", label=label, refused=refused
        )
        option = _model_label(row)
        assert option == "brain_mets_3d 1.2.0"
        assert "lesion" not in option and "refused" not in option
