"""`oncolens predict` over a series whose reader crashes on one slice (review of issue 21): the
series is an error naming the file, never a 3D read one slice short (a crashed end slice leaves no
gap in the other slices' positions)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dashboard.cli.main import main
from models.inference import batch
from models.volumes.write import SeriesHeader, write_series

pytestmark = pytest.mark.filterwarnings("ignore")


def test_a_crashed_end_slice_makes_its_series_an_error(tmp_path, capsys, monkeypatch) -> None:
    header = SeriesHeader(
        "MR", "P1", "A^B", generate_uid(), generate_uid(), generate_uid(),
        dt.date(2026, 1, 1), "BRAIN", "MR brain", "AX T1",
    )  # fmt: skip
    values = np.random.default_rng(3).integers(100, 900, (6, 32, 32))
    files = sorted(
        write_series(
            values,
            tmp_path / "series",
            header,
            origin_lps=(0, 0, 0),
            pixel_spacing=(1, 1),
            slice_spacing=2,
        )  # fmt: skip
    )
    last = files[-1].name
    real = batch.read_dataset

    def crashing(path, *args, **kwargs):
        if Path(path).name == last:
            os._exit(70)  # a decoder that kills its process, as test_cli_predict_one_pass does
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batch, "read_dataset", crashing)  # forked workers inherit the patch
    monkeypatch.setattr(batch, "CHUNK", 2)
    argv = ["predict", str(tmp_path / "series"), "--json", "--workers", "2"]
    argv += ["--db", str(tmp_path / "none.duckdb")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    (line,) = [json.loads(x) for x in captured.out.splitlines() if x.strip()]
    assert line["kind"] == "volume" and line["error_type"] == "IncompleteSeriesError"
    assert (
        f"1 of its 6 images could not be read (the reader process crashed on {last})"
        in (line["error"])
    )
    assert "label" not in line and "Traceback" not in captured.err
