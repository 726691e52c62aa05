"""Write a synthetic ``Phantom`` as a DICOM Part 10 file plus its lesion mask as a PNG.

The file is explicit VR little endian with a complete File Meta Information
group (PS3.10 section 7.1). Mammograms use the Digital Mammography X-Ray Image
IOD, For Presentation (PS3.3 A.26: DX Series/Anatomy/Image/Detector and
Mammography Series/Image modules; millimetres in ImagerPixelSpacing, as for any
projection image); brain slices use the MR Image IOD (PS3.3 A.4: Image Plane,
MR Image and Contrast/Bolus modules). Every file says it is a synthetic phantom
(Manufacturer 'OncoLens phantom', ImageComments), never patient data.

The mask goes beside the file as ``<stem>_mask.png``: 8-bit greyscale of the
same rows and columns, 0 background and 255 lesion (all zero without lesion).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    RE_VALID_UID,
    UID,
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from models.training.synthetic import Phantom

# Deterministic UID for this writer, under pydicom's root (PS3.7 D.3.3.2 Implementation Class UID)
IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["OncoLens synthetic phantom DICOM writer"])
IMPLEMENTATION_VERSION_NAME = "ONCOLENS_0_1"
MANUFACTURER = "OncoLens phantom"
SOP_CLASS = {"MG": DigitalMammographyXRayImageStorageForPresentation, "MR": MRImageStorage}
# Patient orientation of a craniocaudal view: row direction, column direction (PS3.3 C.7.6.1.1.1)
_CC_ORIENTATION = {"L": ["A", "R"], "R": ["P", "L"]}


class PhantomWriteError(ValueError):
    """The phantom or one of the identifiers cannot be written as valid DICOM; the message says why."""


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _check_uid(name: str, value: str) -> str:
    value = str(value)
    if len(value) > 64 or not RE_VALID_UID.match(value):
        raise PhantomWriteError(f"{name} is not a valid DICOM UID (PS3.5 9.1): {value!r}")
    return value


def _check_date(name: str, value: str) -> str:
    try:
        dt.datetime.strptime(value, "%Y%m%d")
    except (TypeError, ValueError):
        raise PhantomWriteError(f"{name} must be a date YYYYMMDD, got {value!r}") from None
    if len(value) != 8:
        raise PhantomWriteError(f"{name} must be a date YYYYMMDD, got {value!r}")
    return value


def _check_text(name: str, value: str, max_len: int, *, required: bool = False) -> str:
    value = str(value)
    if required and not value.strip():
        raise PhantomWriteError(f"{name} must not be empty")
    if len(value) > max_len or "\\" in value or any(ord(ch) < 32 for ch in value):
        raise PhantomWriteError(
            f"{name} must be at most {max_len} characters without backslash or control "
            f"characters, got {value!r}"
        )
    return value


def _check_phantom(phantom: Phantom) -> None:
    if phantom.modality not in SOP_CLASS:
        raise PhantomWriteError(f"modality must be 'MG' or 'MR', got {phantom.modality!r}")
    px, mask = phantom.pixels, phantom.mask
    if px.ndim != 2 or px.dtype != np.uint16:
        raise PhantomWriteError(f"pixels must be a 2-D uint16 array, got {px.dtype} {px.shape}")
    if mask.shape != px.shape:
        raise PhantomWriteError(f"mask shape {mask.shape} differs from pixels shape {px.shape}")
    if phantom.modality == "MG" and phantom.laterality not in ("L", "R"):
        raise PhantomWriteError(
            f"a mammogram needs laterality 'L' or 'R', got {phantom.laterality!r}"
        )


def build_dataset(
    phantom: Phantom,
    *,
    patient_id: str,
    patient_name: str = "Demo^Patient",
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    study_date: str,
    accession_number: str = "",
    study_description: str = "",
    instance_number: int = 1,
    birth_date: str | None = None,
    sex: str = "F",
) -> Dataset:
    """The DICOM data set (with file meta) for ``phantom``; ``write_phantom_dicom`` saves it."""
    _check_phantom(phantom)
    sop_class = SOP_CLASS[phantom.modality]
    study_uid = _check_uid("study_uid", study_uid)
    series_uid = _check_uid("series_uid", series_uid)
    sop_instance_uid = _check_uid("sop_instance_uid", sop_instance_uid)
    study_date = _check_date("study_date", study_date)
    birth = "" if birth_date is None else _check_date("birth_date", birth_date)
    if sex not in ("F", "M", "O", ""):
        raise PhantomWriteError(f"sex must be 'F', 'M', 'O' or '', got {sex!r}")
    if int(instance_number) < 1:
        raise PhantomWriteError(f"instance_number must be >= 1, got {instance_number}")
    rows, cols = phantom.pixels.shape
    row_mm, col_mm = (float(v) for v in phantom.spacing_mm)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 names
    # SOP Common, Patient, General Study
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid
    ds.PatientName = _check_text("patient_name", patient_name, 64)
    ds.PatientID = _check_text("patient_id", patient_id, 64, required=True)
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "090000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = _check_text("accession_number", accession_number, 16)
    ds.StudyDescription = _check_text("study_description", study_description, 64)
    # General Series, General Equipment, General Image
    ds.Modality = phantom.modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDate = study_date
    ds.SeriesTime = "090000"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "Synthetic phantom"
    ds.InstanceNumber = int(instance_number)
    ds.ContentDate = study_date
    ds.ContentTime = "090000"
    ds.AcquisitionDate = study_date
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageComments = "Synthetic phantom generated by OncoLens; not patient data"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Image Pixel: 12 bits stored unless the values need more
    bits = 12 if int(phantom.pixels.max(initial=0)) <= 4095 else 16
    ds.set_pixel_data(
        np.ascontiguousarray(phantom.pixels), "MONOCHROME2", bits, generate_instance_uid=False
    )
    # Modality LUT and VOI LUT
    ds.RescaleIntercept = f"{phantom.rescale_intercept:g}"
    ds.RescaleSlope = f"{phantom.rescale_slope:g}"
    ds.WindowCenter = f"{phantom.window_center:g}"
    ds.WindowWidth = f"{phantom.window_width:g}"
    ds.VOILUTFunction = "LINEAR"

    if phantom.modality == "MG":
        ds.SeriesDescription = f"{phantom.laterality} CC"
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.RescaleType = "US"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.PresentationLUTShape = "IDENTITY"
        ds.ImagerPixelSpacing = [f"{row_mm:g}", f"{col_mm:g}"]
        ds.DetectorType = "DIRECT"
        ds.BodyPartExamined = "BREAST"
        ds.AnatomicRegionSequence = Sequence([_code("76752008", "SCT", "Breast")])
        ds.ImageLaterality = phantom.laterality
        ds.ViewPosition = "CC"
        ds.ViewCodeSequence = Sequence([_code("399162004", "SCT", "cranio-caudal")])
        ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
        assert phantom.laterality is not None  # _check_phantom: a mammogram is 'L' or 'R'
        ds.PatientOrientation = _CC_ORIENTATION[phantom.laterality]
        ds.PositionerType = "MAMMOGRAPHIC"
        ds.OrganExposed = "BREAST"
        ds.BreastImplantPresent = "NO"
        ds.PartialView = "NO"
    else:
        ds.SeriesDescription = "T1 SE post-contrast axial"
        ds.BodyPartExamined = "BRAIN"
        ds.PatientPosition = "HFS"
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[series_uid, "frame of reference"])
        ds.PositionReferenceIndicator = ""
        ds.PixelSpacing = [f"{row_mm:g}", f"{col_mm:g}"]
        ds.SliceThickness = "5"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = [
            f"{-(cols - 1) / 2 * col_mm:g}",
            f"{-(rows - 1) / 2 * row_mm:g}",
            "0",
        ]
        ds.SliceLocation = "0"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "10"
        ds.EchoTrainLength = "1"
        ds.FlipAngle = "90"
        ds.ImagedNucleus = "1H"
        ds.MagneticFieldStrength = "1.5"
        ds.ContrastBolusAgent = "Gadolinium"
    return ds


def mask_path_for(path: str | os.PathLike) -> Path:
    """Where ``write_phantom_dicom`` puts the mask of the DICOM file at ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_mask.png")


