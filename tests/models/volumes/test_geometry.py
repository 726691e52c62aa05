"""Slice geometry by hand: normals, stacking, gaps, duplicates, shear, affines and NIfTI's layout."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from models.volumes import geometry

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _along_z(zs) -> np.ndarray:
    return np.array([[10.0, -20.0, z] for z in zs])


def test_normal_is_row_cross_column_and_bad_orientations_are_refused() -> None:
    np.testing.assert_allclose(geometry.slice_normal(AXIAL), [0, 0, 1])
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # rows to the left, columns downwards
    np.testing.assert_allclose(geometry.slice_normal(coronal), [0, 1, 0])
    with pytest.raises(ValueError, match="perpendicular"):
        geometry.slice_normal((1.0, 0.0, 0.0, 0.7, 0.7, 0.0))
    with pytest.raises(ValueError, match="unit"):
        geometry.slice_normal((2.0, 0.0, 0.0, 0.0, 1.0, 0.0))


def test_shuffled_positions_sort_and_give_the_spacing() -> None:
    zs = [7.5, 0.0, 5.0, 2.5, 10.0]
    g = geometry.stack_geometry(_along_z(zs), np.array([0.0, 0.0, 1.0]))
    assert g.order.tolist() == [1, 3, 2, 0, 4]
    assert g.spacing_mm == pytest.approx(2.5)
    assert not g.gaps and not g.duplicates and g.irregular is None and g.shear_mm == 0


def test_gaps_duplicates_and_irregular_steps_are_told_apart() -> None:
    n = np.array([0.0, 0.0, 1.0])
    g = geometry.stack_geometry(_along_z([0, 2, 4, 10, 12, 14]), n)
    assert [(x.after, x.missing) for x in g.gaps] == [(2, 2)]
    assert g.gaps[0].describe().startswith("2 slices missing between 4.0 mm and 10.0 mm")
    g = geometry.stack_geometry(_along_z([0, 2, 2, 4, 6]), n)
    assert g.duplicates == ((1, 2),) and not g.gaps and g.spacing_mm == pytest.approx(2.0)
    g = geometry.stack_geometry(_along_z([0, 2, 4, 7, 9, 11]), n)
    assert g.irregular and "3.00 mm after slice 3" in g.irregular and not g.gaps


def test_shear_measures_how_far_the_origins_drift_in_plane() -> None:
    p = _along_z([0, 2, 4, 6])
    p[:, 1] += np.arange(4) * 0.5  # a tilted gantry moves each slice along y
    g = geometry.stack_geometry(p, np.array([0.0, 0.0, 1.0]))
    assert g.shear_mm == pytest.approx(1.5)


def test_affine_maps_indices_to_lps_and_nifti_layout_matches_nibabel() -> None:
    a = geometry.affine_lps(
        np.array([-80.0, -60.0, 30.0]), AXIAL, (0.8, 0.7), np.array([0.0, 0.0, 2.5])
    )
    # voxel (slice 2, row 3, column 4): 4 columns to the left, 3 rows back, 2 slices up
    np.testing.assert_allclose(a @ [2, 3, 4, 1], [-80 + 4 * 0.7, -60 + 3 * 0.8, 30 + 2 * 2.5, 1])
    assert geometry.axis_codes(a) == "SPL"
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    data, ras = geometry.nifti_layout(arr, a)
    assert data.shape == (4, 3, 2) and data[3, 1, 0] == arr[0, 1, 3]
    assert nib.aff2axcodes(ras) == ("L", "P", "S")  # what dcm2niix writes for an axial stack
    # the same point either way: NIfTI voxel (c, r, s) in RAS is DICOM voxel (s, r, c) in LPS
    lps = a @ [1, 2, 3, 1]
    np.testing.assert_allclose(ras @ [3, 2, 1, 1], geometry.LPS_TO_RAS @ lps)
