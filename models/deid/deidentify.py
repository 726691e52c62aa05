"""DICOM de-identification: PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Why our own code and not a library: pydicom has no de-identifier; ``deid`` and
``dicognito`` apply their own recipes, not the standard's table, and would
still need to be checked attribute by attribute. The table itself is data
(``models.deid.profile``, all 459 attributes the Basic Profile names); this
module applies it with pydicom, and ``tests/models/deid/test_deidentify.py`` fills
every one of those attributes with a marker and checks that no marker survives
in the written bytes.

What happens to a data set (PS3.15 E.1-1a action codes):

- ``X`` removed, ``Z`` emptied, ``D`` replaced with a dummy of the right VR,
  ``U`` replaced with a UID derived from the original by a keyed hash
  (HMAC-SHA-256, 128 bits, as a ``2.25.`` UID, PS3.5 B.2). The same original
  UID always gives the same new UID under the same key, so the series and
  studies of one patient stay linked across files, runs and processes; without
  the key nobody can go back. OncoLens keeps one key per store
  (``<store>_deid.key``, created on first use, owner-readable only).
- Compound codes ("X unless the IOD needs the attribute") resolve to the
  choice that keeps the file valid and leaks nothing (``resolve_action``):
  X/Z and X/Z/D become Z, X/D and Z/D become D (Type 1 in some IODs),
  X/Z/U* (referenced and source image sequences) keeps the items and maps the
  UIDs inside them.
- Private attributes (odd groups) are removed, creators included.
- Sequences are walked to any depth: an attribute the table names is treated
  the same inside a sequence item as at the top level.
- PatientID is a dummy under Z: the caller's pseudonym (the ingest puts the
  store's person id there, so the file stays linkable inside OncoLens only),
  else a keyed-hash pseudonym of the original PatientID. PatientName gets the
  same pseudonym.
- PatientIdentityRemoved = YES, DeidentificationMethod, the code 113100
  ("Basic Application Confidentiality Profile") in
  DeidentificationMethodCodeSequence, LongitudinalTemporalInformationModified
  = REMOVED (the profile empties or removes the dates).

Beyond the table (issue 24: the table alone left gaps), attributes are treated by what
they can hold, at every depth:

- every date, time and date-time (DA, DT, TM) and every person name (PN) is emptied,
  whether the table names it or not (InstanceCreationDate, EvaluatorName,
  SecondaryReviewerName...);
- every UID that is not a registered standard UID or a class UID is remapped
  (AcquisitionUID and any instance UID the table misses); a UID the table names is
  remapped whatever value representation the file gives it (an ``LO`` holding
  ``../../x`` becomes a ``2.25.`` UID), or the file is refused;
- free-text attributes (AE, AS, LO, LT, SH, ST, UC, UR, UT) and binary blobs (OB, OW,
  OF, OD, OL, OV, UN) are removed unless they carry the image (``KEEP_BINARY``); coded
  strings (CS) stay only for the attributes in ``KEEP_CODES`` (Modality, Laterality, the
  photometric interpretation and the like) and only when every value is a valid code
  string (PS3.5 6.2: upper-case letters, digits, space, underscore, 16 characters);
  numbers that do not parse as numbers are emptied;
- the 128-byte preamble is zeroed and the file meta rebuilt from scratch (SOP class,
  the new SOP instance UID, the transfer syntax if it is a registered one, OncoLens's
  implementation name): nothing of the original group 0002 survives;
- files over ``MAX_FILE_BYTES`` are refused before they are read.

The report says which attribute got which action (keyword, tag, path inside
sequences), never a value. Pixel data are not changed: text burned into the
pixels is not found by any header rule, so ``burned_in_warning`` flags the
images where it is likely (PS3.15 E.1.2 leaves that to the user).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, UID_dictionary

from models.deid import pseudonyms
from models.deid.profile import profile_rows
from models.paths import UnsafePathError, inside

METHOD = "DICOM PS3.15 Annex E Basic Profile (OncoLens)"  # DeidentificationMethod (LO, 64 chars)
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
KEY_BYTES = 32

# Dummy values per VR for the D action: valid for the VR, obviously not real.
_DUMMY = {
    "AE": "ANON",
    "AS": "000D",
    "CS": "ANON",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UR": "",
    "UT": "ANONYMIZED",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
}
MAX_FILE_BYTES = 1 << 30
"""Largest input file accepted (1 GiB, as the reader's pixel limit): pydicom holds a file several
times in memory while it is copied and written (a 1.2 GB file used 3.9 GB)."""

IMPLEMENTATION_VERSION_NAME = (
    "ONCOLENS_DEID"  # SH, 16 chars: the rebuilt file meta names its writer
)

_TEXT_VRS = {"AE", "AS", "LO", "LT", "SH", "ST", "UC", "UR", "UT"}
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW", "US or SS or OW"}
_TIME_VRS = {"DA", "DT", "TM"}
# Binary attributes that are the image or how to show it; every other blob is removed.
KEEP_BINARY = {
    0x7FE00010,  # PixelData
    0x7FE00008,  # FloatPixelData
    0x7FE00009,  # DoubleFloatPixelData
    0x00283006,  # LUTData (Modality / VOI LUT)
    0x00281201,  # Red Palette Color Lookup Table Data
    0x00281202,  # Green
    0x00281203,  # Blue
    0x00281204,  # Alpha
    0x00281221,  # Segmented Red Palette Color Lookup Table Data
    0x00281222,  # Segmented Green
    0x00281223,  # Segmented Blue
    0x00281224,  # Segmented Alpha
}
# Coded strings kept (when every value is a valid code string): what the image is and how to show
# it. Any other CS attribute is removed: a code string can still spell a name (fuzzing found one
# in FileSetID), so only the ones the viewer, the model choice and a reader need stay.
KEEP_CODES = {
    "SpecificCharacterSet",
    "ImageType",
    "Modality",
    "BodyPartExamined",
    "Laterality",
    "ImageLaterality",
    "ViewPosition",
    "PatientOrientation",
    "PatientPosition",
    "PhotometricInterpretation",
    "PresentationLUTShape",
    "VOILUTFunction",
    "PixelIntensityRelationship",
    "PresentationIntentType",
    "ConversionType",
    "BurnedInAnnotation",
    "RecognizableVisualFeatures",
    "LossyImageCompression",
    "LossyImageCompressionMethod",
    "PatientIdentityRemoved",
    "LongitudinalTemporalInformationModified",
    "ScanningSequence",
    "SequenceVariant",
    "ScanOptions",
    "MRAcquisitionType",
    "PlanarConfiguration",
    "RescaleType",
    "FrameType",
    "CodingSchemeDesignator",
    "ContentQualification",
    "QualityControlImage",
    "PixelPresentation",
    "VolumetricProperties",
    "VolumeBasedCalculationTechnique",
    "PartialView",
    "BreastImplantPresent",
    "SegmentationType",
    "SegmentAlgorithmType",
    "RelationshipType",
    "ValueType",
    "ContinuityOfContent",
}
_CS_VALUE = re.compile(r"[A-Z0-9 _]{0,16}")

# Modalities where text is commonly burned into the pixels (ultrasound calipers and labels,
# screen captures, endoscopy and photographs, documents).
BURNED_IN_MODALITIES = {"US", "IVUS", "SC", "OT", "XC", "ES", "GM", "SM", "DOC", "ECG", "OP"}
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # SC image storage SOP classes


class DeidentificationError(Exception):
    """The input cannot be read as DICOM, or the result cannot be written."""


@dataclass(frozen=True)
class Change:
    """One attribute changed: where (``path``, e.g. ``ReferencedImageSequence[0].ReferencedSOPInstanceUID``),
    its tag and the action taken. Never the value."""

    path: str
    tag: str
    action: str  # 'X' removed, 'Z' emptied, 'D' dummy, 'U' UID remapped, 'P' pseudonym, 'A' added, 'R' rebuilt


@dataclass
class DeidReport:
    """What de-identification did to one file: changes, warnings, the new UIDs it needs to be found by."""

    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    burned_in_risk: bool = False
    patient_pseudonym: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            out[c.action] = out.get(c.action, 0) + 1
        return out

    def as_dict(self) -> dict:
        """JSON-ready: the counts by action, every change (path, tag, action), the warnings."""
        return {
            "profile": METHOD,
            "counts": self.counts(),
            "changes": [
                {"attribute": c.path, "tag": c.tag, "action": c.action} for c in self.changes
            ],
            "warnings": list(self.warnings),
            "burned_in_risk": self.burned_in_risk,
            "patient_pseudonym": self.patient_pseudonym,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "sop_instance_uid": self.sop_instance_uid,
        }


# --- the profile as a lookup ------------------------------------------------------------------


def resolve_action(code: str) -> str:
    """One action for a table code: X, Z, D, U, or U* (keep a sequence, map the UIDs inside).

    Without the IOD at hand we cannot tell whether an "X/Z" attribute is Type 2
    in it; Z is always valid and leaks nothing, D keeps a Type 1 attribute present.
    """
    return {"X/Z": "Z", "X/Z/D": "Z", "X/D": "D", "Z/D": "D", "X/Z/U*": "U*"}.get(code, code)


_EXACT: dict[int, str] = {}
_NAMES: dict[int, str] = {}
for _row_tag, _row_code, _row_name in profile_rows():  # not _name: the function below
    if "x" not in _row_tag:
        _EXACT[int(_row_tag, 16)] = resolve_action(_row_code)
        _NAMES[int(_row_tag, 16)] = _row_name


def action_for(tag: int) -> str | None:
    """The resolved Basic Profile action for a tag, or None when the profile keeps it."""
    tag = int(tag)
    if tag in _EXACT:
        return _EXACT[tag]
    group, elem = tag >> 16, tag & 0xFFFF
    if group % 2 == 1:
        return "X"  # private attributes
    if 0x5000 <= group <= 0x50FF:
        return "X"  # curve data (retired)
    if 0x6000 <= group <= 0x60FF and elem in (0x3000, 0x4000):
        return "X"  # overlay data and comments
    return None


def profile_tags() -> dict[int, tuple[str, str]]:
    """Every exact tag the table names: ``tag -> (table code, attribute name)`` (for tests and docs)."""
    return {int(t, 16): (c, n) for t, c, n in profile_rows() if "x" not in t}


# --- keys, UIDs, pseudonyms -------------------------------------------------------------------


def key_path_for_store(db_path: str | Path) -> Path:
    """Where a store's de-identification key lives: ``<store stem>_deid.key`` beside it."""
    db_path = Path(db_path).expanduser()
    return db_path.with_name(f"{db_path.stem}_deid.key")


def load_or_create_key(path: str | Path) -> bytes:
    """The key in ``path`` (hex), created with 256 random bits and mode 0600 when missing."""
    path = Path(path).expanduser()
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = secrets.token_hex(KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        return bytes.fromhex(text)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise DeidentificationError(f"the key file {path} does not hold a hex key") from None
    if len(key) < 16:
        raise DeidentificationError(f"the key in {path} is shorter than 128 bits")
    return key


def _digest(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()


def remap_uid(uid: str, key: bytes) -> str:
    """``2.25.<128-bit keyed hash of the UID>``: the same UID and key always give the same result."""
    return "2.25." + str(int.from_bytes(_digest(key, "uid", str(uid).strip("\x00 "))[:16], "big"))


# --- burned-in annotations --------------------------------------------------------------------


def burned_in_warning(ds: Dataset) -> str | None:
    """Why the pixels of this image may carry identifying text, or None.

    Header evidence only: BurnedInAnnotation = YES, a modality where text in the
    image is routine (ultrasound, screen captures, photographs...), a secondary
    capture SOP class, or ImageType naming a secondary or screen-captured image.
    No pixel analysis is done, so None means "nothing in the header suggests it",
    not "the pixels are clean".
    """
    reasons = []
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        reasons.append("BurnedInAnnotation is YES")
    modality = str(ds.get("Modality", "")).upper()
    if modality in BURNED_IN_MODALITIES:
        reasons.append(f"modality {modality} often has text in the image")
    if str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_PREFIX):
        reasons.append("secondary capture image")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])] if "ImageType" in ds else []
    if any(v in ("SECONDARY", "SCREEN SAVE", "SCREENSHOT") for v in image_type):
        reasons.append("ImageType says secondary or screen capture")
    if not reasons:
        return None
    return (
        "may carry burned-in patient information (" + "; ".join(reasons) + "); "
        "de-identification does not change pixels: check the image before sharing it"
    )


