"""Series in, volumes out: order, geometry, gaps, duplicates, broken files, multi-frame, zips."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import zipfile
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pydicom.data
import pytest
from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedMRImage
from pydicom.uid import generate_uid

from models.volumes import (
    DuplicateSliceError,
    IncompleteSeriesError,
    InconsistentSeriesError,
    NotAVolumeError,
    UnsafeArchiveError,
    read_volumes,
    scan_series,
)
from models.volumes import sources as volume_sources
from models.volumes.write import SeriesHeader, write_series

pytestmark = pytest.mark.filterwarnings("ignore")

SHAPE = (12, 24, 20)
OBLIQUE = (1.0, 0.0, 0.0, 0.0, float(np.cos(0.3)), float(np.sin(0.3)))


def _values(seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, shape).astype(np.int16)


def _header(modality: str = "CT", series_uid: str | None = None) -> SeriesHeader:
    return SeriesHeader(
        modality=modality,
        patient_id="DEMO-1",
        patient_name="Demo^Patient",
        study_uid=generate_uid(),
        series_uid=series_uid or generate_uid(),
        frame_of_reference_uid=generate_uid(),
        study_date=dt.date(2026, 1, 5),
        body_part="CHEST",
        study_description="test",
        series_description="axial",
    )


def _write(folder: Path, values=None, modality="CT", **kw) -> tuple[list[Path], SeriesHeader]:
    header = _header(modality)
    vals = _values() if values is None else values
    if modality == "MR":
        vals = np.abs(vals)
    kw.setdefault("origin_lps", (-80.0, -60.0, 30.0))
    kw.setdefault("pixel_spacing", (0.8, 0.7))
    kw.setdefault("slice_spacing", 2.5)
    return write_series(vals, folder, header, **kw), header


def _expected_affine(origin, orientation, pixel_spacing, slice_spacing) -> np.ndarray:
    o = np.asarray(orientation).reshape(2, 3)
    a = np.eye(4)
    a[:3, 0] = np.cross(o[0], o[1]) * slice_spacing
    a[:3, 1] = o[1] * pixel_spacing[0]
    a[:3, 2] = o[0] * pixel_spacing[1]
    a[:3, 3] = origin
    return a


def test_shuffled_files_come_back_in_order_with_exact_pixels_and_geometry(tmp_path) -> None:
    paths, header = _write(tmp_path / "src")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for i, p in zip(np.random.default_rng(3).permutation(len(paths)), paths, strict=True):
        shutil.copy(p, shuffled / f"img{i:03d}")  # names say nothing of the order
    result = read_volumes([shuffled])
    assert result.ok and not result.skipped
    (vol,) = result.volumes
    assert vol.series_instance_uid == header.series_uid and vol.patient_id == "DEMO-1"
    np.testing.assert_array_equal(vol.pixels, _values())
    np.testing.assert_allclose(
        vol.affine_lps,
        _expected_affine((-80, -60, 30), (1, 0, 0, 0, 1, 0), (0.8, 0.7), 2.5),
        atol=1e-3,
    )
    assert vol.spacing_mm == pytest.approx((2.5, 0.8, 0.7), abs=1e-3)
    assert vol.axes == "SPL"  # slices towards superior, rows posterior, columns to the left
    np.testing.assert_allclose(vol.affine_ras[:2], -vol.affine_lps[:2])
    assert vol.window == (40.0, 400.0)
    summary = json.loads(json.dumps(vol.to_json()))
    assert summary["shape"] == list(SHAPE) and summary["axes"] == "SPL"
    assert summary["instances"] == SHAPE[0] and summary["warnings"] == []


def test_oblique_series_matches_highdicom_voxel_for_voxel(tmp_path) -> None:
    paths, _ = _write(tmp_path, orientation=OBLIQUE)
    (vol,) = read_volumes([tmp_path]).volumes
    ref = hd.get_volume_from_series([pydicom.dcmread(p) for p in paths])
    # highdicom may stack the other way round: compare where each voxel lies and what it holds
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, n, 50) for n in SHAPE], axis=1)
    ours = (vol.affine_lps @ np.c_[idx, np.ones(50)].T).T[:, :3]
    theirs_idx = np.round(np.linalg.solve(ref.affine, np.c_[ours, np.ones(50)].T).T[:, :3]).astype(
        int
    )
    np.testing.assert_allclose(
        (ref.affine @ np.c_[theirs_idx, np.ones(50)].T).T[:, :3], ours, atol=1e-3
    )
    np.testing.assert_array_equal(ref.array[tuple(theirs_idx.T)], vol.pixels[tuple(idx.T)])
    assert vol.axes[0] in "SI" and vol.axes[1] in "PA"


def test_to_nifti_puts_every_voxel_where_dicom_says_it_is(tmp_path) -> None:
    _write(tmp_path, orientation=OBLIQUE)
    (vol,) = read_volumes([tmp_path]).volumes
    img = vol.to_nifti()
    data = np.asarray(img.dataobj)
    s, r, c = 7, 5, 3
    assert data[c, r, s] == vol.pixels[s, r, c]
    lps = vol.affine_lps @ [s, r, c, 1]
    np.testing.assert_allclose(img.affine @ [c, r, s, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-6)
    assert float(img.header["cal_max"]) - float(img.header["cal_min"]) == vol.window[1]


def test_spacing_comes_from_positions_not_slice_thickness(tmp_path) -> None:
    paths, _ = _write(tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.SliceThickness = "10"
        ds.save_as(p)
    (vol,) = read_volumes([tmp_path]).volumes
    assert vol.spacing_mm[0] == pytest.approx(2.5, abs=1e-3)


def test_a_gap_is_reported_with_how_many_slices_and_where(tmp_path) -> None:
    _write(tmp_path, order=[k for k in range(SHAPE[0]) if k not in (5, 6)])
    result = read_volumes([tmp_path])
    assert not result.volumes
    (failure,) = result.failures
    assert failure.error_type == IncompleteSeriesError.__name__
    assert "2 slices missing" in failure.error and "after slice 5" in failure.error
    assert len(failure.files) == SHAPE[0] - 2


def test_the_same_image_twice_is_read_once_and_said(tmp_path) -> None:
    paths, _ = _write(tmp_path / "s")
    shutil.copy(paths[3], tmp_path / "s" / "copy.dcm")  # the same SOP instance twice
    twin = pydicom.dcmread(paths[7])  # same pixels, new SOP Instance UID (resent by a router)
    twin.SOPInstanceUID = generate_uid()
    twin.save_as(tmp_path / "s" / "twin.dcm")
    (vol,) = read_volumes([tmp_path / "s"]).volumes
    assert vol.shape == SHAPE
    np.testing.assert_array_equal(vol.pixels, _values())
    assert len(vol.warnings) == 2
    assert any("given twice" in w for w in vol.warnings)
    assert any("pixel for pixel" in w for w in vol.warnings)


def test_two_different_images_at_one_position_are_refused(tmp_path) -> None:
    paths, _ = _write(tmp_path)
    other = pydicom.dcmread(paths[4])
    other.SOPInstanceUID = generate_uid()
    other.PixelData = (_values(9)[4]).tobytes()
    other.save_as(tmp_path / "echo2.dcm")
    (failure,) = read_volumes([tmp_path]).failures
    assert failure.error_type == DuplicateSliceError.__name__
    assert "more than one stack" in failure.error


def test_a_broken_file_fails_only_its_own_series_and_garbage_is_skipped(tmp_path) -> None:
    good, good_header = _write(tmp_path / "good")
    bad, _ = _write(tmp_path / "bad", values=_values(2))
    data = bad[4].read_bytes()
    bad[4].write_bytes(data[: len(data) - 300])  # cut short inside the pixel data
    (tmp_path / "good" / "notes.txt").write_text("not DICOM")
    result = read_volumes([tmp_path])
    assert [v.series_instance_uid for v in result.volumes] == [good_header.series_uid]
    (failure,) = result.failures
    assert "slice_0005.dcm" in failure.error and "cannot be decoded" in failure.error
    assert [(Path(s.label).name, s.reason) for s in result.skipped] == [
        ("notes.txt", "not a DICOM file")
    ]


def test_mixed_orientations_or_sizes_are_refused(tmp_path) -> None:
    paths, _ = _write(tmp_path / "o")
    ds = pydicom.dcmread(paths[2])
    ds.ImageOrientationPatient = list(OBLIQUE)
    ds.save_as(paths[2])
    (failure,) = read_volumes([tmp_path / "o"]).failures
    assert failure.error_type == InconsistentSeriesError.__name__ and "orientation" in failure.error

    paths, _ = _write(tmp_path / "s")
    ds = pydicom.dcmread(paths[2])
    ds.Rows, ds.Columns = SHAPE[2], SHAPE[1]  # transposed matrix
    ds.save_as(paths[2])
    (failure,) = read_volumes([tmp_path / "s"]).failures
    assert "matrix size" in failure.error


def test_a_tilted_gantry_and_irregular_spacing_are_refused(tmp_path) -> None:
    paths, _ = _write(tmp_path / "tilt")
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * k, z]  # sheared along y
        ds.save_as(p)
    (failure,) = read_volumes([tmp_path / "tilt"]).failures
    assert "sheared" in failure.error and "tilted gantry" in failure.error

    paths, _ = _write(tmp_path / "odd")
    ds = pydicom.dcmread(paths[6])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 1.1]
    ds.save_as(paths[6])
    (failure,) = read_volumes([tmp_path / "odd"]).failures
    assert "irregular" in failure.error


def test_too_few_images_and_projection_images_are_not_volumes(tmp_path) -> None:
    _write(tmp_path / "two", values=_values(shape=(2, 8, 8)))
    paths, _ = _write(tmp_path / "proj", values=_values(shape=(4, 8, 8)))
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.ImagePositionPatient
        ds.save_as(p)
    result = read_volumes([tmp_path / "two", tmp_path / "proj"])
    assert not result.volumes and len(result.failures) == 2
    assert all(f.error_type == NotAVolumeError.__name__ for f in result.failures)
    assert "at least 3" in result.failures[0].error
    assert "projection image" in result.failures[1].error


@pytest.mark.parametrize(
    ("modality", "converter"),
    [("CT", LegacyConvertedEnhancedCTImage), ("MR", LegacyConvertedEnhancedMRImage)],
)
def test_enhanced_multiframe_gives_the_same_volume_as_its_single_frames(
    tmp_path, modality, converter
) -> None:
    """highdicom converts the series to one enhanced multi-frame object with per-frame groups."""
    paths, header = _write(tmp_path / "single", modality=modality, orientation=OBLIQUE)
    single = read_volumes([tmp_path / "single"]).volumes[0]
    dss = [pydicom.dcmread(p) for p in reversed(paths)]  # order must not matter here either
    multi = converter(dss, generate_uid(), 2, generate_uid(), 1)
    buf = io.BytesIO()
    multi.save_as(buf)
    result = read_volumes([("enhanced.dcm", buf.getvalue())])
    (vol,) = result.volumes
    assert vol.multiframe and len(set(vol.sop_instance_uids)) == 1
    np.testing.assert_array_equal(vol.pixels, single.pixels)
    np.testing.assert_allclose(vol.affine_lps, single.affine_lps, atol=1e-3)
    assert "frame 1" in " ".join(vol.sources)


def test_a_multiframe_without_per_frame_positions_is_refused_cleanly() -> None:
    path = pydicom.data.get_testdata_file("rtdose.dcm")
    result = read_volumes([path])
    (failure,) = result.failures
    assert failure.error_type == NotAVolumeError.__name__ and "per-frame" in failure.error


def test_uploads_and_a_zip_give_the_same_volume_as_the_folder(tmp_path) -> None:
    paths, _ = _write(tmp_path / "s", orientation=OBLIQUE)
    folder = read_volumes([tmp_path / "s"]).volumes[0]
    uploads = [(p.name, p.read_bytes()) for p in reversed(paths)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in uploads:
            zf.writestr(f"study/{name}", data)
        zf.writestr("study/readme.txt", "hello")
    for src in (uploads, [("study.zip", buf.getvalue())]):
        result = read_volumes(src)
        (vol,) = result.volumes
        np.testing.assert_array_equal(vol.pixels, folder.pixels)
        np.testing.assert_allclose(vol.affine_lps, folder.affine_lps)
    assert [s.label for s in result.skipped] == ["study.zip:study/readme.txt"]


def test_zip_member_names_are_labels_never_paths(tmp_path, monkeypatch) -> None:
    paths, _ = _write(tmp_path / "s")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, p in enumerate(paths):
            zf.writestr(f"../../escape{k}/\x1b[31m{p.name}", p.read_bytes())
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.parent.rglob("*"))
    (vol,) = read_volumes([("x.zip", buf.getvalue())]).volumes
    assert vol.shape == SHAPE
    assert sorted(tmp_path.parent.rglob("*")) == before  # nothing written anywhere
    assert all("\x1b" not in s for s in vol.sources) and "../../escape0" in vol.sources[0]


def test_zip_bombs_and_oversized_archives_are_refused(tmp_path, monkeypatch) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.dcm", b"\0" * (8 << 20))  # 8 MiB of zeros deflate about 1000:1
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        read_volumes([("bomb.zip", buf.getvalue())])
    monkeypatch.setattr(volume_sources, "MAX_MEMBERS", 3)
    paths, _ = _write(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in paths:
            zf.write(p, p.name)
    with pytest.raises(UnsafeArchiveError, match="members"):
        read_volumes([("many.zip", buf.getvalue())])


def test_a_folder_past_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch) -> None:
    _write(tmp_path)
    monkeypatch.setattr(volume_sources, "MAX_TOTAL_BYTES", 20_000)
    with pytest.raises(ValueError, match="one series' folder"):
        read_volumes([tmp_path])


def test_scan_series_tells_stacks_from_single_images(tmp_path) -> None:
    paths, header = _write(tmp_path / "vol")
    single = pydicom.data.get_testdata_file("CT_small.dcm")
    infos, owner, _ = scan_series([tmp_path / "vol", single])
    by_uid = {i.series_instance_uid: i for i in infos}
    assert by_uid[header.series_uid].looks_like_volume and by_uid[header.series_uid].frames == 12
    assert sum(1 for i in infos if not i.looks_like_volume) == 1
    assert owner[str(paths[0])] == header.series_uid


AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _one_image(folder: Path, header: SeriesHeader, orientation, seed: int) -> list[Path]:
    """One positioned image of ``header``'s series (a localizer plane)."""
    return write_series(
        _values(seed, (1, 24, 20)), folder, header, origin_lps=(-80.0, -60.0, 30.0),
        orientation=orientation, pixel_spacing=(0.8, 0.7), slice_spacing=2.5,
    )  # fmt: skip


