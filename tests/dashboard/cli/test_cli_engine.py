"""dashboard.cli.common's engine options: ``--engine``, ``--address`` and ``--workers`` are checked before any work
(one line on stderr, exit 1); ``predict --workers N`` gives the same results, in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dashboard.cli.main import main
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engine")
    rng = np.random.default_rng
    for k in range(3):
        write_phantom_dicom(
            phantoms.brain_mri(rng(40 + k), k != 1, lesion_diameter_mm=25.0 if k != 1 else None),
            root / f"mr{k}.dcm",
            patient_id="P1",
            study_uid=generate_uid(),
            series_uid=generate_uid(),
            sop_instance_uid=generate_uid(),
            study_date="20250101",
        )
    (root / "broken.dcm").write_bytes(b"DICM" * 10)
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "{folder}", "--address", "auto"], "--engine ray"),
        (["predict", "{folder}", "--workers", "0"], "at least 1"),
        (["ingest", "{folder}", "--db", "{folder}/x.duckdb", "--workers", "0"], "at least 1"),
    ],
)
def test_bad_engine_options_are_refused_in_one_line(folder, capsys, args, message) -> None:
    code = main([a.format(folder=folder) for a in args])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_predict_with_workers_reads_every_file_in_order(folder, capsys) -> None:
    assert main(["predict", str(folder), "--json", "--workers", "1"]) == 1  # the broken file
    one = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert main(["predict", str(folder), "--json", "--workers", "2"]) == 1
    two = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert [r["file"] for r in one] == sorted(str(p) for p in folder.glob("*.dcm"))
    strip = ("latency_ms", "inference_ms")
    assert [{k: v for k, v in r.items() if k not in strip} for r in one] == [
        {k: v for k, v in r.items() if k not in strip} for r in two
    ]
    assert [("error" in r) for r in one] == [True, False, False, False]
