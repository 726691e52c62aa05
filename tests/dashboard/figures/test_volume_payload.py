"""What the in-browser viewer is sent: NIfTI bytes that nibabel reads back to the same voxels and geometry,
DICOM orientation to RAS+, outlines, window presets, and clear errors for what it cannot show."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dashboard.figures import volume as V
from dashboard.figures.saliency import relative_map
from models.training.phantom_volume import brain_phantom


def _read(data: bytes) -> nib.Nifti1Image:
    """A NIfTI file as the viewer gets it, gzipped (overlays) or not (the image)."""
    return nib.Nifti1Image.from_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def test_a_volume_round_trips_through_nifti_with_its_voxels_and_affine():
    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 3000, size=(5, 7, 9)).astype(np.float32)  # whole numbers: int16
    affine = V.affine_from_spacing((2.5, 0.7, 0.8))
    img = _read(V.nifti_bytes(vol, affine))
    assert img.get_data_dtype() == np.int16
    # NIfTI stores x fastest: the array comes back (x, y, z)
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), vol)
    np.testing.assert_allclose(img.affine, affine)
    assert img.header.get_xyzt_units()[0] == "mm"
    floats = vol + 0.25
    back = _read(V.nifti_bytes(floats, affine))
    assert back.get_data_dtype() == np.float32
    np.testing.assert_allclose(np.asarray(back.dataobj).transpose(2, 1, 0), floats)


def test_spacing_gives_mm_along_each_axis_in_ras():
    a = V.affine_from_spacing((3.0, 0.5, 0.6))
    # one column step: 0.6 mm towards the patient's left (RAS x decreases); one row: 0.5 mm
    # posterior (RAS y decreases); one slice: 3 mm towards the head
    np.testing.assert_allclose(a[:3, :3], np.diag([-0.6, -0.5, 3.0]))
    with pytest.raises(V.ViewerInputError, match="positive"):
        V.affine_from_spacing((1.0, 0.0, 1.0))


def test_a_dicom_ct_gets_its_patient_geometry_by_hand():
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    affine, known = V.dicom_affine(ds, tuple(float(s) for s in ds.PixelSpacing))
    assert known
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    dr, dc = (float(s) for s in ds.PixelSpacing)
    # PS3.3 C.7.6.2.1.1: P = IPP + row_dir * dc * column + col_dir * dr * row (LPS), then RAS
    col, row = 17, 42
    lps = ipp + iop[:3] * dc * col + iop[3:] * dr * row
    ras = affine @ np.array([col, row, 0, 1.0])
    np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-6)


def test_without_orientation_or_spacing_no_labels_are_claimed():
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    del ds.ImageOrientationPatient
    affine, known = V.dicom_affine(ds, (0.5, 0.5))
    assert not known and np.allclose(np.abs(np.diag(affine)[:3]), [0.5, 0.5, 1.0])
    data = V.payload(np.zeros((4, 4)), spacing=(1, 1, 1), spacing_known=False)
    assert not data.spec["orientation_known"] and not data.spec["spacing_known"]


def test_an_outline_is_the_surface_of_a_volume_mask_and_the_boundary_of_a_2d_one():
    m = np.zeros((7, 9, 9), dtype=bool)
    m[1:6, 2:7, 2:7] = True  # a 5 x 5 x 5 cube
    line = V.outline_source(m)
    assert line.dtype == np.uint8
    assert line[3, 4, 4] == 0 and line[3, 2, 4] == 1  # hollow inside, on at the faces
    assert line.sum() == 5**3 - 3**3
    flat = np.zeros((1, 12, 12), dtype=bool)
    flat[0, 3:9, 3:9] = True
    ring = V.outline_source(flat)
    assert ring.sum() == 6 * 6 - 4 * 4 and ring[0, 5, 5] == 0


def test_ct_presets_start_with_the_file_window_and_mr_with_auto():
    pixels = np.linspace(-1000, 1000, 10_000).reshape(100, 100)
    ct = V.window_presets("CT", pixels, (40.0, 350.0))
    assert [p["name"] for p in ct[:2]] == ["File window", "Soft tissue (40/400)"]
    assert {"Lung (-600/1500)", "Bone (400/1800)", "Brain (40/80)"} <= {p["name"] for p in ct}
    mr = V.window_presets("MR", np.abs(pixels), (10.0, 0.0))  # a zero width is no window
    assert [p["name"] for p in mr] == [V.AUTO_WINDOW]
    lo, hi = mr[0]["center"] - mr[0]["width"] / 2, mr[0]["center"] + mr[0]["width"] / 2
    a = np.abs(pixels)
    body = a[a > a.min()]  # the background (the minimum value) left out
    np.testing.assert_allclose([lo, hi], np.percentile(body, [0.5, 99.5]), rtol=1e-6)


def test_the_payload_carries_overlays_by_argument_and_an_id_that_follows_the_content():
    p = brain_phantom(shape=(16, 32, 32), seed=1)
    heat = np.random.default_rng(2).normal(size=p.volume.shape)
    overlays = [V.Overlay("lesion", p.lesion), V.Overlay("map", heat, "heat", visible=False)]
    data = V.payload(p.volume, p.affine, overlays=overlays, modality="MR", start_slice=99)
    spec = data.spec
    assert spec["is_volume"] and spec["orientation_known"] and spec["start_slice"] == 15
    assert [o["arg"] for o in spec["overlays"]] == list(data.overlays) == ["overlay_0", "overlay_1"]
    label = _read(data.overlays["overlay_0"])
    assert label.header["intent_code"] == 1002  # NIfTI "label": drawn with its colour table
    heat_layer = _read(data.overlays["overlay_1"])
    m = np.asarray(heat_layer.dataobj).transpose(2, 1, 0)
    assert m.max() == pytest.approx(1.0) and m.min() == 0.0  # positive part, scaled to its maximum
    # sent as uint8 steps of 1/255 (scl_slope), within half a step of the float map
    assert heat_layer.get_data_dtype() == np.uint8
    np.testing.assert_allclose(m, relative_map(heat), atol=0.5 / 255 + 1e-6)
    again = V.payload(p.volume, p.affine, overlays=overlays, modality="MR", start_slice=99)
    assert again.spec["id"] == spec["id"]
    other = V.payload(p.volume + 1, p.affine, overlays=overlays, modality="MR", start_slice=99)
    assert other.spec["id"] != spec["id"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"volume": np.zeros((2, 2, 2, 2))}, "2D image or a"),
        ({"volume": np.zeros((3, 3)), "affine": np.zeros((4, 4))}, "invertible"),
        ({"volume": np.zeros((3, 3)), "plane": "OBLIQUE"}, "plane"),
        ({"volume": np.zeros((3, 3)), "overlays": [V.Overlay("m", np.zeros((4, 4)))]}, "shape"),
        ({"volume": np.zeros((3, 3)), "overlays": [V.Overlay("m", np.zeros((3, 3)), "x")]}, "kind"),
        ({"volume": np.zeros((3, 3), dtype=complex)}, "real numbers"),
    ],
)
def test_what_cannot_be_shown_is_refused_with_the_reason(kwargs, message):
    with pytest.raises(V.ViewerInputError, match=message):
        V.payload(**kwargs)


def test_overlays_go_gzipped_and_small_and_the_same_layer_gives_the_same_bytes():
    p = brain_phantom(shape=(32, 64, 64), seed=3)
    first = V.nifti_bytes(V.outline_source(p.lesion), p.affine, intent="label")
    assert first[:2] == b"\x1f\x8b"  # gzip: NiiVue unpacks it
    assert len(first) < p.lesion.size / 20  # an outline is mostly zeros
    assert V.nifti_bytes(V.outline_source(p.lesion), p.affine, intent="label") == first
    np.testing.assert_array_equal(
        np.asarray(_read(first).dataobj).transpose(2, 1, 0), V.outline_source(p.lesion)
    )
    assert V.nifti_bytes(p.volume, p.affine)[:2] != b"\x1f\x8b"  # the image goes as it is
