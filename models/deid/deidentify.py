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
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from models.deid import pseudonyms
from models.deid.profile import profile_rows

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
    action: str  # 'X' removed, 'Z' emptied, 'D' dummy, 'U' UID remapped, 'P' pseudonym, 'A' added


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

    def map_uids(self, elem: DataElement) -> None:
        if elem.VR == "UN" and isinstance(elem.value, bytes | bytearray):
            # a UID of a tag the reader did not know (implicit VR): decode it, then map it
            text = bytes(elem.value).decode("ascii", "replace").strip("\x00 ")
            elem.VR, elem.value = "UI", [v for v in text.split("\\") if v] or None
            if elem.value is not None and len(elem.value) == 1:
                elem.value = elem.value[0]
        if elem.VR != "UI" or elem.value in (None, ""):
            return
        if elem.VM > 1:
            elem.value = [remap_uid(v, self.key) for v in elem.value]
        else:
            elem.value = remap_uid(str(elem.value), self.key)

    def walk(self, ds: Dataset, prefix: str = "") -> None:
        remove = []
        for elem in list(ds):
            tag = int(elem.tag)
            path = f"{prefix}{_name(tag)}"
            action = action_for(tag)
            if action is None:
                if elem.VR == "SQ":
                    for i, item in enumerate(elem.value or []):
                        self.walk(item, f"{path}[{i}].")
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
                self.map_uids(elem)
                self.note(path, tag, "U")
            elif action == "U*":
                for i, item in enumerate(elem.value or []):
                    self.walk(item, f"{path}[{i}].")
            else:  # an unknown code would be a table error
                raise DeidentificationError(f"no rule for action {action!r} of {path}")
        for tag in remove:
            del ds[tag]


def _read(source: Dataset | str | Path | bytes | BinaryIO) -> Dataset:
    if isinstance(source, Dataset):
        return copy.deepcopy(source)
    try:
        if isinstance(source, bytes | bytearray):
            return pydicom.dcmread(io.BytesIO(source), force=False)
        return pydicom.dcmread(source, force=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pydicom raises several types for a non-DICOM file
        raise DeidentificationError(f"not a readable DICOM file: {exc}") from exc


def deidentify(
    ds_or_path: Dataset | str | Path | bytes | BinaryIO,
    key: bytes,
    *,
    patient_id: str | None = None,
) -> tuple[Dataset, DeidReport]:
    """A de-identified copy of the data set (the input is never changed) and what was done to it.

    ``key``: the store's key (``load_or_create_key``); UIDs and pseudonyms depend
    on it. ``patient_id``: the pseudonym to put in PatientID and PatientName (the
    ingest passes the store's person id); None derives one from the original
    PatientID and the key.
    """
    if not key or len(key) < 16:
        raise DeidentificationError("a key of at least 128 bits is needed")
    ds = _read(ds_or_path)
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

    _Walker(key, report).walk(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = remap_uid(str(meta.MediaStorageSOPInstanceUID), key)
        report.changes.append(Change("MediaStorageSOPInstanceUID", "(0002,0003)", "U"))
    if meta is not None and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID  # the file meta names this instance

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
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:
        raise DeidentificationError(f"the de-identified file cannot be written: {exc}") from exc
    return buf.getvalue()


def write_deidentified(ds: Dataset, path: str | Path) -> Path:
    """Write atomically (temporary file, then rename), so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_bytes(ds)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def deidentify_files(paths: Iterable[Path], out_dir: Path, key: bytes) -> Iterable[dict]:
    """For the CLI: de-identify each file into ``out_dir/<pseudonym>/<study>/<sop>.dcm``; one dict per file.

    A file that fails gets ``{"file": ..., "error": ...}``; the others go on.
    """
    for path in paths:
        try:
            ds, report = deidentify(Path(path), key)
            name = report.sop_instance_uid or remap_uid(str(path), key)
            target = (
                Path(out_dir)
                / (report.patient_pseudonym or "unknown")
                / (report.study_uid or "study")
                / f"{name}.dcm"
            )
            write_deidentified(ds, target)
            yield {"file": str(path), "out": str(target), **report.as_dict()}
        except FileNotFoundError:
            yield {"file": str(path), "error": "file not found"}
        except (DeidentificationError, OSError) as exc:
            yield {"file": str(path), "error": str(exc)}


def tag_of(keyword_or_tag: str | int) -> int:
    """Tag number of a keyword or tag (tests and docs)."""
    return int(Tag(keyword_or_tag))
