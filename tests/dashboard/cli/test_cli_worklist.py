"""`oncolens worklist` and the demo's ranking: the stored worklist, with the model that `demo` trained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from analytics import store
from analytics.worklist import stored as worklist_store
from dashboard.cli.main import main
from tests.dashboard.cli.conftest import copy_clinic
from tests.dashboard.cli.test_cli import oncolens


def test_demo_ranks_the_worklist_with_the_model_it_trained(demo_150, tmp_path):
    # `oncolens demo --patients 150 --images 0 --json`, run once for this and test_cli_demo_model
    db = copy_clinic(Path(demo_150["db"]), tmp_path)  # `worklist` may audit: a copy of its own
    out = demo_150["summary"]
    version = out["treatment_model"]["model_version"]
    assert out["worklist"]["mode"] == "full" and out["worklist"]["model_version"] == version
    r = oncolens("worklist", "--db", str(db), "--json", "--limit", "1000")
    assert r.returncode == 0, r.stderr
    page = json.loads(r.stdout)
    assert page["fresh"] and page["model_version"] == version and page["stale_reasons"] == []
    assert len(page["rows"]) == page["total"] == out["worklist"]["entries"]
    assert {row["risk_parts"] for row in page["rows"]} <= {
        "tumour+survival",
        "tumour",
        "survival",
        "none",
    }
    # the model's recurrence part, for patients whose disease has not recurred (issue 17: their
    # lesions are not followed, so their risk is the recurrence part alone)
    assert {"survival", "tumour+survival"} & {row["risk_parts"] for row in page["rows"]}


def test_worklist_says_when_it_is_stale_and_refresh_makes_it_current(demo_db, tmp_path, capsys):
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db) as con:
        con.execute("UPDATE clinic_metadata SET value = '2026-09-30' WHERE key = 'data_cutoff'")
    assert main(["worklist", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert "stale: its risks are for 2026-06-30; today is 2026-09-30" in captured.err
    assert "oncolens worklist --refresh" in captured.err and "patients on the list" in captured.out
    assert main(["worklist", "--db", str(db), "--refresh", "--progression", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["fresh"] and page["refreshed"]["mode"] == "full"
    assert all(row["progression"] for row in page["rows"])
    with store.open_store(db, read_only=True) as con:
        assert worklist_store.status(con, None).fresh
        assert page["total"] == worklist_store.read_page(con, only_progression=True).total


def test_an_ingested_ai_reading_moves_her_row_at_once(demo_db, tmp_path, capsys):
    import numpy as np
    from pydicom.uid import generate_uid

    from models.training import synthetic as phantoms
    from models.training.synthetic_dicom import write_phantom_dicom

    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db, read_only=True) as con:
        pid, mrn, n, full_at = con.execute(
            # a followed lesion with a small nadir on her line, read before the new image's date:
            # the AI's outline (about 20 mm on this phantom) is then a RECIST progression
            "SELECT person_id, mrn, n_measurements, full_refresh_at FROM worklist_entry, worklist_state "
            "WHERE n_measurements >= 2 AND nadir_mm <= 10 AND NOT progression "
            "AND latest_date < DATE '2026-06-20' ORDER BY rank DESC LIMIT 1"
        ).fetchone()
    f = tmp_path / "in" / "mg.dcm"
    write_phantom_dicom(
        phantoms.mammogram(np.random.default_rng(1), "malignant", lesion_diameter_mm=60.0),
        f,
        patient_id=mrn,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20260620",
    )
    assert main(["ingest", str(f), "--db", str(db)]) == 0
    capsys.readouterr()
    with store.open_store(db, read_only=True) as con:
        assert worklist_store.status(con, None).fresh
        row = con.execute(
            "SELECT n_measurements, latest_date FROM worklist_entry WHERE person_id = ?", [pid]
        ).fetchone()
        state = con.execute("SELECT full_refresh_at, computed_at FROM worklist_state").fetchone()
    assert row[0] == n + 1 and str(row[1]) == "2026-06-20"
    assert state[0] == full_at < state[1]  # an increment, not a full ranking
    # her new 60 mm reading (and the AI read, when it calls the image suspicious): act now, and why
    assert (
        main(["worklist", "--db", str(db), "--json", "--bucket", "act_now", "--limit", "1000"]) == 0
    )
    page = json.loads(capsys.readouterr().out)
    mine = [r for r in page["rows"] if r["person_id"] == pid]
    assert mine and mine[0]["bucket"] == "act_now"
    assert "Progression 2026-06-20" in mine[0]["reason"] or "AI read" in mine[0]["reason"]


def test_worklist_json_rows_carry_bucket_and_reason_and_never_none(demo_db, tmp_path, capsys):
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    assert main(["worklist", "--db", str(db), "--json", "--limit", "1000"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert set(page["buckets"]) == {"act_now", "due", "by_risk"}
    assert sum(page["buckets"].values()) == page["total"] == len(page["rows"])
    order = {"act_now": 0, "due": 1, "by_risk": 2}
    assert [order[r["bucket"]] for r in page["rows"]] == sorted(
        order[r["bucket"]] for r in page["rows"]
    )
    for row in page["rows"]:
        assert row["reason"] and row["reason"].endswith(".") and "None" not in row["reason"]
        assert "nan" not in row["reason"].lower().split()
    act = [r for r in page["rows"] if r["bucket"] == "act_now"]
    assert act and all("not reviewed yet" in r["reason"] for r in act)
    assert main(["worklist", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "act now" in text and "None" not in text


def test_reading_a_store_older_than_this_oncolens_says_so_and_a_refresh_brings_it_forward(
    demo_db, tmp_path, capsys
):
    """Reading never migrates: a store written by the previous version (no
    ``ai_finding.weights_sha256``, schema 12) read by ``oncolens worklist`` used to end in DuckDB's
    binder error; it now says what is wrong and which command fixes it."""
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db) as con:
        con.execute("ALTER TABLE ai_finding DROP COLUMN weights_sha256")
        # later versions' tables stay: their migrations create them only if they do not exist
        con.execute("DELETE FROM schema_version WHERE version >= 13")
    assert main(["worklist", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert f"schema version 12, older than this OncoLens ({store.SCHEMA_VERSION})" in err
    assert "Binder Error" not in err and "oncolens worklist --refresh" in err
    assert main(["worklist", "--db", str(db), "--refresh"]) == 0
    assert main(["worklist", "--db", str(db)]) == 0


def test_a_reader_that_stops_early_gets_no_traceback(demo_db):
    """`oncolens worklist | head -1`: the pipe closes under the command; no BrokenPipeError trace
    (every row: more than the pipe's 64 KiB buffer, so the command is still writing)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dashboard.cli.main",
            "worklist",
            "--db",
            str(demo_db),
            "--json",
            "--limit",
            "100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()  # the reader is gone before the command has written everything
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err
