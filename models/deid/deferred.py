"""De-identified copies whose patient pseudonym is filled in later: made where a file is read, finished where the store is.

Why: ``oncolens ingest`` de-identifies each file with the store's person id as its PatientID and
PatientName (``analytics.imaging.ingest``), and that id is known only once the writer has matched
the file's patient in the store. The de-identification itself (the profile's walk and pydicom's
writer, about 10 CPU ms a file, issue 23) does not depend on it; done in the writer it was the
serial half of an ingest. So the worker processes that read the files de-identify them with
``PLACEHOLDER`` as the pseudonym and serialise the copy (``deferred``); the writer swaps the
placeholder's two elements for the person id's (``fill_in``). The result is byte for byte what
``deidentify(file, key, patient_id=person_id)`` then ``to_bytes`` gives
(``tests/models/deid/test_deferred.py`` compares them).

Why a splice is exact: PatientName (0010,0010) and PatientID (0010,0020) are top-level elements,
and no length or checksum in a DICOM file covers the top-level data set (the file meta's group
length covers group 0002 only); each element is encoded on its own (PS3.5 7.1), in the data set's
transfer syntax and character set. ``deferred`` encodes the placeholder's elements with pydicom's
own element writer in the encoding of the copy's transfer syntax (the one ``to_bytes`` writes;
never guessed from the bytes: pixel data may hold another encoding's pattern, review of issue 23)
and accepts the copy only where each is found exactly once; a deflated or unknown syntax or a
coincidence in the pixel data gives None, and the caller de-identifies in full as before.
``fill_in`` then re-parses the finished header and gives None unless both elements hold the
person id: whatever the reason a splice missed, the caller de-identifies in full, never stores a
copy with the placeholder or with changed pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

from models.deid.deidentify import DeidReport

# the pseudonym the copy is made with: 32 characters (even, so never padded), valid as PN and LO
PLACEHOLDER = "ONCOLENS-DEFERRED-PSEUDONYM-4F1D"
_PATIENT_TAGS = (0x00100010, 0x00100020)  # PatientName, PatientID: where deidentify puts the alias


@dataclass(frozen=True)
class DeferredCopy:
    """A de-identified file (``data``) with ``PLACEHOLDER`` as its pseudonym, and how to swap it.

    ``report``: what de-identification did (``patient_pseudonym`` is the placeholder until
    ``fill_in``). ``encoding``: (implicit VR, little endian) of its data set; ``charsets``: the
    Python codecs of its SpecificCharacterSet (the placeholder's elements were encoded with them)."""

    data: bytes
    report: DeidReport
    encoding: tuple[bool, bool]
    charsets: tuple[str, ...]


@functools.lru_cache(maxsize=4096)  # the placeholder's, and a patient's for her other files
def _elements(
    alias: str, encoding: tuple[bool, bool], charsets: tuple[str, ...]
) -> tuple[bytes, ...]:
    """PatientName and PatientID holding ``alias``, each encoded as pydicom writes it in a data set
    of ``encoding`` and ``charsets`` (as ``deidentify`` sets them: ``ds.PatientName = alias``)."""
    holder = Dataset()
    holder.PatientName = alias
    holder.PatientID = alias
    out = []
    for tag in _PATIENT_TAGS:
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = encoding
        write_data_element(fp, holder[tag], list(charsets))
        out.append(fp.getvalue())
    return tuple(out)


def _encoding(ds: Dataset) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of the data set as ``to_bytes`` writes it: its transfer
    syntax's, or None where there is none, it is unknown to pydicom, or it is deflated (the data
    set itself is compressed, so no element can be found in the bytes)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return None
    try:
        if syntax.is_deflated:
            return None
        return bool(syntax.is_implicit_VR), bool(syntax.is_little_endian)
    except ValueError:  # not a transfer syntax pydicom knows: not deferred
        return None


def deferred(ds: Dataset, data: bytes, report: DeidReport) -> DeferredCopy | None:
    """``data`` (``to_bytes`` of ``ds``, de-identified with ``patient_id=PLACEHOLDER``) as a copy
    whose pseudonym ``fill_in`` sets, or None where its two elements, encoded in its transfer
    syntax, cannot be found exactly once each (a deflated or unusual encoding): the caller
    de-identifies the file in full then."""
    charsets = tuple(getattr(ds, "_character_set", None) or ["iso8859"])
    encoding = _encoding(ds)
    if encoding is None:
        return None
    try:
        wanted = _elements(PLACEHOLDER, encoding, charsets)
    except Exception:  # noqa: BLE001 - a character set pydicom cannot encode with: not deferred
        return None
    if all(data.count(w) == 1 for w in wanted):
        return DeferredCopy(data, report, encoding, charsets)
    return None


def fill_in(copy: DeferredCopy, patient_id: str) -> tuple[bytes, DeidReport] | None:
    """The copy's bytes and report with ``patient_id`` as its pseudonym (what ``deidentify`` with
    ``patient_id=patient_id`` then ``to_bytes`` would have given), or None where the finished
    header does not hold ``patient_id`` in both elements (the splice missed them): the caller
    de-identifies the file in full then."""
    data = copy.data
    for old, new in zip(
        _elements(PLACEHOLDER, copy.encoding, copy.charsets),
        _elements(patient_id, copy.encoding, copy.charsets),
        strict=True,
    ):
        data = data.replace(old, new, 1)
    try:  # the header only (about a millisecond): the pixel data is what a miss could have hit
        head = dcmread(DicomBytesIO(data), stop_before_pixels=True)
        ok = str(head.PatientName) == patient_id and str(head.PatientID) == patient_id
    except Exception:  # noqa: BLE001 - a header that no longer parses: de-identified in full
        ok = False
    if not ok:
        return None
    return data, dataclasses.replace(copy.report, patient_pseudonym=patient_id)