# --- the walk ---------------------------------------------------------------------------------


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _name(tag: int) -> str:
    return (
        keyword_for_tag(tag)
        or _NAMES.get(int(tag))
        or ("Private" if (tag >> 16) % 2 else _tag_text(tag))
    )


def _empty(elem: DataElement) -> None:
    elem.value = Sequence() if elem.VR == "SQ" else None


def _dummy(elem: DataElement) -> None:
    if elem.VR == "SQ":
        elem.value = Sequence()
    elif elem.VR in _DUMMY:
        elem.value = _DUMMY[elem.VR]
    elif elem.VR == "UI":
        elem.value = "2.25.0"
    else:  # binary VRs: nothing meaningful to put there
        elem.value = None


class _Walker:
    def __init__(self, key: bytes, report: DeidReport) -> None:
        self.key = key
        self.report = report

    def note(self, path: str, tag: int, action: str) -> None:
        self.report.changes.append(Change(path, _tag_text(tag), action))

    def map_uids(self, elem: DataElement, path: str) -> None:
        """Remap every value of a UID attribute, whatever VR the file gave it (refused for a sequence)."""
        if elem.VR == "SQ":
            raise DeidentificationError(
                f"{path} should hold a UID but holds a sequence; the file is refused"
            )
        values = _values_as_text(elem.value)
        elem.VR = "UI"
        if not values:
            elem.value = None
        elif len(values) == 1:
            elem.value = remap_uid(values[0], self.key)
        else:
            elem.value = [remap_uid(v, self.key) for v in values]

    def by_vr(self, elem: DataElement, tag: int) -> str | None:
        """The action for an attribute the table does not name, from what its VR can hold (None: keep)."""
        vr = elem.VR
        group = tag >> 16
        if group in (0x0000, 0x0002):
            return "X"  # command or file-meta elements inside the data set: never the image's
        if vr in _TIME_VRS or vr == "PN":
            return "Z"
        if vr == "UI":
            return None if _harmless_uid(tag, elem.value) else "U"
        if vr in _TEXT_VRS:
            return "X"
        if vr in _BINARY_VRS:
            return None if tag in KEEP_BINARY else "X"
        if vr == "CS":
            if (keyword_for_tag(tag) or "") not in KEEP_CODES:
                return "X"
            return None if all(_CS_VALUE.fullmatch(v) for v in _values_as_text(elem.value)) else "Z"
        if vr in ("DS", "IS"):
            return None if _numbers(elem.value) else "Z"
        return None

    def walk(self, ds: Dataset, prefix: str = "") -> None:
        remove = []
        for raw_tag in list(ds.keys()):
            tag = int(raw_tag)
            path = f"{prefix}{_name(tag)}"
            try:
                elem = ds[raw_tag]  # pydicom converts a raw element here: text in a DS fails
            except (
                Exception
            ):  # whatever the conversion raises, a value that cannot be read cannot be kept
                remove.append(tag)
                self.note(path, tag, "X")
                continue
            action = action_for(tag)
            if action is None:
                if elem.VR == "SQ":
                    for i, item in enumerate(elem.value or []):
                        self.walk(item, f"{path}[{i}].")
                    continue
                action = self.by_vr(elem, tag)
                if action is None:
                    continue
            if action == "X":
                remove.append(tag)
                self.note(path, tag, "X")
            elif action == "Z":
                _empty(elem)
                self.note(path, tag, "Z")
            elif action == "D":
                _dummy(elem)
                self.note(path, tag, "D")
            elif action == "U":
                self.map_uids(elem, path)
                self.note(path, tag, "U")
            elif action == "U*":
                if elem.VR != "SQ":  # a reference sequence given another VR: it references nothing
                    remove.append(tag)
                    self.note(path, tag, "X")
                    continue
                for i, item in enumerate(elem.value or []):
                    self.walk(item, f"{path}[{i}].")
            else:  # an unknown code would be a table error
                raise DeidentificationError(f"no rule for action {action!r} of {path}")
        for tag in remove:
            del ds[tag]


