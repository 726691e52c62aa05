"""``ingest_files`` parses each file once (issue 23): the series scan, the read and the header from one
parse in the worker processes (``prepare_and_scan``). What it hands the writer must be what the two
passes gave (``volume_files`` over the resolved paths, then ``prepare_files`` of the 2D images and of
the volumes' slices without a 2D read, in that order): the same entries, failures and volume series,
whatever the chunks, with series split across chunks and a blank slice inside a volume (which the
2D read refuses and a volume's slice does not)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from analytics.imaging import ingest
from models.inference import batch
from models.inference.loader import ModelLoader
from models.inference.read import iter_dicom_paths
from models.volumes.measure import volume_files
from models.volumes.write import SeriesHeader, write_series
from sample_data.demo_imaging import write_demo_images

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def folder(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ingest_one_pass")
    db = Path(shutil.copy(demo_db, root / "clinic.duckdb"))
    images = root / "images"
    write_demo_images(db, images / "demo", patients=2, seed=8)
    for k, n in enumerate((7, 4)):
        header = SeriesHeader(
            "MR", f"P{k}", "A^B", generate_uid(), generate_uid(), generate_uid(),
            dt.date(2026, 1, 1), "BRAIN", "MR brain", "AX T1",
        )  # fmt: skip
        values = np.random.default_rng(k).integers(0, 900, (n, 32, 32))
        values[0] = values[-1] = 0  # blank: the 2D read refuses them, a volume's slices are filed
        write_series(
            values, images / f"s{k}", header, origin_lps=(0, 0, 0), pixel_spacing=(1, 1),
            slice_spacing=2,
        )  # fmt: skip
    demo = next(iter_dicom_paths([images / "demo"]))
    ds = pydicom.dcmread(demo)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), dtype=np.uint16).tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(images / "blank.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), images / "ct.dcm")
    (images / "random.dcm").write_bytes(np.random.default_rng(2).bytes(4000))
    (images / "empty.dcm").write_bytes(b"")
    return images


def _summary(entry) -> dict:
    if isinstance(entry, dict):
        return entry
    ai = entry.ai
    fields = {k: v for k, v in vars(entry).items() if k != "ai"}
    return {
        **fields,
        "label": None if ai is None else ai.label,
        "probabilities": None if ai is None else ai.probabilities,
        "lesion": None if ai is None else ai.lesion_summary(),
        "refused": None if ai is None else ai.refused,
    }


@pytest.fixture(scope="module")
def two_passes(folder: Path) -> tuple[list[dict], dict]:
    """The ingest's preparation before issue 23's one pass, step by step."""
    paths = list(iter_dicom_paths([folder]))
    series = volume_files([p.resolve() for p in paths])
    in_series = {p for files in series.values() for p in files}
    load = ModelLoader()
    flat = ingest.prepare_files([p for p in paths if p.resolve() not in in_series], load)
    stacked = [p for p in paths if p.resolve() in in_series]
    slices = ingest.prepare_files(stacked, load, read=False)
    return [_summary(e) for e in [*flat, *slices]], series


@pytest.mark.parametrize(
    ("workers", "chunk"), [(1, 32), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (2, 4), (2, 5)]
)
def test_one_pass_prepares_what_the_two_passes_prepared(
    folder: Path,
    two_passes: tuple[list[dict], dict],
    workers: int,
    chunk: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # map_files' default chunk (bound when it was defined): series split across chunks
    monkeypatch.setitem(batch.map_files.__kwdefaults__, "chunk", chunk)
    paths = list(iter_dicom_paths([folder]))
    entries, series = ingest._prepare_in_one_pass(paths, workers, None)
    expected, expected_series = two_passes
    assert series == expected_series and len(series) == 2
    assert [_summary(e) for e in entries] == expected
    notes = [e.get("ai_note") for e in expected]
    assert notes.count(ingest.SERIES_NOTE) == 11  # every slice, the blank ones too, is filed
    local = [
        ingest.prepare_and_scan(paths[k : k + chunk], ModelLoader())
        for k in range(0, len(paths), chunk)
    ]
    read_2d_then_slice = sum(x is not None for part in local for x in part[0].as_slice)
    if chunk in (2, 5):  # a blank slice in a chunk with fewer than 3 of its series: read in 2D
        assert read_2d_then_slice > 0
    assert any("same value" in str(e.get("error")) for e in expected)  # blank.dcm: not filed
