"""De-identification (PS3.15 Annex E Basic Profile): every attribute the table names, private tags,
UID remapping across files, the report, burned-in warnings; real pydicom files searched byte by byte."""

from __future__ import annotations

import json
import struct

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from models.deid import deidentify as deid
from models.deid.profile import profile_rows
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import build_dataset

KEY = bytes(range(32))
TEXT_VRS = {"LO", "LT", "SH", "ST", "UT", "UC", "PN"}
STUDY_UID = "1.2.826.0.1.3680043.99.424242.1"


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "LO"  # a tag newer than this pydicom: written explicitly as LO


def _marker(i: int, vr: str) -> tuple[object, bytes | None]:
    """A value of the VR that appears nowhere else, and the bytes to search for (None: too short to search)."""
    if vr in TEXT_VRS:
        s = f"MRK{i:04d}PHI" + ("" if vr == "SH" else " Jane Doe")
        return s, s.encode()
    if vr in ("AE", "CS"):
        s = f"MRK{i:04d}PHIAE"[:16] if vr == "AE" else f"MRK{i:04d}PHI"
        return s, s.encode()
    if vr == "DA":
        s = f"1911{1 + i % 12:02d}{1 + i % 28:02d}"
        return s, None  # several dates share a value; checked by attribute instead
    if vr == "DT":
        s = f"19{i % 100:02d}0304050607.{i:06d}"
        return s, s.encode()
    if vr == "TM":
        s = f"0102{i % 60:02d}.{i:06d}"
        return s, s.encode()
    if vr == "AS":
        return "077Y", None
    if vr == "DS":
        s = f"98765.{i:04d}"
        return s, s.encode()
    if vr == "IS":
        s = f"7{i:06d}"
        return s, s.encode()
    if vr == "UI":
        s = f"1.2.826.0.1.3680043.99.{70000 + i}.{i}"
        return s, s.encode()
    if vr == "UR":
        s = f"http://mrk{i:04d}.example/phi"
        return s, s.encode()
    if vr == "FD":
        v = 123456.0 + i / 7
        return v, struct.pack("<d", v)
    if vr in ("FL",):
        return 1.5, None
    if vr in ("US", "SS", "UL", "SL", "SV", "UV", "AT"):
        return 7, None
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
        b = f"MRK{i:04d}PHIBYTES".encode()
        return b, b
    raise AssertionError(f"no marker for VR {vr}")


def _sequence_item(i: int, kept: bool) -> tuple[Dataset, list[bytes]]:
    """An item with a reference; sequences the profile removes or empties also get free text.

    ``kept``: an X/Z/U* sequence (referenced / source images), whose items stay
    and are de-identified attribute by attribute like the top level.
    """
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.99.{80000 + i}.{i}"
    found = [item.ReferencedSOPInstanceUID.encode()]
    if not kept:
        item.CodeMeaning = f"MRK{i:04d}SQ Jane Doe"
        found.append(item.CodeMeaning.encode())
    return item, found


