"""Series in, volumes out: group DICOM instances by series and stack each into a 3D volume.

``read_volumes(sources)`` takes folders, files, zip archives or uploads (``sources.collect``),
reads every file once, groups images by SeriesInstanceUID and builds one ``Volume`` per series:
float32 ``[slice, row, column]`` in the modality's units (the Modality LUT applied: Hounsfield
units for CT, PS3.3 C.11.1), the LPS and RAS affines, the spacing measured from the positions
(``models.volumes.geometry``). Single-frame series (CT, MR Image Storage) and enhanced
multi-frame objects (per-frame functional groups, PS3.3 C.7.6.16: Plane Position, Plane
Orientation, Pixel Measures, Pixel Value Transformation) become the same list of positioned
frames first, so one code path stacks both.

What is refused, per series, with a ``VolumeError`` whose message names the problem and the
files; other series are unaffected:

- fewer than ``MIN_SLICES`` positioned images (a single image is read as 2D, not here), images
  without ImagePositionPatient / ImageOrientationPatient / PixelSpacing (projection images);
- mixed orientations, matrix sizes, pixel spacings or frames of reference: one series, several
  stacks (a localizer, reformats) that cannot be one volume;
- two *different* images at one position (echoes, phases, a repeat: several stacks); the same
  image twice (one SOP Instance, or identical pixels) is kept once and said in ``warnings``;
- gaps (missing slices: the message says how many and where), irregular spacing, a sheared
  stack (gantry tilt), colour or MONOCHROME1 data, more than ``MAX_VOXELS`` voxels.

Files that are not DICOM, carry no image or cannot be parsed are skipped with the reason; a file
of a series whose pixels cannot be decoded fails that series.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from models.volumes import geometry
from models.volumes.sources import Item, Skipped, Source, collect

__all__ = [
    "MAX_VOXELS",
    "MIN_SLICES",
    "DuplicateSliceError",
    "IncompleteSeriesError",
    "InconsistentSeriesError",
    "NotAVolumeError",
    "SeriesFailure",
    "SeriesInfo",
    "SeriesScan",
    "Volume",
    "VolumeError",
    "VolumeSet",
    "read_volumes",
    "scan_series",
    "volume_files",
]

MIN_SLICES = 3
MAX_VOXELS = 1 << 28
"""256 M voxels: 1 GiB as float32 (the 2D reader's limit on pixel bytes)."""
ORIENTATION_TOLERANCE = 1e-4
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class VolumeError(ValueError):
    """A series that cannot be made into a volume; the message says why, for a user."""


class NotAVolumeError(VolumeError):
    """Too few positioned images, or images without the geometry a volume needs."""


class InconsistentSeriesError(VolumeError):
    """Images of one series with different orientations, sizes, spacings or frames of reference."""


class DuplicateSliceError(VolumeError):
    """Two different images at the same position: the series holds more than one stack."""


class IncompleteSeriesError(VolumeError):
    """Missing slices (a gap), irregular spacing or a sheared stack."""


@dataclass(frozen=True)
class _Frame:
    label: str  # file (and frame) for messages
    sop_uid: str
    index: int  # frame number inside its instance (0 for single-frame)
    ds: Dataset
    position: np.ndarray | None
    orientation: np.ndarray | None
    spacing: tuple[float, float] | None
    slope: float
    intercept: float
    kind: tuple[Any, ...] = ()  # rows, columns, photometric, frame of reference, samples


def _kind(ds: Dataset) -> tuple[Any, ...]:
    """What every image of one stack must share, read once per instance."""
    return (
        int(ds.get("Rows", 0) or 0),
        int(ds.get("Columns", 0) or 0),
        _text(ds, "PhotometricInterpretation"),
        _text(ds, "FrameOfReferenceUID"),
        int(ds.get("SamplesPerPixel", 1) or 1),
    )


_TAGS = {
    k: int(tag_for_keyword(k) or 0)
    for k in (
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "PhotometricInterpretation",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "PixelSpacing",
        "RescaleSlope",
        "RescaleIntercept",
        "NumberOfFrames",
    )
}


def _strings(ds: Dataset, keyword: str) -> list[str] | None:
    """A text attribute's values straight from its raw bytes (None when absent).

    Why: pydicom converts and validates a value on first access (a UID through a regular
    expression, a DS through float parsing and range checks), about a third of the time of a
    64-slice read; the dozen attributes read per slice here are plain ASCII text whatever the
    transfer syntax, so splitting the bytes on backslashes gives the same values.
    """
    elem = ds.get_item(_TAGS[keyword])
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace").strip(" \0")
        return [v.strip(" \0") for v in text.split("\\")] if text else None
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float):
        return [str(value)]
    return [str(v) for v in value]