def test_a_three_plane_localizer_is_three_2d_images_not_a_volume(tmp_path) -> None:
    """The rule of docs/volumes.md: positioned images are a volume only as a stack of parallel
    slices; three orthogonal localizer planes in one series are not (each is read in 2D)."""
    header = _header()
    for k, plane in enumerate((AXIAL, CORONAL, SAGITTAL)):
        _one_image(tmp_path / f"plane{k}", header, plane, k)
    (info,), _, _ = scan_series([tmp_path])
    assert info.positioned == 3 and info.stacked == 1
    assert not info.looks_like_volume
    # two parallel planes and one other: still no stack of three
    header2 = _header()
    for k, plane in enumerate((AXIAL, AXIAL, CORONAL)):
        _one_image(tmp_path / "two" / f"p{k}", header2, plane, k)
    (info,), _, _ = scan_series([tmp_path / "two"])
    assert info.stacked == 2 and not info.looks_like_volume


def test_a_stack_with_a_stray_localizer_is_one_volume_refused_with_the_reason(tmp_path) -> None:
    """A stack of parallel slices makes the series a volume even with an odd image in it: it is
    offered once, in 3D, and its read says why it cannot be assembled (never 13 2D reads)."""
    paths, header = _write(tmp_path / "stack")
    _one_image(tmp_path / "scout", header, CORONAL, 9)
    (info,), _, _ = scan_series([tmp_path])
    assert info.looks_like_volume and info.stacked == SHAPE[0] and info.positioned == SHAPE[0] + 1
    (failure,) = read_volumes([tmp_path]).failures
    assert failure.error_type == InconsistentSeriesError.__name__


