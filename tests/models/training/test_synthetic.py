"""Imaging phantoms and their DICOM files: determinism, masks, diameters, difficulty, DICOM round trip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import validate_file_meta
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from scipy import ndimage
from scipy.spatial.distance import pdist
from sklearn.metrics import roc_auc_score

from models.training import synthetic as phantoms
from models.training.synthetic import (
    brain_mri,
    mammogram,
    max_feret_diameter_mm,
    sample_brain,
    sample_mammograms,
)
from models.training.synthetic_dicom import (
    IMPLEMENTATION_CLASS_UID,
    PhantomWriteError,
    mask_path_for,
    write_phantom_dicom,
)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _brute_feret_mm(mask: np.ndarray, spacing) -> float:
    """Independent reference: the largest distance over all pairs of mask pixel centres."""
    pts = np.argwhere(mask) * np.asarray(spacing, float)
    return float(pdist(pts).max()) if len(pts) > 1 else 0.0


def _body(p: phantoms.Phantom) -> np.ndarray:
    """Breast or head found from the image alone: above the air level, largest component, holes filled."""
    img = ndimage.median_filter(p.pixels, 3).astype(float)
    air = np.percentile(img, 5)
    tissue = np.percentile(img[img > air + 200], 50)
    fg = np.pad(img > air + 0.25 * (tissue - air), 3, mode="edge")
    fg = ndimage.binary_closing(fg, iterations=2)[3:-3, 3:-3]
    labels, n = ndimage.label(fg)
    largest = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(largest)


@pytest.fixture(scope="module")
def mammo_set() -> list[phantoms.Phantom]:
    return sample_mammograms(210, seed=11)


@pytest.fixture(scope="module")
def brain_set() -> list[phantoms.Phantom]:
    return sample_brain(120, seed=12)


# --------------------------------------------------------------------------- determinism and contract


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: mammogram(rng, "normal"),
        lambda rng: mammogram(rng, "benign", laterality="R"),
        lambda rng: mammogram(rng, "malignant", lesion_diameter_mm=22.0),
        lambda rng: brain_mri(rng, False),
        lambda rng: brain_mri(rng, True),
    ],
)
def test_same_seed_gives_identical_phantoms(make):
    a, b, c = make(_rng(5)), make(_rng(5)), make(_rng(6))
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.mask, b.mask)
    assert (a.label, a.lesion_diameter_mm, a.window_center, a.window_width) == (
        b.label,
        b.lesion_diameter_mm,
        b.window_center,
        b.window_width,
    )
    assert not np.array_equal(a.pixels, c.pixels)


def test_batches_are_deterministic_and_balanced():
    a, b = sample_mammograms(12, seed=4), sample_mammograms(12, seed=4)
    assert all(
        np.array_equal(x.pixels, y.pixels) and np.array_equal(x.mask, y.mask)
        for x, y in zip(a, b, strict=True)
    )
    assert sorted(p.label for p in a) == sorted(["normal", "benign", "malignant"] * 4)
    assert {p.laterality for p in sample_mammograms(20, seed=1)} == {"L", "R"}
    brains = sample_brain(10, seed=4)
    assert sum(p.label == "tumour" for p in brains) == 5
    assert not np.array_equal(sample_brain(1, seed=5)[0].pixels, sample_brain(1, seed=6)[0].pixels)


def test_phantom_fields(mammo_set, brain_set):
    for p in mammo_set[:20] + brain_set[:20]:
        assert p.pixels.dtype == np.uint16 and p.pixels.shape == (256, 256)
        assert p.mask.dtype == bool and p.mask.shape == p.pixels.shape
        assert int(p.pixels.max()) <= phantoms.MAX_STORED_VALUE
        assert p.window_width > 0 and p.rescale_slope == 1.0 and p.rescale_intercept == 0.0
        if p.modality == "MG":
            assert p.label in phantoms.MAMMOGRAPHY_LABELS and p.spacing_mm == (0.8, 0.8)
            assert p.laterality in ("L", "R")
        else:
            assert p.label in phantoms.BRAIN_LABELS and p.spacing_mm == (0.9, 0.9)
            assert p.laterality is None
        assert (p.lesion_diameter_mm is None) == (p.label in ("normal", "no_tumour"))


def test_right_breast_is_the_mirror_image_of_the_left():
    left = mammogram(_rng(9), "malignant", laterality="L")
    right = mammogram(_rng(9), "malignant", laterality="R")
    assert np.array_equal(right.pixels, left.pixels[:, ::-1])
    assert np.array_equal(right.mask, left.mask[:, ::-1])
    assert _body(left)[:, 0].sum() > 40 and _body(left)[:, -1].sum() == 0  # chest wall on the left
    assert _body(right)[:, -1].sum() > 40 and _body(right)[:, 0].sum() == 0


def test_other_sizes_and_anisotropic_spacing():
    p = mammogram(_rng(1), "benign", size=(512, 384), spacing_mm=0.5, lesion_diameter_mm=12.0)
    assert p.pixels.shape == (512, 384) and p.spacing_mm == (0.5, 0.5)
    assert abs(p.lesion_diameter_mm - 12.0) <= 1.5
    q = brain_mri(_rng(2), True, size=(128, 160), spacing_mm=(1.2, 0.9), lesion_diameter_mm=20.0)
    assert q.pixels.shape == (128, 160) and q.spacing_mm == (1.2, 0.9)
    assert abs(_brute_feret_mm(q.mask, (1.2, 0.9)) - 20.0) <= 1.5


@pytest.mark.parametrize(
    "call",
    [
        lambda: mammogram(_rng(0), "suspicious"),
        lambda: mammogram(_rng(0), "benign", laterality="B"),
        lambda: mammogram(_rng(0), "normal", lesion_diameter_mm=10.0),
        lambda: mammogram(_rng(0), "benign", lesion_diameter_mm=-1.0),
        lambda: mammogram(_rng(0), "benign", size=(16, 16)),
        lambda: brain_mri(_rng(0), False, lesion_diameter_mm=10.0),
        lambda: brain_mri(_rng(0), True, spacing_mm=0.0),
        lambda: sample_brain(-1, seed=0),
    ],
)
def test_invalid_arguments_are_refused(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- masks and diameters


def test_masks_empty_without_lesion_and_inside_the_body_with_one(mammo_set, brain_set):
    for p in mammo_set[:60] + brain_set[:60]:
        if p.label in ("normal", "no_tumour"):
            assert not p.mask.any()
            continue
        assert p.mask.any()
        assert ndimage.label(p.mask)[1] == 1  # one connected lesion
        body = ndimage.binary_erosion(_body(p), iterations=2)
        assert not (p.mask & ~body).any(), f"{p.label} lesion leaves the breast/head"


def test_masks_mark_the_lesion_in_the_image(mammo_set, brain_set):
    """Ground truth must sit on the lesion: masses are denser than their surroundings."""

    def contrast(p):
        ring = ndimage.binary_dilation(p.mask, iterations=6) & ~ndimage.binary_dilation(
            p.mask, iterations=2
        )
        return p.pixels[p.mask].mean() - p.pixels[ring].mean()

    mg = [contrast(p) for p in mammo_set if p.mask.any()]
    mr = [contrast(p) for p in brain_set if p.mask.any()]
    assert np.mean(np.array(mg) > 0) > 0.95
    assert np.mean(np.array(mr) > 0) > 0.8  # necrotic cores and faint ones vary


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("diameter", [6.0, 14.5, 31.0, 55.0])
def test_requested_diameter_is_reproduced(seed, diameter):
    for p in (
        mammogram(_rng(seed), "benign", lesion_diameter_mm=diameter),
        mammogram(_rng(seed), "malignant", lesion_diameter_mm=diameter, laterality="R"),
        brain_mri(_rng(seed), True, lesion_diameter_mm=diameter),
    ):
        measured = _brute_feret_mm(p.mask, p.spacing_mm)
        assert p.lesion_diameter_mm == pytest.approx(measured, abs=1e-6)
        assert abs(measured - diameter) <= 1.5, (p.label, diameter, measured)


def test_diameters_too_large_or_zero_are_clipped_and_reported():
    for p in (
        mammogram(_rng(3), "malignant", lesion_diameter_mm=120.0),
        brain_mri(_rng(3), True, lesion_diameter_mm=120.0),
    ):
        assert 30.0 < p.lesion_diameter_mm < 120.0
        assert p.lesion_diameter_mm == pytest.approx(
            _brute_feret_mm(p.mask, p.spacing_mm), abs=1e-6
        )
        assert not (p.mask & ~_body(p)).any()
    for p in (
        mammogram(_rng(3), "malignant", lesion_diameter_mm=0.0),
        brain_mri(_rng(3), True, lesion_diameter_mm=0.0),
    ):
        assert p.lesion_diameter_mm == 0.0 and not p.mask.any()  # complete response: nothing to see
    tiny = mammogram(_rng(3), "benign", lesion_diameter_mm=0.5)
    assert tiny.mask.any() and tiny.lesion_diameter_mm == pytest.approx(
        _brute_feret_mm(tiny.mask, (0.8, 0.8))
    )


def test_drawn_diameters_cover_the_plausible_range(mammo_set, brain_set):
    mg = np.array([p.lesion_diameter_mm for p in mammo_set if p.lesion_diameter_mm is not None])
    mr = np.array([p.lesion_diameter_mm for p in brain_set if p.lesion_diameter_mm is not None])
    assert (
        mg.min() >= 6.0 - 1.5
        and mg.max() <= 40.0 + 1.5
        and np.median(mg) < 25.0
        and mg.max() > 30.0
    )
    assert mr.min() >= 5.0 - 1.5 and mr.max() <= 50.0 + 1.5


def test_max_feret_diameter_matches_brute_force():
    rng = _rng(0)
    assert max_feret_diameter_mm(np.zeros((8, 8), bool), 1.0) == 0.0
    one = np.zeros((8, 8), bool)
    one[3, 4] = True
    assert max_feret_diameter_mm(one, 1.0) == 0.0
    line = np.zeros((8, 8), bool)
    line[2, 1:7] = True
    assert max_feret_diameter_mm(line, (0.5, 0.8)) == pytest.approx(5 * 0.8)
    for _ in range(20):
        blob = ndimage.gaussian_filter(rng.random((40, 40)), 3) > 0.5
        spacing = (rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.5))
        assert max_feret_diameter_mm(blob, spacing) == pytest.approx(_brute_feret_mm(blob, spacing))


# --------------------------------------------------------------------------- difficulty


def _auc(labels, scores) -> float:
    auc = roc_auc_score(labels, scores)
    return max(auc, 1.0 - auc)  # either direction counts as separation


def test_classes_are_not_separable_by_simple_statistics(mammo_set, brain_set):
    lesion = [p for p in mammo_set if p.label != "normal"]
    malignant = [p.label == "malignant" for p in lesion]
    abnormal = [p.label != "normal" for p in mammo_set]
    tumour = [p.label == "tumour" for p in brain_set]
    stats = {"mean": np.mean, "std": np.std, "p99": lambda a: np.percentile(a, 99)}
    for name, stat in stats.items():
        assert _auc(malignant, [stat(p.pixels) for p in lesion]) < 0.75, name
        assert _auc(abnormal, [stat(p.pixels) for p in mammo_set]) < 0.75, name
        assert _auc(tumour, [stat(p.pixels) for p in brain_set]) < 0.75, name


# --------------------------------------------------------------------------- DICOM


def _write(p, tmp_path, name, **kw):
    args = dict(
        patient_id="DEMO-0001",
        patient_name="Müller^Anna",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240131",
        accession_number="ACC123",
        study_description="Diagnostic imaging",
        instance_number=3,
        birth_date="19630512",
        sex="F",
    )
    args.update(kw)
    return write_phantom_dicom(p, tmp_path / name, **args), args


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_mammogram_dicom_round_trip(tmp_path, laterality):
    p = mammogram(_rng(7), "malignant", laterality=laterality)
    path, args = _write(p, tmp_path, "mg.dcm")
    with open(path, "rb") as f:
        assert f.read(132)[128:] == b"DICM"
    ds = dcmread(path)
    validate_file_meta(ds.file_meta, enforce_standard=True)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == DigitalMammographyXRayImageStorageForPresentation
    assert ds.file_meta.MediaStorageSOPInstanceUID == args["sop_instance_uid"] == ds.SOPInstanceUID
    assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert ds.original_encoding == (False, True)  # explicit VR, little endian
    assert ds.SOPClassUID == DigitalMammographyXRayImageStorageForPresentation
    assert (ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.ImageLaterality) == (
        "MG",
        "BREAST",
        "CC",
        laterality,
    )
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.8, 0.8] and "PixelSpacing" not in ds
    assert list(ds.PatientOrientation) == (["A", "R"] if laterality == "L" else ["P", "L"])
    assert ds.ViewCodeSequence[0].CodeValue == "399162004"
    _check_common(ds, p, args)
    _check_mask_png(path, p)


def test_brain_dicom_round_trip(tmp_path):
    p = brain_mri(_rng(8), True)
    path, args = _write(
        p, tmp_path, "sub/dir/mr.dcm", birth_date=None, sex="M", accession_number=""
    )
    ds = dcmread(path)
    validate_file_meta(ds.file_meta, enforce_standard=True)
    assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage == ds.SOPClassUID
    assert (ds.Modality, ds.BodyPartExamined, ds.ScanningSequence) == ("MR", "BRAIN", "SE")
    assert [float(v) for v in ds.PixelSpacing] == [0.9, 0.9] and float(ds.SliceThickness) > 0
    assert ds.FrameOfReferenceUID and ds.ImageOrientationPatient == [1, 0, 0, 0, 1, 0]
    assert ds.PatientBirthDate == "" and ds.AccessionNumber == ""
    _check_common(ds, p, args)
    _check_mask_png(path, p)


def test_mask_png_is_all_zero_without_lesion(tmp_path):
    for p in (mammogram(_rng(1), "normal"), brain_mri(_rng(1), False)):
        path, _ = _write(p, tmp_path, f"{p.modality}.dcm")
        _check_mask_png(path, p)
        assert not np.asarray(Image.open(mask_path_for(path))).any()


def _check_common(ds, p, args):
    assert np.array_equal(ds.pixel_array, p.pixels)
    assert (ds.Rows, ds.Columns) == p.pixels.shape
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation) == (
        1,
        "MONOCHROME2",
        0,
    )
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
    assert ds.StudyInstanceUID == args["study_uid"] and ds.SeriesInstanceUID == args["series_uid"]
    assert ds.PatientID == args["patient_id"] and str(ds.PatientName) == args["patient_name"]
    assert ds.PatientSex == args["sex"] and ds.InstanceNumber == 3
    assert ds.StudyDate == ds.SeriesDate == ds.ContentDate == args["study_date"] and ds.StudyTime
    assert (
        ds.AccessionNumber == args["accession_number"]
        and ds.StudyDescription == args["study_description"]
    )
    assert ds.Manufacturer == "OncoLens phantom" and ds.BurnedInAnnotation == "NO"
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (
        p.rescale_slope,
        p.rescale_intercept,
    )
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (p.window_center, p.window_width)


def _check_mask_png(path, p):
    png = mask_path_for(path)
    assert png.name == path.stem + "_mask.png" and png.parent == path.parent
    img = Image.open(png)
    arr = np.asarray(img)
    assert img.mode == "L" and arr.shape == p.mask.shape
    assert set(np.unique(arr)) <= {0, 255}
    assert np.array_equal(arr == 255, p.mask)
    assert (
        sorted(f.name for f in path.parent.iterdir() if f.name.startswith(".")) == []
    )  # no temporary files left


@pytest.mark.parametrize(
    "bad",
    [
        {"study_uid": "1.2.abc"},
        {"sop_instance_uid": "1." + "2" * 70},
        {"study_date": "2024-01-31"},
        {"study_date": "20241331"},
        {"birth_date": "1963"},
        {"patient_id": ""},
        {"patient_id": "A\\B"},
        {"sex": "female"},
        {"accession_number": "X" * 17},
        {"instance_number": 0},
    ],
)
def test_invalid_identifiers_are_refused_and_nothing_is_written(tmp_path, bad):
    with pytest.raises(PhantomWriteError):
        _write(mammogram(_rng(0), "normal"), tmp_path, "bad.dcm", **bad)
    assert list(tmp_path.iterdir()) == []