def _text(ds: Dataset, keyword: str) -> str:
    values = _strings(ds, keyword)
    return values[0] if values else ""


@dataclass(frozen=True)
class Volume:
    """One series as a volume. ``pixels[slice, row, column]``, float32, modality units.

    ``affine_lps`` maps ``(slice, row, column, 1)`` to LPS mm (``affine_ras``: to RAS, nibabel's
    frame); ``spacing_mm`` is (between slices, between rows, between columns). ``sources`` names
    the file (and frame) of each slice; ``warnings`` says what was tolerated (a duplicate dropped).
    """

    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str
    modality: str
    body_part: str
    series_description: str
    pixels: np.ndarray
    affine_lps: np.ndarray
    spacing_mm: tuple[float, float, float]
    window: tuple[float, float]  # centre, width
    sources: tuple[str, ...]
    sop_instance_uids: tuple[str, ...]
    multiframe: bool
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.pixels.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def affine_ras(self) -> np.ndarray:
        return geometry.LPS_TO_RAS @ self.affine_lps

    @property
    def axes(self) -> str:
        """Where ``[slice, row, column]`` point, in LPS letters ('SPL': an axial stack)."""
        return geometry.axis_codes(self.affine_lps)

    def to_nifti(self) -> Any:
        """The volume as a ``nibabel.Nifti1Image`` (``[column, row, slice]``, RAS affine, mm).

        For viewers and tools that speak NIfTI (NiiVue, ITK-SNAP, MONAI's loaders); the pixels
        stay float32 modality units, the header's cal_min/max carry the window.
        """
        # lazy: nibabel is needed only by callers that ask for NIfTI
        import nibabel as nib

        data, affine = geometry.nifti_layout(self.pixels, self.affine_lps)
        img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
        img.header.set_xyzt_units("mm")
        centre, width = self.window
        img.header["cal_min"], img.header["cal_max"] = centre - width / 2, centre + width / 2
        return img

    def to_json(self) -> dict[str, Any]:
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "patient_id": self.patient_id,
            "modality": self.modality,
            "body_part": self.body_part,
            "series_description": self.series_description,
            "shape": list(self.shape),
            "spacing_mm": [round(v, 4) for v in self.spacing_mm],
            "axes": self.axes,
            "affine_lps": np.round(self.affine_lps, 5).tolist(),
            "window": [round(v, 2) for v in self.window],
            "multiframe": self.multiframe,
            "instances": len(set(self.sop_instance_uids)),
            "warnings": list(self.warnings),
            "read_ms": round(self.seconds * 1e3, 1),
        }


@dataclass(frozen=True)
class SeriesFailure:
    """A series that gave no volume: its UID, the files it had and the reason."""

    series_instance_uid: str
    files: tuple[str, ...]
    error: str
    error_type: str

    def to_json(self) -> dict[str, Any]:
        return {
            "series_instance_uid": self.series_instance_uid,
            "files": len(self.files),
            "first_file": self.files[0] if self.files else None,
            "error": self.error,
            "error_type": self.error_type,
        }