def filled_dataset() -> tuple[Dataset, dict[int, bytes | None], list[bytes]]:
    """A real image with every Basic Profile attribute filled with a marker; the markers to look for."""
    ds = build_dataset(
        phantoms.mammogram(
            np.random.default_rng(5), "benign", size=(64, 64), lesion_diameter_mm=12.0
        ),
        patient_id="MRK-PATIENT-ID-123",
        patient_name="Doe^Jane^MRKNAME",
        study_uid=STUDY_UID,
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="19770707",
        accession_number="MRKACC0001",
        study_description="MRK study of Jane Doe",
        birth_date="19450203",
    )
    markers: dict[int, bytes | None] = {}
    extra: list[bytes] = [
        b"MRK-PATIENT-ID-123",
        b"MRKNAME",
        b"MRKACC0001",
        b"19450203",
        b"19770707",
    ]
    for i, (tag_text, _code, _name) in enumerate(profile_rows()):
        if "x" in tag_text:
            continue
        tag = int(tag_text, 16)
        if tag >> 16 in (0x0000, 0x0002, 0xFFFA, 0xFFFC):
            continue  # command / file meta / signatures / padding: filled separately below
        if tag in (
            0x00100010,
            0x00100020,
            0x0020000D,
            0x00080050,
            0x00081030,
            0x00100030,
            0x00080020,
        ):
            continue  # set through build_dataset above
        vr = _vr(tag)
        if vr == "SQ":
            item, found = _sequence_item(i, kept=_code == "X/Z/U*")
            ds.add_new(tag, "SQ", Sequence([item]))
            extra.extend(found)
            markers[tag] = None
            continue
        value, needle = _marker(i, vr)
        ds.add_new(tag, vr, value)
        markers[tag] = needle
    # repeating groups: curve data and overlays
    ds.add_new(0x50000010, "US", 1)
    ds.add_new(0x50003000, "OB", b"MRKCURVEDATA")
    ds.add_new(0x60004000, "LT", "MRK overlay comment Jane Doe")
    ds.add_new(0x60003000, "OB", b"MRKOVERLAYBITS!!")
    extra += [b"MRKCURVEDATA", b"MRK overlay comment", b"MRKOVERLAYBITS"]
    # private tags with identifiers, at the top level and inside a kept sequence
    block = ds.private_block(0x0029, "ACME PHI STORE", create=True)
    block.add_new(0x10, "LO", "MRKPRIVATE Jane Doe MRN 555-1234")
    block.add_new(0x11, "UI", "1.2.826.0.1.3680043.99.31337")
    ds.ReferencedImageSequence[0].add_new(0x00091010, "LO", "MRKPRIVNESTED")
    extra += [b"MRKPRIVATE", b"ACME PHI STORE", b"1.2.826.0.1.3680043.99.31337", b"MRKPRIVNESTED"]
    return ds, markers, extra


def _bytes(ds: Dataset) -> bytes:
    return deid.to_bytes(ds)


