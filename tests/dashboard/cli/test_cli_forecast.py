"""`oncolens forecast` and `oncolens validate forecast`: the JSON contract, exit statuses, messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analytics import store
from dashboard.cli.main import main


def test_forecast_json_contract(demo_db, capsys):
    assert main(["forecast", "7", "--db", str(demo_db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"patient_id", "survival", "tumour"} <= set(out)
    assert out["patient_id"] == 7
    assert {"observed", "forecast", "progression_date"} <= set(out["tumour"])
    assert out["tumour"]["observed"] and all(
        {"date", "mm"} <= set(r) for r in out["tumour"]["observed"]
    )
    assert all({"date", "mm", "lo", "hi"} <= set(r) for r in out["tumour"]["forecast"])
    assert out["survival"] == {}
    # patient 7 recurred: no recurrence-free forecast, and the notes say why
    assert any("no longer applies" in n for n in out["survival_info"]["notes"])


def test_forecast_text_output(demo_db, capsys):
    assert main(["forecast", "7", "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "Patient 7" in out and "not a medical device" in out and "lesion:" in out


@pytest.mark.parametrize(
    ("pid", "message"), [("999999", "no patient with id 999999"), ("abc", "must be a whole number")]
)
def test_unknown_or_invalid_patient_exits_1(demo_db, capsys, pid, message):
    assert main(["forecast", pid, "--db", str(demo_db), "--json"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_nothing_computable_exits_1_with_the_reasons(demo_db, tmp_path, capsys):
    db = tmp_path / "bare.duckdb"
    shutil.copyfile(demo_db, db)
    with store.open_store(db) as con:
        con.execute(
            "DELETE FROM measurement WHERE person_id = 7 AND concept = 'lesion_longest_diameter'"
        )
    assert main(["forecast", "7", "--db", str(db), "--json"]) == 1
    err = capsys.readouterr().err
    assert "nothing can be forecast" in err and "no usable lesion measurement" in err


def test_validate_forecast_json(demo_db: Path, capsys):
    assert main(["validate", "forecast", "--db", str(demo_db), "--folds", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    tumour = report["tumour"]["overall"]
    assert tumour["mae_mm"]["tgi"] < tumour["mae_mm"]["locf"]
    assert tumour["mae_mm"]["tgi"] < tumour["mae_mm"]["trend"]
    assert 0.65 < tumour["coverage_80"] < 0.92 and 0.85 < tumour["coverage_95"] < 0.995
    survival = report["survival"]
    assert 0 < survival["integrated_brier"]["model"] < 0.25
    assert set(survival["calibration"]) == {"1y", "3y", "5y"}
    for c in survival["calibration"].values():
        assert 0 <= c["mean_predicted"] <= 1 and c["mean_abs_error"] < 0.2