@dataclass(frozen=True)
class VolumeSet:
    """Everything read from some sources: volumes, series that failed, files not in any series."""

    volumes: tuple[Volume, ...]
    failures: tuple[SeriesFailure, ...]
    skipped: tuple[Skipped, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class SeriesInfo:
    """A series found by ``scan_series`` (headers only): is it a stack of positioned images?"""

    series_instance_uid: str
    modality: str
    files: tuple[str, ...]
    frames: int  # images in all (a multi-frame instance counts its frames)
    positioned: int  # of which carry a position and an orientation
    multiframe: bool
    # positioned images per geometry (orientation to 1e-3, rows, columns): parallel slices of one
    # matrix size form a stack; a 3-plane localizer's images fall into several groups
    stacks: tuple[tuple[tuple[Any, ...], int], ...] = ()

    @property
    def stacked(self) -> int:
        """The images of the largest stack: parallel, positioned, of one matrix size."""
        return max((n for _, n in self.stacks), default=0)

    @property
    def looks_like_volume(self) -> bool:
        """The rule of docs/volumes.md ("Which series is a volume"): at least ``MIN_SLICES``
        positioned images that are parallel and of one matrix size. Such a series is offered and
        read once, in 3D (and refused as a whole, with the reason, when it cannot be assembled:
        a gap, a stray localizer); anything else (CR, DX, MG, a single slice, a 3-plane localizer)
        is read image by image in 2D."""
        return self.stacked >= MIN_SLICES

    def merged(self, other: SeriesInfo) -> SeriesInfo:
        """This series with ``other``'s files added (the same series scanned in two chunks):
        counts add up exactly as one scan of all the files would give."""
        counts = dict(self.stacks)
        for key, n in other.stacks:
            counts[key] = counts.get(key, 0) + n
        return SeriesInfo(
            self.series_instance_uid,
            self.modality,
            self.files + other.files,
            self.frames + other.frames,
            self.positioned + other.positioned,
            self.multiframe or other.multiframe,
            tuple(counts.items()),
        )


# --------------------------------------------------------------------------- public


def read_volumes(sources: Iterable[Source]) -> VolumeSet:
    """Read ``sources`` (paths of folders, files or zips; ``(name, bytes)`` uploads) into volumes.

    Never raises for one bad series or file: they come back in ``failures`` and ``skipped``.
    Raises ``sources.UnsafeArchiveError`` for an archive past the safety limits (nothing of it
    is read) and ``ValueError`` for a folder past ``sources.MAX_FILES``.
    """
    items, skipped = collect(sources)
    series: dict[str, list[_Frame]] = defaultdict(list)
    files: dict[str, list[str]] = defaultdict(list)
    problems: dict[str, VolumeError] = {}
    for item in items:
        ds, why = _parse(item, stop_before_pixels=False)
        if ds is None:
            skipped.append(Skipped(item.label, why))
            continue
        uid = _text(ds, "SeriesInstanceUID")
        if not uid:
            skipped.append(Skipped(item.label, "no SeriesInstanceUID: cannot tell its series"))
            continue
        files[uid].append(item.label)
        try:
            series[uid].extend(_frames(item.label, ds))
        except VolumeError as exc:
            problems.setdefault(uid, exc)
    volumes, failures = [], []
    for uid in files:
        try:
            if uid in problems:
                raise problems[uid]
            volumes.append(_assemble(uid, series[uid]))
        except VolumeError as exc:
            failures.append(SeriesFailure(uid, tuple(files[uid]), str(exc), type(exc).__name__))
    return VolumeSet(tuple(volumes), tuple(failures), tuple(skipped))


def scan_series(
    sources: Iterable[Source],
) -> tuple[list[SeriesInfo], dict[str, str], list[Skipped]]:
    """Headers only: the series among ``sources``, and each file's series UID (by path, else label).

    For callers that route files (``oncolens predict``: a stack of slices is a volume, not 64
    2D images). Files that are not DICOM images are left to the caller (not in the map).
    """
    scan = SeriesScan()
    skipped = scan.add_sources(sources)
    return scan.infos(), scan.owner, skipped


class SeriesScan:
    """``scan_series`` file by file: headers added in input order, the same series, counts and
    file -> series map as one ``scan_series`` of the same files.

    Why: ``oncolens predict`` and ``ingest`` parse each file once, in worker processes, for both
    the scan and the 2D read (``models.inference.batch.scan_and_read``); a file whose dataset they
    already hold is added with ``add``, any other with ``add_sources`` (parsed here, as
    ``scan_series`` does: zips, files without the DICOM preamble, unreadable ones)."""

    def __init__(self) -> None:
        self._members: dict[str, list[tuple[str, int, list[tuple[Any, ...]]]]] = {}
        self._modality: dict[str, str] = {}
        self.owner: dict[str, str] = {}  # file (by path, else label) -> series UID

    def add(self, label: str, key: str, ds: Dataset) -> Skipped | None:
        """A parsed header (a conforming DICOM file, not a DICOMDIR: what ``scan_series``'s parse
        accepts), known as ``key`` in ``owner``; a header whose geometry values cannot be read
        (a Rows of "x", a malformed orientation) is returned as skipped, not raised: one bad
        file must not stop the scan of the others (the caller's 2D read then says why it fails)."""
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid:
            return None
        try:
            n = _number_of_frames(ds)
            keys = _stack_keys(ds, n)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a bad value
            return Skipped(label, f"its header cannot be read ({type(exc).__name__})")
        members = self._members.get(uid)
        if members is None:
            members = self._members[uid] = []
            self._modality[uid] = str(ds.get("Modality", "") or "")
        members.append((label, n, keys))
        self.owner[key] = uid
        return None

    def add_sources(self, sources: Iterable[Source]) -> list[Skipped]:
        """Sources parsed here, headers only, exactly as ``scan_series`` reads them."""
        items, skipped = collect(sources)
        for item in items:
            ds, _ = _parse(item, stop_before_pixels=True)
            if ds is not None:
                key = str(item.path) if item.path is not None else item.label
                bad = self.add(item.label, key, ds)
                if bad is not None:
                    skipped.append(bad)
        return skipped

    def infos(self) -> list[SeriesInfo]:
        """The series so far, in the order their first file was added."""
        infos = []
        for uid, members in self._members.items():
            frames = positioned = 0
            multi = False
            stacks: dict[tuple[Any, ...], int] = {}
            for _, n, keys in members:
                frames += n
                multi |= n > 1
                for key in keys:
                    positioned += 1
                    stacks[key] = stacks.get(key, 0) + 1
            infos.append(
                SeriesInfo(
                    uid,
                    self._modality[uid],
                    tuple(label for label, _, _ in members),
                    frames,
                    positioned,
                    multi,
                    tuple(stacks.items()),
                )
            )
        return infos


def _stack_keys(ds: Dataset, n: int) -> list[tuple[Any, ...]]:
    """The geometry of each positioned frame of an instance (headers only): its orientation
    (rounded to 1e-3, so that parallel slices share it) and matrix size; none for frames without
    a position and an orientation (projection images, a multi-frame without per-frame positions)."""
    size = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))

    def key(orientation: Any) -> tuple[Any, ...] | None:
        ori = _floats(orientation, 6)
        return None if ori is None else (tuple(float(v) + 0.0 for v in np.round(ori, 3)), *size)

    if n == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        if "ImagePositionPatient" not in ds:
            return []
        one = key(_strings(ds, "ImageOrientationPatient"))
        return [] if one is None else [one]
    if not _per_frame_positions(ds):
        return []
    out = []
    for per in ds.get("PerFrameFunctionalGroupsSequence") or ():
        ori = _find(per, ds, "PlaneOrientationSequence")
        k = key((ori or ds).get("ImageOrientationPatient"))
        if k is not None:
            out.append(k)
    return out


