"""An upload de-identified, then sorted (``models.volumes.uploads.read_upload``): volumes by the
stored series' rule, refused series with their reason, 2D images, skipped files; no identifier
survives in what it returns."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from models.volumes import read_volumes
from models.volumes.sources import collect
from models.volumes.uploads import read_upload, series_sha256
from models.volumes.write import SeriesHeader, write_series

pytestmark = pytest.mark.filterwarnings("ignore")
KEY = b"k" * 32
NAME = "Doe^Jane"


def _series(folder: Path, n: int, seed: int, spacing: float = 3.0) -> list[Path]:
    header = SeriesHeader(
        "CT", "MRN-123", NAME, generate_uid(), generate_uid(), generate_uid(),
        dt.date(2026, 1, 5), "CHEST", "private description", "axial",
    )  # fmt: skip
    values = np.random.default_rng(seed).integers(-1000, 1500, (n, 24, 20)).astype(np.int16)
    return write_series(
        values, folder, header, origin_lps=(0.0, 0.0, 0.0), pixel_spacing=(0.7, 0.7),
        slice_spacing=spacing,
    )  # fmt: skip


def _uploads(paths: list[Path]) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in paths]


def test_an_upload_is_sorted_into_volumes_refused_series_images_and_skipped_files(tmp_path):
    good = _series(tmp_path / "good", 8, 0)
    gap = _series(tmp_path / "gap", 6, 1)
    gap[2].unlink()
    two = _series(tmp_path / "two", 2, 2)  # two slices: 2D images by the rule, not a volume
    items, skipped = collect(
        [
            *_uploads(good),
            *_uploads([p for p in gap if p.exists()]),
            *_uploads(two),
            ("notes.txt", b"hello"),
            ("empty.dcm", b""),
        ]
    )
    assert not skipped
    up = read_upload(items, KEY)
    assert len(up.volumes) == 1 and up.volumes[0].shape == (8, 24, 20)
    assert len(up.failures) == 1 and "incomplete series" in up.failures[0].error
    assert len(up.images) == 2  # the two-slice series, image by image
    assert {s.label: s.reason for s in up.skipped} == {
        "notes.txt": "not a DICOM file",
        "empty.dcm": "an empty file",
    }
    assert len(up.reports) == 8 + 5 + 2
    # the volume is the same as one read from the original files (de-identification keeps pixels
    # and geometry), and its hash is the hash of its de-identified files
    (original,) = read_volumes(good).volumes
    np.testing.assert_array_equal(up.volumes[0].pixels, original.pixels)
    np.testing.assert_allclose(up.volumes[0].affine_lps, original.affine_lps)
    uid = up.volumes[0].series_instance_uid
    assert uid != original.series_instance_uid, "UIDs remapped with the key"
    assert len(up.volume_sha256[uid]) == 64


def test_nothing_returned_carries_an_identifier(tmp_path):
    good = _series(tmp_path / "good", 4, 3)
    two = _series(tmp_path / "two", 2, 5)
    items, _ = collect(_uploads(good) + _uploads([good[0]]) + _uploads(two))  # one file twice
    up = read_upload(items, KEY)
    assert up.volumes[0].patient_id not in ("", "MRN-123")
    assert up.volumes[0].series_description == ""
    assert len(up.images) == 2
    for _, data in up.images:
        ds = pydicom.dcmread(io.BytesIO(data))
        assert str(ds.PatientName) != NAME and ds.PatientID != "MRN-123"
        assert ds.get("StudyDescription", "") == "" and ds.PatientIdentityRemoved == "YES"
    labels = [label for label, _ in up.reports]
    assert len(labels) == len(set(labels)) == 7  # "…0000.dcm" twice: two labels


def test_a_zip_is_read_in_memory_and_the_series_hash_ignores_file_order(tmp_path):
    good = _series(tmp_path / "good", 5, 4)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in reversed(good):
            zf.writestr(f"../../outside/{p.name}", p.read_bytes())  # a name is only ever a label
    items, _ = collect([("study.zip", buf.getvalue())])
    up = read_upload(items, KEY)
    assert len(up.volumes) == 1 and not (tmp_path.parent / "outside").exists()
    files = [(f"x{i}", bytes([i])) for i in range(3)]
    assert series_sha256(files) == series_sha256(list(reversed(files)))
    assert series_sha256(files) != series_sha256(files[:2])


def test_an_empty_zip_is_named_as_such_not_taken_for_a_file():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w"):
        pass
    assert buf.getvalue()[:4] == b"PK\x05\x06"  # no member: the archive starts with its end record
    items, skipped = collect([("empty.zip", buf.getvalue())])
    assert items == [] and [(s.label, s.reason) for s in skipped] == [
        ("empty.zip", "an empty zip archive")
    ]
