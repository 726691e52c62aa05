"""`oncolens lineage`, `oncolens drift` and the `approval` key of predict / recommend / forecast,
with withholding when the admin requires approval (issue 22 items 3-5)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from analytics import store
from analytics.cohorts import base as cohort_base
from analytics.governance import audit, users
from analytics.governance.lifecycle import approvals
from dashboard.cli.main import main
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom


@pytest.fixture(scope="module")
def db(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("lifecycle") / "clinic.duckdb"))
    assert main(["recommend", "--train", "--db", str(path), "--bootstrap", "2"]) == 0
    with store.open_store(path) as con:  # sign-off and the setting need stored accounts
        users.add_user(con, "board-test", "ethics_board", password="board-test-password-1")
        users.add_user(con, "admin-test", "admin", password="admin-test-password-1")
    return path


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _patient(db: Path) -> int:
    with store.open_store(db, read_only=True) as con:
        # recurrence-free and diagnosed within the model's horizon: a recommendation and a forecast
        return int(
            con.execute(
                "SELECT min(person_id) FROM cohort_base WHERE NOT event AND diagnosis_date > "
                "(SELECT max(diagnosis_date) FROM cohort_base) - INTERVAL 3 YEAR"
            ).fetchall()[0][0]
        )


def test_lineage_lists_every_version_with_its_data_code_and_command(db, capsys):
    capsys.readouterr()
    assert main(["lineage", "--db", str(db), "--json"]) == 0
    rows = {r["model"]: r for r in _lines(capsys)}
    assert {"mammography", "brain_mri", "treatment", "forecast"} <= set(rows)
    treatment = rows["treatment"]
    assert treatment["command"] == f"oncolens recommend --train --db {db} --bootstrap 2"
    with store.open_store(db, read_only=True) as con:
        assert treatment["data"]["fingerprint"] == cohort_base.source_fingerprint(con)
    assert treatment["data"]["rows"]["patients"] > 200
    assert re.fullmatch(r"[0-9a-f]{64}", treatment["data"]["dataset_sha256"])
    assert (
        treatment["version_id"] == rows["forecast"]["version_id"]
    )  # the forecast uses its weights
    assert treatment["approval"]["status"] == "not reviewed"
    for name in ("mammography", "brain_mri"):
        weights = Path(__file__).resolve().parents[3] / "models" / "weights" / f"{name}.pt"
        import hashlib  # only this assertion needs it

        assert rows[name]["version_id"] == hashlib.sha256(weights.read_bytes()).hexdigest()
        assert rows[name]["missing"] == []


def test_recommend_and_forecast_carry_the_approval_and_are_withheld_when_required(db, capsys):
    pid = _patient(db)
    capsys.readouterr()
    assert main(["recommend", str(pid), "--db", str(db), "--json"]) == 0
    out = _lines(capsys)[0]
    version = out["model_version"]
    assert out["approval"]["status"] == "not reviewed" and not out["approval"]["withheld"]
    assert "has not been approved" in out["approval"]["message"]
    assert main(["forecast", str(pid), "--db", str(db), "--json"]) == 0
    assert _lines(capsys)[0]["approval"]["model"] == "forecast"
    with store.open_store(db) as con:
        approvals.set_require_approval(con, True, actor="admin-test", role="admin")
    try:
        assert main(["recommend", str(pid), "--db", str(db), "--json"]) == 1
        withheld = _lines(capsys)[0]
        assert withheld["error"].startswith("Output withheld") and "options" not in withheld
        assert withheld["approval"]["withheld"] is True
        assert main(["forecast", str(pid), "--db", str(db), "--json"]) == 1
        assert "survival" not in _lines(capsys)[0]
        assert main(["recommend", str(pid), "--db", str(db)]) == 1  # text: one line on stderr
        assert "Output withheld" in capsys.readouterr().err
        with store.open_store(db) as con:
            approvals.decide(
                con,
                model_name="treatment",
                model_version=version,
                version_id=out["approval"]["version_id"],
                decision="approved",
                comment="card, subgroups and calibration reviewed",
                actor="board-test",
                role="ethics_board",
            )
        assert main(["recommend", str(pid), "--db", str(db), "--json"]) == 0
        approved = _lines(capsys)[0]
        assert approved["approval"]["status"] == "approved" and approved["options"]
        assert main(["forecast", str(pid), "--db", str(db), "--json"]) == 1  # not approved itself
    finally:
        with store.open_store(db) as con:
            approvals.set_require_approval(con, False, actor="admin-test", role="admin")
            assert audit.verify(con).ok


def test_predict_json_has_the_approval_of_the_store_given(db, tmp_path, capsys):
    path = tmp_path / "brain.dcm"
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(2), True, lesion_diameter_mm=20.0),
        path,
        patient_id="X",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20250101",
    )
    capsys.readouterr()
    assert main(["predict", str(path), "--db", str(db), "--json"]) == 0
    out = _lines(capsys)[0]
    assert out["approval"]["model"] == "brain_mri" and out["approval"]["status"] == "not reviewed"
    assert main(["predict", str(path), "--db", str(tmp_path / "none.duckdb"), "--json"]) == 0
    assert _lines(capsys)[0]["approval"]["status"] == "unknown"


def test_drift_prints_one_object_per_monitor(db, capsys):
    capsys.readouterr()
    assert main(["drift", "--db", str(db), "--json"]) == 0
    reports = _lines(capsys)
    kinds = {(r["model"], r["monitored"]) for r in reports}
    assert {
        ("treatment", "inputs"),
        ("treatment", "calibration"),
        ("mammography", "inputs"),
    } <= kinds
    covariates = next(
        r for r in reports if r["monitored"] == "inputs" and r["model"] == "treatment"
    )
    assert covariates["tests_run"] > 0 and covariates["alerts"] == []
    assert all("threshold" in a for r in reports for a in r["alerts"])


def test_drift_on_a_missing_store_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["drift", "--db", str(tmp_path / "nope.duckdb")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_worklist_honours_the_sign_off_of_imaging_reads_and_of_the_forecast(db, capsys):
    """`oncolens worklist`: a suspicious read of an imaging model not approved is quoted with a mark;
    when approval is required it leaves act now and is not quoted, and the by-risk bucket is not
    ordered by the withheld forecast (its risks are left out)."""
    # lazy: only this test ranks the worklist again
    from analytics.worklist import stored as worklist_store

    with store.open_store(db) as con:
        as_of = worklist_store.as_of_date(con)
        pid = int(
            con.execute(
                f"SELECT min(person_id) FROM {worklist_store.ENTRY_TABLE} WHERE event_at IS NULL "
                "AND (due_date IS NULL OR due_date > ?)",
                [as_of],
            ).fetchall()[0][0]
        )
        finding = int(
            con.execute("SELECT coalesce(max(finding_id), 0) + 1 FROM ai_finding").fetchall()[0][0]
        )
        con.execute(
            "INSERT INTO ai_finding VALUES (?, ?, NULL, 'mammography', '1.0.0', 'malignant', 0.83, 9.0, ?, NULL)",
            [finding, pid, np.datetime64(as_of) - np.timedelta64(5, "D")],
        )
        worklist_store.refresh(con, worklist_store.clinic_model(db))

    def row() -> tuple[dict, dict]:
        capsys.readouterr()
        assert main(["worklist", "--db", str(db), "--json", "--limit", "1000"]) == 0
        out = json.loads(capsys.readouterr().out)
        return next(r for r in out["rows"] if r["person_id"] == pid), out

    mine, out = row()
    assert mine["bucket"] == "act_now" and "(model not approved)" in mine["reason"]
    assert out["signoff"]["approval_required"] is False and not out["signoff"]["risk_withheld"]
    with store.open_store(db) as con:
        approvals.set_require_approval(con, True, actor="admin-test")
    try:
        mine, out = row()
        assert mine["bucket"] != "act_now" and "AI read “" not in mine["reason"]
        assert "withheld pending the ethics board's sign-off" in mine["reason"]
        assert out["signoff"]["risk_withheld"] is True
        assert out["signoff"]["by_risk_order"].startswith("next imaging due date")
        by_risk = [r for r in out["rows"] if r["bucket"] == "by_risk"]
        assert by_risk and all(r["risk_6m"] is None for r in by_risk)
        assert all(r["reason"].startswith("Forecast risk withheld") for r in by_risk)
        capsys.readouterr()
        assert main(["worklist", "--db", str(db)]) == 0
        err = capsys.readouterr().err
        assert "by risk is listed by next imaging due date" in err
        assert "AI reads of imaging versions not approved are withheld" in err
    finally:
        with store.open_store(db) as con:
            approvals.set_require_approval(con, False, actor="admin-test")


def test_approval_without_a_store_is_the_services_answer_without_its_imports(tmp_path):
    """`approval_of` answers a missing store itself (predict's parent process skips ~2 CPU-s of
    imports, issue 23): the same dict as ``dashboard.services.lifecycle.approval``."""
    # lazy: the services module is what the shortcut avoids importing; compared here
    from dashboard.cli import oversight
    from dashboard.services import lifecycle  # lazy: as above

    missing = tmp_path / "none" / "clinic.duckdb"
    for name, version in (("mammography", "1.2"), ("forecast", None)):
        assert oversight.approval_of(missing, name, version) == lifecycle.approval(
            missing, name, version
        )
    assert oversight.approval_of(missing, "mammography", "1.2")["status"] == "unknown"