def volume_files(paths: Iterable[Path]) -> dict[str, list[Path]]:
    """The files of each series among ``paths`` that is a volume by ``SeriesInfo.looks_like_volume``
    (headers only): ingest, a PACS pull and the Imaging page's pickers route files by it, so a
    series is one 3D input everywhere (``oncolens predict`` applies the same rule to its scan)."""
    paths = [Path(p) for p in paths]
    infos, owner, _ = scan_series(paths)
    wanted = {i.series_instance_uid for i in infos if i.looks_like_volume}
    out: dict[str, list[Path]] = {}
    for path in paths:
        uid = owner.get(str(path))
        if uid in wanted:
            out.setdefault(uid, []).append(path)
    return out


# --------------------------------------------------------------------------- reading


def _parse(item: Item, *, stop_before_pixels: bool) -> tuple[Dataset | None, str]:
    try:
        src: Any = io.BytesIO(item.data) if item.data is not None else item.path
        ds = pydicom.dcmread(src, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        return None, "not a DICOM file"
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    except Exception as exc:  # pydicom raises many kinds on damaged input
        return None, f"damaged DICOM file ({type(exc).__name__})"
    if "DirectoryRecordSequence" in ds:
        return None, "a DICOMDIR (an index of files), not an image"
    if not stop_before_pixels and not any(k in ds for k in _PIXEL_KEYWORDS):
        return None, "a DICOM object without an image"
    return ds, ""


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(_text(ds, "NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _per_frame_positions(ds: Dataset) -> bool:
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    return bool(groups) and _find(groups[0], ds, "PlanePositionSequence") is not None


def _find(per_frame: Dataset, ds: Dataset, macro: str) -> Dataset | None:
    """The first item of ``macro`` for a frame: per-frame first, then shared (PS3.3 C.7.6.16)."""
    for groups in (per_frame, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        seq = groups.get(macro) if groups is not None else None
        if seq:
            item: Dataset = seq[0]
            return item
    return None


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        out = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return out if out.size == n and np.all(np.isfinite(out)) else None


def _frames(label: str, ds: Dataset) -> list[_Frame]:
    """The positioned frames of one instance (one for single-frame images)."""
    sop = _text(ds, "SOPInstanceUID") or label
    slope, intercept = _rescale_raw(ds)
    kind = _kind(ds)
    n = _number_of_frames(ds)
    if n == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        spacing = _floats(_strings(ds, "PixelSpacing"), 2)
        return [
            _Frame(
                label,
                sop,
                0,
                ds,
                _floats(_strings(ds, "ImagePositionPatient"), 3),
                _floats(_strings(ds, "ImageOrientationPatient"), 6),
                None if spacing is None else (float(spacing[0]), float(spacing[1])),
                slope,
                intercept,
                kind,
            )
        ]
    groups = ds.get("PerFrameFunctionalGroupsSequence")
    if not groups or len(groups) != n:
        raise NotAVolumeError(
            f"{label}: a multi-frame image without per-frame positions "
            "(no per-frame functional groups); it cannot be placed as a volume"
        )
    out = []
    for k, per in enumerate(groups):
        pos = _find(per, ds, "PlanePositionSequence")
        ori = _find(per, ds, "PlaneOrientationSequence")
        meas = _find(per, ds, "PixelMeasuresSequence")
        pvt = _find(per, ds, "PixelValueTransformationSequence")
        spacing = None if meas is None else _floats(meas.get("PixelSpacing"), 2)
        s, i = (slope, intercept) if pvt is None else _rescale(pvt, slope, intercept)
        out.append(
            _Frame(
                f"{label} frame {k + 1}",
                sop,
                k,
                ds,
                None if pos is None else _floats(pos.get("ImagePositionPatient"), 3),
                _floats((ori or ds).get("ImageOrientationPatient"), 6),
                None if spacing is None else (float(spacing[0]), float(spacing[1])),
                s,
                i,
                kind,
            )
        )
    return out


def _rescale_raw(ds: Dataset) -> tuple[float, float]:
    """Rescale slope and intercept of a single-frame header, read from the raw text."""
    s, i = _strings(ds, "RescaleSlope"), _strings(ds, "RescaleIntercept")
    try:
        slope = float(s[0]) if s else 1.0
        intercept = float(i[0]) if i else 0.0
    except ValueError:
        return _rescale(ds)
    ok = np.isfinite(slope) and np.isfinite(intercept) and slope != 0
    return (slope, intercept) if ok else (1.0, 0.0)


def _rescale(ds: Dataset, slope: float = 1.0, intercept: float = 0.0) -> tuple[float, float]:
    try:
        s = float(ds.get("RescaleSlope", slope))
        i = float(ds.get("RescaleIntercept", intercept))
    except (TypeError, ValueError):
        return slope, intercept
    return (s, i) if np.isfinite(s) and np.isfinite(i) and s != 0 else (slope, intercept)


# --------------------------------------------------------------------------- stacking


def _assemble(uid: str, frames: list[_Frame]) -> Volume:
    t0 = time.perf_counter()
    if len(frames) < MIN_SLICES:
        raise NotAVolumeError(
            f"{len(frames)} image{'s' if len(frames) != 1 else ''} in this series; a volume needs "
            f"at least {MIN_SLICES} (a single image is read as a 2D image)"
        )
    unplaced = [
        f for f in frames if f.position is None or f.orientation is None or f.spacing is None
    ]
    if unplaced:
        raise NotAVolumeError(
            f"{unplaced[0].label} has no image position, orientation or pixel spacing "
            "(a projection image such as a mammogram is not a slice of a volume)"
        )
    first = frames[0]
    _same(frames, "orientation", lambda f: f.orientation, ORIENTATION_TOLERANCE)
    _same(frames, "pixel spacing", lambda f: np.asarray(f.spacing), 1e-3)
    _same(frames, "matrix size (rows x columns)", lambda f: f.kind[:2], None)
    _same(frames, "frame of reference", lambda f: f.kind[3], None)
    _same(frames, "photometric interpretation", lambda f: f.kind[2:], None)
    _check_pixels_kind(first)
    rows, cols = first.kind[:2]
    if len(frames) * rows * cols > MAX_VOXELS:
        raise NotAVolumeError(
            f"{len(frames)} x {rows} x {cols} voxels is over the limit of {MAX_VOXELS:,}"
        )
    assert first.orientation is not None and first.spacing is not None
    try:
        normal = geometry.slice_normal(first.orientation)
    except ValueError as exc:
        raise InconsistentSeriesError(f"{first.label}: {exc}") from exc
    positions = np.stack([f.position for f in frames if f.position is not None])
    geo = geometry.stack_geometry(positions, normal)

    pixels = _decode(frames)  # decoded before duplicates are judged: identical copies are kept once
    warnings, drop = _resolve_duplicates(frames, pixels, geo.duplicates)
    if geo.irregular:
        raise IncompleteSeriesError(geo.irregular)
    if geo.gaps:
        raise IncompleteSeriesError(
            "incomplete series: "
            + "; ".join(g.describe() for g in geo.gaps[:3])
            + (f"; {len(geo.gaps) - 3} more gaps" if len(geo.gaps) > 3 else "")
        )
    if geo.shear_mm > geometry.SHEAR_TOLERANCE_MM:
        raise IncompleteSeriesError(
            f"the slices are sheared by {geo.shear_mm:.1f} mm across the stack (a tilted gantry); "
            "tilt-corrected reconstruction is not supported"
        )
    order = [int(i) for i in geo.order if int(i) not in drop]
    if len(order) < MIN_SLICES:
        raise NotAVolumeError(f"{len(order)} distinct positions; a volume needs {MIN_SLICES}")
    stack = pixels[order]
    if not np.all(np.isfinite(stack)):
        raise NotAVolumeError("the decoded pixel values are not all finite numbers")
    start = frames[order[0]]
    assert start.position is not None
    affine = geometry.affine_lps(
        start.position, first.orientation, first.spacing, normal * geo.spacing_mm
    )
    ds = first.ds
    return Volume(
        series_instance_uid=uid,
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        pixels=stack,
        affine_lps=affine,
        spacing_mm=(geo.spacing_mm, first.spacing[0], first.spacing[1]),
        window=_window(ds, stack),
        sources=tuple(frames[i].label for i in order),
        sop_instance_uids=tuple(frames[i].sop_uid for i in order),
        multiframe=any(f.index > 0 for f in frames),
        warnings=tuple(warnings),
        seconds=time.perf_counter() - t0,
    )


def _same(frames: list[_Frame], what: str, get: Any, tol: float | None) -> None:
    """Refuse the series unless ``get(frame)`` agrees for every frame (within ``tol`` if numeric)."""
    values = [get(f) for f in frames]
    if tol is None:
        bad = next((k for k, v in enumerate(values) if v != values[0]), None)
    else:
        arr = np.asarray(values, dtype=float)
        off = np.flatnonzero(np.max(np.abs(arr - arr[0]), axis=1) > tol)
        bad = int(off[0]) if off.size else None
    if bad is not None:
        raise InconsistentSeriesError(
            f"mixed {what} in one series ({frames[0].label} and {frames[bad].label}); "
            "its images are not one stack"
        )


def _check_pixels_kind(frame: _Frame) -> None:
    _, _, photometric, _, samples = frame.kind
    if samples != 1:
        raise NotAVolumeError(f"{frame.label}: colour images are not read as volumes")
    if photometric != "MONOCHROME2":
        raise NotAVolumeError(
            f"{frame.label}: photometric interpretation {photometric or 'missing'} "
            "is not read as a volume (MONOCHROME2 only)"
        )


def _decode(frames: list[_Frame]) -> np.ndarray:
    """All frames as float32 in modality units, in input order (each instance decoded once)."""
    rows, cols = frames[0].kind[:2]
    out = np.empty((len(frames), rows, cols), dtype=np.float32)
    cache: dict[int, np.ndarray] = {}
    for n, f in enumerate(frames):
        key = id(f.ds)
        if key not in cache:
            try:
                arr = _native(f.ds, rows, cols)
                arr = f.ds.pixel_array if arr is None else arr
            except Exception as exc:  # every decoder failure: the file is broken or unsupported
                raise NotAVolumeError(
                    f"{f.label}: its pixel data cannot be decoded ({type(exc).__name__}: {exc})"
                ) from exc
            lut = "ModalityLUTSequence" in f.ds and _number_of_frames(f.ds) == 1
            if lut:
                arr = apply_modality_lut(arr, f.ds)
            cache = {key: np.asarray(arr)}  # one instance at a time: memory stays one volume
        arr = cache[key]
        frame = arr[f.index] if arr.ndim == 3 else arr
        if frame.shape != (rows, cols):
            raise InconsistentSeriesError(
                f"{f.label}: pixel data of {frame.shape} for {rows} x {cols}"
            )
        if lut:
            out[n] = frame
        else:
            np.multiply(frame, f.slope, out=out[n], casting="unsafe")
            out[n] += f.intercept
    return out


_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit / explicit VR little endian


def _native(ds: Dataset, rows: int, cols: int) -> np.ndarray | None:
    """Uncompressed little-endian 8/16-bit data read straight from the bytes, else None.

    Why: pydicom's general pixel pipeline costs about 3 ms per slice in bookkeeping, half of
    the time of a 64-slice series; for the plain case (bits stored = bits allocated, so no
    masking or sign extension) the bytes *are* the array. Anything else goes through pydicom.
    """
    meta = getattr(ds, "file_meta", None)
    tsyntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    bits = ds.get("BitsAllocated")
    if tsyntax not in _NATIVE or bits not in (8, 16) or ds.get("BitsStored") != bits:
        return None
    if "PixelData" not in ds:
        return None
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    frames = _number_of_frames(ds)
    data = ds.PixelData
    if len(data) not in (
        frames * rows * cols * dtype.itemsize,
        frames * rows * cols * dtype.itemsize + 1,
    ):
        return None
    arr = np.frombuffer(data, dtype=dtype, count=frames * rows * cols)
    return arr.reshape((frames, rows, cols) if frames > 1 else (rows, cols))


def _resolve_duplicates(
    frames: list[_Frame], pixels: np.ndarray, pairs: tuple[tuple[int, int], ...]
) -> tuple[list[str], set[int]]:
    warnings: list[str] = []
    drop: set[int] = set()
    for a, b in pairs:
        fa, fb = frames[a], frames[b]
        if (fa.sop_uid, fa.index) == (fb.sop_uid, fb.index):
            warnings.append(f"{fb.label} is the same image as {fa.label} (given twice); read once")
        elif np.array_equal(pixels[a], pixels[b]):
            warnings.append(f"{fb.label} repeats {fa.label} pixel for pixel; read once")
        else:
            raise DuplicateSliceError(
                f"two different images at the same position ({fa.label} and {fb.label}): the "
                "series holds more than one stack (echoes, phases or a repeated acquisition)"
            )
        drop.add(b)
    return warnings, drop


def _window(ds: Dataset, stack: np.ndarray) -> tuple[float, float]:
    """The header's first window (PS3.3 C.11.2), else the 1st-99th percentile range."""
    try:
        c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
        if c is not None and w is not None:
            c = float(c[0] if isinstance(c, pydicom.multival.MultiValue) else c)
            w = float(w[0] if isinstance(w, pydicom.multival.MultiValue) else w)
            if np.isfinite(c) and np.isfinite(w) and w > 0:
                return c, w
    except (TypeError, ValueError):
        pass
    sample = stack[:: max(1, stack.shape[0] // 16)]
    lo, hi = np.percentile(sample, [1, 99])
    return float((lo + hi) / 2), float(max(hi - lo, 1.0))
