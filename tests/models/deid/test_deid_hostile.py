"""Hostile files against the de-identifier (issue 24): UIDs under another VR, paths from UIDs,
markers in every attribute pydicom's data dictionary knows, in the preamble and in the file meta.

The marker corpus is generated from ``pydicom.datadict.DicomDictionary`` (not hand-listed):
every public attribute whose VR can carry text (free text, codes, names, dates and times,
UIDs, numbers written as text, binary blobs) gets a marker; none may survive in the written
bytes. The exceptions are asserted, not skipped: the image's own blobs (``KEEP_BINARY``) and
class UIDs (they name a kind of object, valid UIDs of the standard or a vendor).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
from pydicom.datadict import DicomDictionary, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from models.deid import deidentify as deid
from models.paths import UnsafePathError, inside
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import build_dataset

KEY = bytes(range(32))
TEXT = {"AE", "AS", "LO", "LT", "SH", "ST", "UC", "UR", "UT", "PN"}
BLOBS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def _image(**kw) -> Dataset:
    values = {
        "patient_id": "MRKPID0001",
        "study_uid": generate_uid(),
        "series_uid": generate_uid(),
        "sop_instance_uid": generate_uid(),
        "study_date": "20240101",
    } | kw
    phantom = phantoms.mammogram(
        np.random.default_rng(5), "benign", size=(64, 64), lesion_diameter_mm=12.0
    )
    return build_dataset(phantom, **values)


def _file_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _retyped(raw: bytes, tag: int, old: str, new: str) -> bytes:
    """Explicit VR little endian: the element header of ``tag`` with VR ``old`` rewritten as ``new``
    (pydicom will not hold text in a DS, but a file can)."""
    head = tag.to_bytes(4, "big")
    needle = head[1::-1] + head[3:1:-1] + old.encode()
    assert raw.count(needle) == 1
    return raw.replace(needle, head[1::-1] + head[3:1:-1] + new.encode())


def _marker_corpus() -> tuple[bytes, dict[int, bytes], dict[int, bytes]]:
    """A real image file with a marker in every dictionary attribute whose VR can carry one.

    Returns the file, the markers that must vanish (by tag) and those that may stay (class UIDs,
    the image's blobs) with the reason asserted by the test."""
    ds = _image()
    must_go: dict[int, bytes] = {}
    may_stay: dict[int, bytes] = {}
    as_text: list[tuple[int, str]] = []
    skip = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # the image itself is not a place to plant text
    for i, (tag, entry) in enumerate(sorted(DicomDictionary.items())):
        vr = entry[0].split(" or ")[0]
        group = tag >> 16
        if group in (0x0000, 0x0002, 0xFFFE, 0xFFFA, 0xFFFC) or tag in skip or tag in ds:
            continue
        if vr in ("SQ", "NONE", "AT") or vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
            continue  # numbers hold no text; sequences are filled below
        mark = f"MRK{i:05d}"
        if vr in TEXT:
            value, needle = (f"{mark}^Jane" if vr == "PN" else mark), mark.encode()
            if vr == "AS":
                value, needle = "077Y", None  # four characters: checked by value below
            if vr == "AE":
                value = mark  # 16 characters at most
        elif vr == "CS":
            value = f"mrk{i:05d} jane"  # not a valid code string: lower case, too free
            needle = value.encode()
        elif vr == "DA":
            value, needle = f"19{i % 100:02d}0101", None
        elif vr == "DT":
            value = f"1911010101{i % 60:02d}.{i:06d}"
            needle = value.encode()
        elif vr == "TM":
            value = f"0101{i % 60:02d}.{i:06d}"
            needle = value.encode()
        elif vr == "UI":
            value = f"1.2.826.0.1.3680043.99.{70000 + i}"
            needle = value.encode()
        elif vr in ("DS", "IS"):
            as_text.append((tag, vr))
            vr, value, needle = "LO", mark, mark.encode()  # retyped to DS/IS in the bytes below
        elif vr in BLOBS:
            value = f"{mark}PHIBYTES".encode()
            needle = value
        else:
            continue
        ds.add(DataElement(tag, vr, value))
        if needle is None:
            continue
        keyword = keyword_for_tag(tag) or ""
        if vr == "UI" and keyword.endswith("ClassUID"):
            may_stay[tag] = needle
        elif vr in BLOBS and tag in deid.KEEP_BINARY:
            may_stay[tag] = needle
        else:
            must_go[tag] = needle
    # one non-profile sequence, two levels deep, with free text, a name, a date and a UID
    inner = Dataset()
    inner.CodeMeaning = "MRKSEQ2 Jane Doe"
    inner.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.99.55555"
    inner.ObservationDateTime = "19770707121212.123456"
    item = Dataset()
    item.PersonName = "MRKSEQ1^Jane"
    item.ConceptNameCodeSequence = Sequence([inner])
    ds.AnatomicRegionSequence = Sequence([item])
    must_go.update(
        {-1: b"MRKSEQ2", -2: b"1.2.826.0.1.3680043.99.55555", -3: b"MRKSEQ1", -4: b"19770707121212"}
    )
    # the file meta and the preamble
    ds.file_meta.SourceApplicationEntityTitle = "MRKSRCAE"
    ds.file_meta.ImplementationVersionName = "MRKIMPLVER"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.99.66666"
    ds.file_meta.PrivateInformation = b"MRKPRIVATEINFO Jane Doe"
    ds.preamble = b"MRKPREAMBLE Jane Doe".ljust(128, b"\x00")
    must_go.update(
        {
            -10: b"MRKSRCAE",
            -11: b"MRKIMPLVER",
            -12: b"1.2.826.0.1.3680043.99.66666",
            -13: b"MRKPRIVATEINFO",
            -14: b"MRKPREAMBLE",
        }
    )
    raw = _file_bytes(ds)
    for tag, vr in as_text:
        raw = _retyped(raw, tag, "LO", vr)
    return raw, must_go, may_stay


def test_no_marker_in_any_dictionary_attribute_survives(tmp_path) -> None:
    raw, must_go, may_stay = _marker_corpus()
    assert len(must_go) > 1500, "the corpus must cover the dictionary, not a sample"
    assert all(n in raw for n in must_go.values()), "every marker is really in the input"
    source = pydicom.dcmread(io.BytesIO(raw))
    assert source[0x00280030].VR == "DS"  # a number field holding text, as a crafted file can
    out, report = deid.deidentify(raw, KEY, patient_id="4711")
    data = deid.to_bytes(out)
    leaked = sorted(f"{keyword_for_tag(t) or t}" for t, n in must_go.items() if n in data)
    assert leaked == []
    assert data[:128] == bytes(128) and data[128:132] == b"DICM"
    # the file meta was rebuilt: only what PS3.10 needs, naming this instance and OncoLens
    meta = pydicom.dcmread(io.BytesIO(data)).file_meta
    assert set(meta.dir()) <= {
        "FileMetaInformationGroupLength",
        "FileMetaInformationVersion",
        "MediaStorageSOPClassUID",
        "MediaStorageSOPInstanceUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "ImplementationVersionName",
    }
    assert meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert meta.ImplementationVersionName == deid.IMPLEMENTATION_VERSION_NAME
    # what may stay, stays for its stated reason
    for tag in may_stay:
        assert (keyword_for_tag(tag) or "").endswith("ClassUID") or tag in deid.KEEP_BINARY
    # dates, times and names are handled wherever they are, not only where the table names them
    again = pydicom.dcmread(io.BytesIO(data))
    for elem in again.iterall():
        if elem.VR in ("DA", "DT", "TM"):  # emptied, or the profile's obvious dummy (D)
            assert elem.value in (None, "", "19000101", "19000101000000", "000000"), elem.keyword
        if elem.VR == "PN":
            assert str(elem.value) in ("", "None", "4711", "ANONYMIZED"), elem.keyword
    for keyword in (
        "InstanceCreationDate",
        "EvaluatorName",
        "SecondaryReviewerName",
        "AcquisitionUID",
    ):
        assert keyword in source and (
            keyword not in again
            or again[keyword].value in (None, "")
            or str(again[keyword].value).startswith("2.25.")
        ), keyword
    assert again.Modality == "MG" and again.Rows == 64  # the image is still an image
    assert np.array_equal(again.pixel_array, _image().pixel_array)  # the phantom is seeded
    assert sum(report.counts().values()) > 1500


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SOPInstanceUID", "SeriesInstanceUID"])
def test_a_uid_under_another_vr_is_remapped_and_the_output_stays_in_its_folder(
    tmp_path, keyword
) -> None:
    ds = _image()
    ds.add(DataElement(ds[keyword].tag, "LO", "../../../escaped"))
    src = tmp_path / "in" / "crafted.dcm"
    src.parent.mkdir()
    src.write_bytes(_file_bytes(ds))
    out_dir = tmp_path / "out"
    results = list(deid.deidentify_files([src], out_dir, KEY))
    assert "error" not in results[0], results
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != src]
    assert written and all(p.resolve().is_relative_to(out_dir.resolve()) for p in written)
    again = pydicom.dcmread(results[0]["out"])
    assert again[keyword].VR == "UI" and again[keyword].value == deid.remap_uid(
        "../../../escaped", KEY
    )
    assert b"escaped" not in (out_dir / results[0]["out"]).read_bytes()