def test_the_table_is_the_whole_basic_profile() -> None:
    rows = profile_rows()
    assert len(rows) == 459 and len({t for t, _, _ in rows}) == 459
    assert {a for _, a, _ in rows} <= {"X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}
    tags = deid.profile_tags()
    for keyword, code in (
        ("PatientName", "Z"),
        ("PatientID", "Z"),
        ("PatientBirthDate", "Z"),
        ("StudyInstanceUID", "U"),
        ("InstitutionName", "X/Z/D"),
        ("PatientAge", "X"),
        ("ReferencedImageSequence", "X/Z/U*"),
        ("OtherPatientIDs", "X"),
    ):
        assert tags[deid.tag_of(keyword)][0] == code, keyword


def test_no_identifying_value_survives_in_the_bytes(tmp_path) -> None:
    ds, markers, extra = filled_dataset()
    original = _bytes(ds)
    needles = [n for n in markers.values() if n] + extra
    assert all(n in original for n in needles), "the test file must really contain every marker"
    assert len(markers) > 400

    out, report = deid.deidentify(ds, KEY, patient_id="4711")
    path = deid.write_deidentified(out, tmp_path / "out.dcm")
    raw = path.read_bytes()
    leaked = [n for n in needles if n in raw]
    assert leaked == []
    # attributes whose markers are too short to search for: checked by value
    again = pydicom.dcmread(path)
    for tag, needle in markers.items():
        if needle is None and tag in again and again[tag].VR != "SQ":
            assert again[tag].value != ds[tag].value or again[tag].value in (None, "", 0), hex(tag)
    assert again.PatientID == "4711" and str(again.PatientName) == "4711"
    assert again.PatientIdentityRemoved == "YES" and "Annex E" in again.DeidentificationMethod
    assert again.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert not any(e.tag.is_private for e in again.iterall())
    assert again.file_meta.MediaStorageSOPInstanceUID == again.SOPInstanceUID
    # the image is still an image: pixels untouched, the viewer's attributes kept
    assert np.array_equal(again.pixel_array, ds.pixel_array)
    assert again.Modality == "MG" and again.ImagerPixelSpacing == ds.ImagerPixelSpacing
    # the source data set is not modified
    assert ds.PatientID == "MRK-PATIENT-ID-123"
    assert report.counts()["X"] > 200


def test_uids_are_remapped_consistently_across_files_of_one_study() -> None:
    def image(sop: str, series: str) -> Dataset:
        return build_dataset(
            phantoms.brain_mri(np.random.default_rng(1), False, size=(96, 96)),
            patient_id="P1",
            study_uid=STUDY_UID,
            series_uid=series,
            sop_instance_uid=sop,
            study_date="20240101",
        )

    series = generate_uid()
    a, ra = deid.deidentify(image(generate_uid(), series), KEY)
    b, rb = deid.deidentify(image(generate_uid(), series), KEY)
    c, _ = deid.deidentify(image(generate_uid(), series), b"another key of 32 bytes, really!")
    assert a.StudyInstanceUID == b.StudyInstanceUID != STUDY_UID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID
    assert c.StudyInstanceUID != a.StudyInstanceUID  # another store's key: not linkable
    assert a.PatientID == b.PatientID and a.PatientID.startswith("OL-") and "P1" not in a.PatientID
    for uid in (a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID):
        assert uid.startswith("2.25.") and len(uid) <= 64 and pydicom.uid.UID(uid).is_valid
    assert ra.study_uid == a.StudyInstanceUID and rb.sop_instance_uid == b.SOPInstanceUID


def test_references_inside_sequences_follow_the_same_mapping() -> None:
    ds, _, _ = filled_dataset()
    referenced = ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    other = Dataset()
    other.SOPInstanceUID = referenced
    out, _ = deid.deidentify(ds, KEY)
    mapped, _ = deid.deidentify(other, KEY)
    item = out.ReferencedImageSequence[0]
    assert item.ReferencedSOPInstanceUID == mapped.SOPInstanceUID != referenced
    assert (
        item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"
    )  # a class UID identifies nobody


def test_the_report_names_attributes_and_actions_never_values() -> None:
    ds, markers, extra = filled_dataset()
    _, report = deid.deidentify(ds, KEY, patient_id="4711")
    text = json.dumps(report.as_dict())
    assert not any(
        n.decode("latin-1") in text
        for n in [*(m for m in markers.values() if m), *extra]
        if not n.startswith(b"\x00")
    )
    by_attr = {c["attribute"]: c["action"] for c in report.as_dict()["changes"]}
    assert by_attr["PatientBirthDate"] == "Z" and by_attr["OtherPatientIDs"] == "X"
    assert by_attr["StudyInstanceUID"] == "U" and by_attr["InstitutionName"] == "Z"
    assert by_attr["ReferencedImageSequence[0].ReferencedSOPInstanceUID"] == "U"
    assert by_attr["PatientID"] == "P" and by_attr["Private"] == "X"
    assert any(
        c["tag"] == "(0029,1010)" and c["action"] == "X" for c in report.as_dict()["changes"]
    )


def test_burned_in_warning_for_risky_images_only() -> None:
    mg = build_dataset(
        phantoms.mammogram(np.random.default_rng(2), "normal", size=(32, 32)),
        patient_id="P",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240101",
    )
    _, report = deid.deidentify(mg, KEY)
    assert not report.burned_in_risk and report.warnings == []
    us = Dataset()
    us.Modality = "US"
    _, report = deid.deidentify(us, KEY)
    assert report.burned_in_risk and "US" in report.warnings[0]
    flagged = Dataset()
    flagged.Modality = "CT"
    flagged.BurnedInAnnotation = "YES"
    flagged.ImageType = ["DERIVED", "SECONDARY"]
    _, report = deid.deidentify(flagged, KEY)
    assert "BurnedInAnnotation is YES" in report.warnings[0] and "secondary" in report.warnings[0]


def test_keys_are_created_once_private_and_reused(tmp_path) -> None:
    path = deid.key_path_for_store(tmp_path / "clinic.duckdb")
    assert path.name == "clinic_deid.key"
    k1 = deid.load_or_create_key(path)
    assert len(k1) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert deid.load_or_create_key(path) == k1
    path.write_text("not hex")
    with pytest.raises(deid.DeidentificationError):
        deid.load_or_create_key(path)


def test_non_dicom_input_is_refused_with_a_plain_error(tmp_path) -> None:
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"hello")
    with pytest.raises(deid.DeidentificationError):
        deid.deidentify(bad, KEY)
    with pytest.raises(deid.DeidentificationError):
        deid.deidentify(Dataset(), b"short")


def test_file_meta_without_dataset_uid_is_handled() -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    out, _ = deid.deidentify(ds, KEY)
    assert out.file_meta.MediaStorageSOPInstanceUID == deid.remap_uid("1.2.3.4", KEY)
