"""models.deid.deferred: a copy de-identified with the placeholder pseudonym, finished with a person
id, is byte for byte what ``deidentify`` with that id then ``to_bytes`` writes (the reference is the
de-identifier itself), on pydicom's whole corpus of test files (every transfer syntax it has) and on
data sets in several character sets; where it cannot be (a deflated data set) there is no copy."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from models.deid import deferred
from models.deid import deidentify as deid

pytestmark = pytest.mark.filterwarnings("ignore")

KEY = bytes(range(32))
IDS = ("7", "42", "123456", "1234567890123")  # odd and even lengths: padded and not


def _corpus() -> list[Path]:
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    return sorted(p for p in folder.iterdir() if p.is_file() and p.stat().st_size < 4 << 20)


def _deferred_or_none(source) -> deferred.DeferredCopy | None:
    ds, report = deid.deidentify(source, KEY, patient_id=deferred.PLACEHOLDER)
    return deferred.deferred(ds, deid.to_bytes(ds), report)


def _direct(source, patient_id: str) -> tuple[bytes, dict]:
    ds, report = deid.deidentify(source, KEY, patient_id=patient_id)
    return deid.to_bytes(ds), report.as_dict()


def test_a_finished_copy_is_what_deidentify_writes_on_pydicoms_corpus() -> None:
    made = skipped = 0
    for path in _corpus():
        try:
            copy_ = _deferred_or_none(path)
        except deid.DeidentificationError:
            skipped += 1  # not a file the de-identifier accepts (refused in both ways alike)
            continue
        if copy_ is None:
            syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
            assert syntax == DeflatedExplicitVRLittleEndian, path.name
            continue
        for patient_id in IDS:
            data, report = deferred.fill_in(copy_, patient_id)
            assert (data, report.as_dict()) == _direct(path, patient_id), (path.name, patient_id)
        made += 1
    assert made >= 40, (made, skipped)  # implicit, explicit and big-endian files among them


def test_the_syntaxes_and_a_deflated_file() -> None:
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm"):
        made = _deferred_or_none(get_testdata_file(name))
        assert made is not None, name
        assert deferred.fill_in(made, "31")[0] == _direct(get_testdata_file(name), "31")[0]
    assert _deferred_or_none(get_testdata_file("image_dfl.dcm")) is None  # compressed data set


@pytest.mark.parametrize(
    "charset", ["ISO_IR 100", "ISO_IR 192", "GB18030", ["", "ISO 2022 IR 87"], "ISO_IR 144"]
)
def test_character_sets(charset) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = charset
    made = _deferred_or_none(copy.deepcopy(ds))
    assert made is not None
    for patient_id in IDS:
        assert deferred.fill_in(made, patient_id)[0] == _direct(ds, patient_id)[0]


def test_a_placeholder_found_twice_gives_no_copy() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    de, report = deid.deidentify(ds, KEY, patient_id=deferred.PLACEHOLDER)
    data = deid.to_bytes(de)
    assert deferred.deferred(de, data, report) is not None
    doubled = data + data[data.index(b"\x10\x00\x10\x00PN") :][:40]  # the element again, at the end
    assert deferred.deferred(de, doubled, report) is None


def test_in_place_gives_the_same_copy_and_uses_up_the_input() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    before = copy.deepcopy(ds)
    kept, _ = deid.deidentify(ds, KEY, patient_id="5")
    assert ds == before  # not in place: the input is never changed
    changed, _ = deid.deidentify(ds, KEY, patient_id="5", in_place=True)
    assert changed is ds and ds != before
    assert deid.to_bytes(changed) == deid.to_bytes(kept)


def _other_encodings_in_pixels() -> pydicom.Dataset:
    """CT_small in implicit VR little endian with the placeholder's PatientName and PatientID, as
    the explicit-VR syntaxes (little and big endian) encode them, written into its pixel data: a
    copy whose encoding is guessed from the bytes, explicit first, splices there (review of
    issue 23)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    pixels = bytearray(ds.PixelData)
    at = 64
    for encoding in ((False, True), (False, False)):
        for element in deferred._elements(deferred.PLACEHOLDER, encoding, ("iso8859",)):
            pixels[at : at + len(element)] = element
            at += len(element) + 16
    ds.PixelData = bytes(pixels)
    return ds


def test_other_encodings_patterns_in_the_pixel_data() -> None:
    ds = _other_encodings_in_pixels()
    made = _deferred_or_none(copy.deepcopy(ds))
    assert made is not None and made.encoding == (True, True)  # the transfer syntax's
    for patient_id in IDS:
        finished = deferred.fill_in(made, patient_id)
        assert finished is not None
        assert finished[0] == _direct(ds, patient_id)[0], patient_id
        assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(finished[0])).PixelData == ds.PixelData


def test_a_splice_that_misses_the_elements_gives_no_copy() -> None:
    ds = _other_encodings_in_pixels()
    made = _deferred_or_none(copy.deepcopy(ds))
    assert made is not None
    wrong = dataclasses.replace(made, encoding=(False, True))  # found only in the pixel data
    assert deferred.fill_in(wrong, "42") is None
    assert deferred.fill_in(made, "42") is not None