def test_a_uid_held_as_a_sequence_refuses_the_file(tmp_path) -> None:
    ds = _image()
    del ds.SOPInstanceUID
    ds.add(DataElement(0x00080018, "SQ", Sequence([Dataset()])))
    src = tmp_path / "seq.dcm"
    ds.preamble = bytes(128)
    ds.save_as(
        src, enforce_file_format=False
    )  # the meta keeps its own UID; the data set's is a sequence
    results = list(deid.deidentify_files([src], tmp_path / "out", KEY))
    assert "sequence" in results[0]["error"] and not (tmp_path / "out").exists()


def test_an_unregistered_transfer_syntax_is_refused() -> None:
    ds = _image()
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.MRK"
    with pytest.raises(deid.DeidentificationError, match="transfer syntax"):
        deid.deidentify(ds, KEY)


def test_an_oversized_file_is_refused_before_it_is_read(monkeypatch, tmp_path) -> None:
    src = tmp_path / "big.dcm"
    src.write_bytes(_file_bytes(_image()))
    monkeypatch.setattr(
        deid, "MAX_FILE_BYTES", 1000
    )  # the limit, not the machine's memory, is under test
    result = next(iter(deid.deidentify_files([src], tmp_path / "out", KEY)))
    assert "largest accepted" in result["error"]


def test_inside_refuses_every_way_out(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert inside(root, "a", "b.dcm") == (root / "a" / "b.dcm").resolve()
    for parts in (
        ("..", "x"),
        ("a/../../x",),
        ("",),
        (".",),
        ("a\\b",),
        ("a\x00b",),
        ("x" * 300,),
        ("link", "x"),
    ):
        with pytest.raises(UnsafePathError):
            inside(root, *parts)


def test_the_report_never_carries_the_file_meta_values() -> None:
    raw, must_go, _ = _marker_corpus()
    _, report = deid.deidentify(raw, KEY)
    text = repr(report.as_dict())
    assert not [n for n in must_go.values() if n.decode("latin-1") in text]
    assert re.search(r"Preamble", text)