def test_an_enhanced_multiframe_is_a_volume_by_its_frames(tmp_path) -> None:
    paths, _ = _write(tmp_path / "single", modality="MR", orientation=OBLIQUE)
    dss = [pydicom.dcmread(p) for p in paths]
    multi = LegacyConvertedEnhancedMRImage(dss, generate_uid(), 2, generate_uid(), 1)
    (info,), _, _ = scan_series([("enhanced.dcm", _saved(multi))])
    assert info.multiframe and info.frames == SHAPE[0] and info.stacked == SHAPE[0]
    assert info.looks_like_volume


def test_a_series_split_in_two_scans_merges_to_the_one_scan(tmp_path) -> None:
    paths, _ = _write(tmp_path)
    (whole,), _, _ = scan_series(paths)
    (a,), _, _ = scan_series(paths[:5])
    (b,), _, _ = scan_series(paths[5:])
    assert a.merged(b) == whole and a.looks_like_volume and whole.looks_like_volume


def _saved(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def test_every_file_of_pydicoms_corpus_is_a_volume_a_failure_or_skipped() -> None:
    """No exception escapes, whatever a real DICOM file holds."""
    folder = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
    files = sorted(p for p in folder.iterdir() if p.is_file())
    result = read_volumes(files)
    named = (
        sum(len(f.files) for f in result.failures)
        + len(result.skipped)
        + sum(len({s.split(" frame ")[0] for s in v.sources}) for v in result.volumes)
    )
    assert named == len(files) > 60  # every file accounted for, once
    assert all(f.error and f.error_type.endswith("Error") for f in result.failures)
    # the corpus holds no stack of three positioned slices; its multi-frame RT dose is refused
    assert not result.volumes
    assert any("per-frame" in f.error for f in result.failures)


def test_a_header_value_that_cannot_be_read_is_skipped_not_raised(tmp_path) -> None:
    """A Rows of "x" (an IS element, as a broken exporter writes it) made the header scan raise,
    so one such file stopped an upload, an ingest or a predict run (a traceback on the page)."""
    files, _ = _write(tmp_path)
    bad = pydicom.dcmread(files[0])
    tag = pydicom.tag.Tag(0x00280010)  # written raw: pydicom refuses to build such a value
    bad._dict[tag] = pydicom.dataelem.RawDataElement(tag, "IS", 2, b"x ", 0, False, True)
    bad.save_as(tmp_path / "bad.dcm")
    other, _ = _write(tmp_path / "other")
    infos, owner, skipped = scan_series([tmp_path / "bad.dcm", *other])
    assert [Path(s.label).name for s in skipped] == ["bad.dcm"]
    assert "header cannot be read" in skipped[0].reason
    assert str(tmp_path / "bad.dcm") not in owner
    assert len(infos) == 1 and infos[0].looks_like_volume