def write_phantom_dicom(
    phantom: Phantom,
    path: str | os.PathLike,
    *,
    patient_id: str,
    patient_name: str = "Demo^Patient",
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    study_date: str,
    accession_number: str = "",
    study_description: str = "",
    instance_number: int = 1,
    birth_date: str | None = None,
    sex: str = "F",
) -> Path:
    """Write ``phantom`` to ``path`` as DICOM Part 10 and its mask to ``<stem>_mask.png``; return ``path``.

    Dates are YYYYMMDD. Both files are written under temporary names and then
    renamed, so a reader never sees half a file. Raises ``PhantomWriteError``
    for a phantom or identifier that cannot make a valid file.
    """
    ds = build_dataset(
        phantom,
        patient_id=patient_id,
        patient_name=patient_name,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_instance_uid=sop_instance_uid,
        study_date=study_date,
        accession_number=accession_number,
        study_description=study_description,
        instance_number=instance_number,
        birth_date=birth_date,
        sex=sex,
    )
    path = Path(path)
    mask_path = mask_path_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dcm = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp_png = mask_path.with_name(f".{mask_path.name}.{os.getpid()}.tmp")
    try:
        ds.save_as(tmp_dcm, enforce_file_format=True)
        Image.fromarray(np.where(phantom.mask, 255, 0).astype(np.uint8)).save(tmp_png, format="PNG")
        os.replace(tmp_png, mask_path)
        os.replace(tmp_dcm, path)
    finally:
        for tmp in (tmp_dcm, tmp_png):
            tmp.unlink(missing_ok=True)
    return path
