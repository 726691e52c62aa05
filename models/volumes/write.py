"""Write a volume as a DICOM series: one CT or MR Image Storage file per slice, geometry exact.

Why single-frame CT/MR Image Storage and not an enhanced multi-frame object: it is what most
scanners still send and every PACS and viewer reads, and it exercises the reader's harder path
(ordering, gaps, duplicates). The tests convert such series to enhanced multi-frame with
highdicom's legacy converter to cover the other path.

Each file carries the Image Plane module (PS3.3 C.7.6.2: ImagePositionPatient of its own slice,
ImageOrientationPatient, PixelSpacing, SliceThickness, SliceLocation), a shared
FrameOfReferenceUID, and the IOD's modality module (CT Image C.8.2.1 with RescaleType HU; MR
Image C.8.3.1). CT stores Hounsfield units as signed 16-bit (slope 1, intercept 0); MR stores
unsigned 16-bit signal. Every file says it is synthetic (Manufacturer 'OncoLens phantom',
ImageComments). File names are ``slice_NNNN.dcm`` from the slice index, never from input text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    RE_VALID_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

__all__ = ["SeriesHeader", "SeriesWriteError", "slice_uid", "write_series"]

IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["OncoLens volume series writer"])
MANUFACTURER = "OncoLens phantom"
_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}


class SeriesWriteError(ValueError):
    """The volume or its identifiers cannot be written as a valid series; the message says why."""


@dataclass(frozen=True)
class SeriesHeader:
    """Who and what a written series is (identifiers of the demo's synthetic patients)."""

    modality: str  # 'CT' or 'MR'
    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    study_date: dt.date
    body_part: str
    study_description: str
    series_description: str
    series_number: int = 1
    accession_number: str = ""
    birth_date: dt.date | None = None
    sex: str = ""
    window: tuple[float, float] = (40.0, 400.0)  # centre, width
    contrast_agent: str = ""  # ContrastBolusAgent; empty: none given


def slice_uid(series_uid: str, k: int) -> UID:
    """The SOP Instance UID of slice ``k``: derived from the series UID (stable across reruns)."""
    return generate_uid(entropy_srcs=[series_uid, str(int(k))])


def write_series(
    values: np.ndarray,
    folder: str | Path,
    header: SeriesHeader,
    *,
    origin_lps: tuple[float, float, float],
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: tuple[float, float],
    slice_spacing: float,
    order: list[int] | None = None,
) -> list[Path]:
    """Write ``values[slice, row, column]`` (HU for CT, signal for MR) as one file per slice.

    Slice ``k`` lies at ``origin_lps + k * slice_spacing * normal`` (normal = row x column
    direction). ``order`` writes only those slice indices (a test leaves one out to make a gap).
    Returns the paths written, in slice order.
    """
    if header.modality not in _SOP_CLASS:
        raise SeriesWriteError(f"modality {header.modality!r}: only CT and MR series are written")
    for name in ("study_uid", "series_uid", "frame_of_reference_uid"):
        uid = getattr(header, name)
        if len(uid) > 64 or not RE_VALID_UID.match(uid):
            raise SeriesWriteError(f"{name} is not a valid DICOM UID: {uid!r}")
    v = np.asarray(values)
    if v.ndim != 3 or min(v.shape) < 1:
        raise SeriesWriteError(f"a volume is [slice, row, column]; got shape {v.shape}")
    ct = header.modality == "CT"
    lo, hi = (-32768, 32767) if ct else (0, 65535)
    stored = np.clip(np.rint(v), lo, hi).astype(np.int16 if ct else np.uint16)
    o = np.asarray(orientation, dtype=float).reshape(2, 3)
    normal = np.cross(o[0], o[1])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = _base(header, stored.shape[1:], pixel_spacing, slice_spacing, orientation)
    paths = []
    for k in order if order is not None else range(stored.shape[0]):
        ds = base.copy()
        ds.file_meta = base.file_meta
        uid = slice_uid(header.series_uid, k)
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = k + 1
        pos = np.asarray(origin_lps, dtype=float) + k * slice_spacing * normal
        ds.ImagePositionPatient = [f"{x:.4f}" for x in pos]
        ds.SliceLocation = f"{float(pos @ normal):.4f}"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / f"slice_{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _base(
    h: SeriesHeader,
    shape: tuple[int, ...],
    pixel_spacing: tuple[float, float],
    slice_spacing: float,
    orientation: tuple[float, ...],
) -> Dataset:
    ct = h.modality == "CT"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[h.modality]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _SOP_CLASS[h.modality]
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    date = h.study_date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "100000"
    ds.AccessionNumber = h.accession_number
    ds.Modality = h.modality
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = h.study_description
    ds.SeriesDescription = h.series_description
    ds.PatientName = h.patient_name
    ds.PatientID = h.patient_id
    ds.PatientBirthDate = h.birth_date.strftime("%Y%m%d") if h.birth_date else ""
    ds.PatientSex = h.sex
    ds.BodyPartExamined = h.body_part
    ds.StudyInstanceUID = h.study_uid
    ds.SeriesInstanceUID = h.series_uid
    ds.StudyID = h.accession_number[:16]
    ds.SeriesNumber = h.series_number
    ds.FrameOfReferenceUID = h.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = [f"{x:.6f}" for x in orientation]
    ds.PixelSpacing = [f"{pixel_spacing[0]:.4f}", f"{pixel_spacing[1]:.4f}"]
    ds.SliceThickness = f"{slice_spacing:.4f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if ct else 0
    ds.WindowCenter = f"{h.window[0]:.1f}"
    ds.WindowWidth = f"{h.window[1]:.1f}"
    ds.ImageComments = "Synthetic phantom generated by OncoLens; not patient data."
    if h.contrast_agent:
        ds.ContrastBolusAgent = h.contrast_agent
    if ct:
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.KVP = "120"
        ds.ConvolutionKernel = "STANDARD"
    else:
        ds.SpacingBetweenSlices = f"{slice_spacing:.4f}"
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.RepetitionTime = "8.1"
        ds.EchoTime = "3.7"
        ds.EchoTrainLength = "1"
        ds.MagneticFieldStrength = "3"
    return ds
