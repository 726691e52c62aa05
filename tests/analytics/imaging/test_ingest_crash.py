"""A reader process that crashes on a volume's slice (review of issue 21): the slice is a failure
of its own, and its series is not read in 3D one slice short. A crashed end slice leaves no gap in
the other slices' positions, so before this the series was read as a complete, shorter volume
without a word; now the series is refused with the reason naming the file."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from analytics import store
from analytics.imaging import ingest
from models.inference import batch
from models.inference.loader import ModelLoader
from models.volumes.write import SeriesHeader, write_series

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture
def series(demo_db: Path, tmp_path: Path) -> dict:
    """A copy of the demo store and a 6-slice MR series of one of its patients."""
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db, read_only=True) as con:
        mrn = con.execute("SELECT mrn FROM person ORDER BY person_id LIMIT 1").fetchone()[0]
    header = SeriesHeader(
        "MR", str(mrn), "A^B", generate_uid(), generate_uid(), generate_uid(),
        dt.date(2026, 1, 1), "BRAIN", "MR brain", "AX T1",
    )  # fmt: skip
    values = np.random.default_rng(3).integers(100, 900, (6, 32, 32))
    files = write_series(
        values, tmp_path / "series", header, origin_lps=(0, 0, 0), pixel_spacing=(1, 1),
        slice_spacing=2,
    )  # fmt: skip
    return {"db": db, "files": sorted(files)}


def _crash_on(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that kills its process on the file ``name`` (as ``tests/models/inference/
    test_batch.py`` simulates one): forked workers inherit the patch, the parent never decodes it."""
    real = ingest._checked

    def checked(path, *args, **kwargs):
        if Path(path).name == name:
            os._exit(70)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ingest, "_checked", checked)
    monkeypatch.setitem(batch.map_files.__kwdefaults__, "chunk", 2)  # several chunks: workers


@pytest.mark.parametrize("which", [0, -1])  # the first and the last slice: no gap either way
def test_a_crashed_end_slice_refuses_its_series_with_the_reason(series, monkeypatch, which):
    files = series["files"]
    lost = files[which]
    _crash_on(lost.name, monkeypatch)
    before = _volume_reads(series["db"])
    report = ingest.ingest_files(series["db"], files, ModelLoader(), workers=2)
    crashed = [f for f in report.failed if f.get("error_type") == "ReaderCrashed"]
    assert [Path(f["file"]).name for f in crashed] == [lost.name]
    assert len(report.stored) == 5  # the other slices are filed
    (volume,) = report.volumes
    assert volume["note_type"] == "IncompleteSeriesError"
    assert "1 of its 6 images could not be read" in volume["note"]
    assert f"crashed on {lost.name}" in volume["note"]
    assert _volume_reads(series["db"]) == before  # not read one slice short


def _volume_reads(db: Path) -> int:
    with store.open_store(db, read_only=True) as con:
        return con.execute("SELECT count(*) FROM ai_volume_read").fetchone()[0]


def test_without_a_crash_the_series_is_read_in_3d(series):
    """The same series, nothing crashing: one 3D read (the crash is what refuses it above)."""
    report = ingest.ingest_files(series["db"], series["files"], ModelLoader(), workers=2)
    assert not report.failed and len(report.stored) == 6
    (volume,) = report.volumes
    assert "note" not in volume or volume.get("note_type") != "IncompleteSeriesError"