def _values_as_text(value: object) -> list[str]:
    """The values of an element as text (bytes decoded, multi-values split), padding stripped."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    if isinstance(value, str):
        items: list[object] = list(value.split("\\"))
    elif isinstance(value, list | tuple | MultiValue):
        items = list(value)
    else:
        items = [value]
    return [t for t in (str(v).strip("\x00 ") for v in items) if t]


def _numbers(value: object) -> bool:
    """Whether every value of a DS/IS parses as a number (text hidden in a number field does not)."""
    try:
        for v in _values_as_text(value):
            float(v)
    except ValueError:
        return False
    return True


def _harmless_uid(tag: int, value: object) -> bool:
    """A UID that names a kind of thing, not a patient's thing: a registered standard UID
    (transfer syntaxes, SOP classes, coding schemes), or the value of a ``...ClassUID`` attribute."""
    values = _values_as_text(value)
    if all(v in UID_dictionary for v in values):
        return True
    keyword = keyword_for_tag(tag) or ""
    return keyword.endswith("ClassUID") and all(UID(v).is_valid for v in values)


def _read(source: Dataset | str | Path | bytes | BinaryIO) -> Dataset:
    if isinstance(source, Dataset):
        return copy.deepcopy(source)
    _check_size(source)
    try:
        if isinstance(source, bytes | bytearray):
            return pydicom.dcmread(io.BytesIO(source), force=False)
        return pydicom.dcmread(source, force=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pydicom raises several types for a non-DICOM file
        raise DeidentificationError(f"not a readable DICOM file: {exc}") from exc


def _check_size(source: str | Path | bytes | BinaryIO) -> None:
    """Refuse an input over ``MAX_FILE_BYTES`` before reading it (a stream is measured and put back)."""
    if isinstance(source, bytes | bytearray):
        size = len(source)
    elif isinstance(source, str | os.PathLike):
        size = os.stat(source).st_size  # FileNotFoundError: the caller reports "file not found"
    else:
        start = source.tell()
        size = source.seek(0, io.SEEK_END) - start
        source.seek(start)
    if size > MAX_FILE_BYTES:
        raise DeidentificationError(
            f"the file is {size / 2**20:,.0f} MiB; the largest accepted is {MAX_FILE_BYTES >> 20:,} MiB"
        )


def _rebuilt_meta(ds: Dataset, original: FileMetaDataset | None, key: bytes) -> FileMetaDataset:
    """File meta from scratch (PS3.10 7.1): nothing of the original group 0002 is copied but
    its transfer syntax, and that only when it is a registered one (the pixels are encoded in it)."""
    meta = FileMetaDataset()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class:
        meta.MediaStorageSOPClassUID = UID(sop_class)
    sop_instance = str(ds.get("SOPInstanceUID", "") or "")
    if sop_instance:
        meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    elif original is not None and original.get("MediaStorageSOPInstanceUID"):
        # no instance UID in the data set: the meta's own, remapped like any other UID
        meta.MediaStorageSOPInstanceUID = UID(
            remap_uid(str(original.MediaStorageSOPInstanceUID), key)
        )
    declared = original.get("TransferSyntaxUID") if original is not None else None
    syntax = str(declared or "").strip("\x00 ")
    if syntax:
        if syntax not in UID_dictionary or UID_dictionary[syntax][1] != "Transfer Syntax":
            raise DeidentificationError(
                "the file's transfer syntax is not a registered one; the file is refused"
            )
        meta.TransferSyntaxUID = UID(syntax)
    elif ds.original_encoding[0] is not None:
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
        )
    else:
        meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def deidentify(
    ds_or_path: Dataset | str | Path | bytes | BinaryIO,
    key: bytes,
    *,
    patient_id: str | None = None,
    in_place: bool = False,
) -> tuple[Dataset, DeidReport]:
    """A de-identified copy of the data set (the input is never changed) and what was done to it.

    ``key``: the store's key (``load_or_create_key``); UIDs and pseudonyms depend
    on it. ``patient_id``: the pseudonym to put in PatientID and PatientName (the
    ingest passes the store's person id); None derives one from the original
    PatientID and the key. ``in_place``: a data set given is de-identified itself,
    not a copy (for a caller that parsed the file and needs it no more: the ingest's
    workers, where the copy cost a millisecond a file).
    """
    if not key or len(key) < 16:
        raise DeidentificationError("a key of at least 128 bits is needed")
    ds = ds_or_path if in_place and isinstance(ds_or_path, Dataset) else _read(ds_or_path)
    try:
        return _deidentify(ds, key, patient_id)
    except DeidentificationError:
        raise
    except (
        Exception
    ) as exc:  # pydicom converts values lazily: a crafted value surfaces here, as anything
        raise DeidentificationError(
            f"the file holds a value that cannot be interpreted ({type(exc).__name__}); not de-identified"
        ) from exc


def _deidentify(ds: Dataset, key: bytes, patient_id: str | None) -> tuple[Dataset, DeidReport]:
    report = DeidReport()
    warning = burned_in_warning(ds)
    if warning:
        report.burned_in_risk = True
        report.warnings.append(warning)
    original_pid = str(ds.get("PatientID", "") or "")
    alias = (
        str(patient_id)
        if patient_id is not None
        else (
            pseudonyms.pseudonym(key, original_pid, pseudonyms.DICOM_FILES) if original_pid else ""
        )
    )

    original_meta = getattr(ds, "file_meta", None)
    _Walker(key, report).walk(ds)
    ds.file_meta = _rebuilt_meta(ds, original_meta, key)
    report.changes.append(Change("FileMetaInformation", "(0002,xxxx)", "R"))
    ds.preamble = bytes(128)  # free text can live in the preamble; PS3.10 7.1 allows zeros
    report.changes.append(Change("Preamble", "-", "R"))

    if alias:
        ds.PatientID = alias
        ds.PatientName = alias
        for tag, kw in ((0x00100020, "PatientID"), (0x00100010, "PatientName")):
            report.changes.append(Change(kw, _tag_text(tag), "P"))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    for kw, tag in (
        ("PatientIdentityRemoved", 0x00120062),
        ("DeidentificationMethod", 0x00120063),
        ("DeidentificationMethodCodeSequence", 0x00120064),
        ("LongitudinalTemporalInformationModified", 0x00280303),
    ):
        report.changes.append(Change(kw, _tag_text(tag), "A"))
    report.patient_pseudonym = alias
    report.study_uid = str(ds.get("StudyInstanceUID", "") or "")
    report.series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    report.sop_instance_uid = str(ds.get("SOPInstanceUID", "") or "")
    return ds, report


def to_bytes(ds: Dataset) -> bytes:
    """The data set as a DICOM file (preamble, file meta), in memory."""
    buf = io.BytesIO()
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    if getattr(ds, "preamble", None) is None:
        ds.preamble = bytes(128)
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:
        raise DeidentificationError(f"the de-identified file cannot be written: {exc}") from exc
    return buf.getvalue()


def write_deidentified(ds: Dataset, path: str | Path) -> Path:
    """Write atomically (temporary file, then rename), so a reader never sees half a file."""
    return write_bytes_atomically(to_bytes(ds), path)


def write_bytes_atomically(data: bytes, path: str | Path) -> Path:
    """``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def deidentify_files(paths: Iterable[Path], out_dir: Path, key: bytes) -> Iterable[dict]:
    """For the CLI: de-identify each file into ``out_dir/<pseudonym>/<study>/<sop>.dcm``; one dict per file.

    A file that fails gets ``{"file": ..., "error": ...}``; the others go on. The names are remapped
    UIDs and keyed pseudonyms, and ``models.paths.inside`` refuses any that would leave ``out_dir``.
    """
    for path in paths:
        try:
            ds, report = deidentify(Path(path), key)
            name = report.sop_instance_uid or remap_uid(str(path), key)
            target = inside(
                out_dir,
                report.patient_pseudonym or "unknown",
                report.study_uid or "study",
                f"{name}.dcm",
            )
            data = to_bytes(ds)
            write_bytes_atomically(data, target)
            yield {
                "file": str(path),
                "out": str(target),
                "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                "out_sha256": hashlib.sha256(data).hexdigest(),
                **report.as_dict(),
            }
        except FileNotFoundError:
            yield {"file": str(path), "error": "file not found"}
        except (DeidentificationError, UnsafePathError, OSError) as exc:
            yield {"file": str(path), "error": str(exc)}


def tag_of(keyword_or_tag: str | int) -> int:
    """Tag number of a keyword or tag (tests and docs)."""
    return int(Tag(keyword_or_tag))
