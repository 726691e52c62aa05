"""dashboard.resources: the clinical data version follows the ethics board's sign-off, so the
Patient page's cached record drops an AI measurement of withheld weights as soon as approval is
required, and gets it back when the board approves them (a decision is an audit event, which the
data version otherwise leaves out; a setting change keeps the setting table's row count)."""

from __future__ import annotations

import shutil
from pathlib import Path

from analytics import store
from analytics.governance import users
from analytics.governance.lifecycle import approvals
from dashboard import resources

HELD = ("ct_lesion", "1.0.0", "b" * 64)


def _ai_values(db: Path, pid: int) -> tuple[str, set[float]]:
    ref = resources.store_status(db).ref
    assert ref is not None
    record = resources.patient_summary(ref, pid).measurements
    return ref.version, set(record.loc[record["source"] == "ai", "value"])


def test_the_patient_record_follows_the_setting_and_the_decisions(demo_db: Path, tmp_path: Path):
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db) as con:
        pid, day = con.execute(
            "SELECT person_id, max(measurement_date) FROM measurement GROUP BY person_id "
            "ORDER BY person_id LIMIT 1"
        ).fetchall()[0]
        first = con.execute("SELECT max(measurement_id) + 1 FROM measurement").fetchall()[0][0]
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, "
            "unit, source, study_uid, model_name, model_version, weights_sha256) "
            "VALUES (?, ?, ?, 'lesion_longest_diameter', 57.5, 'mm', 'ai', NULL, ?, ?, ?)",
            [first, pid, day, *HELD],
        )
        users.add_user(con, "board1", "ethics_board", password="board-password-1")
        users.add_user(con, "admin1", "admin", password="admin-password-1")
    shown_version, shown = _ai_values(db, pid)
    assert shown == {57.5}  # approval not required: read like any reading
    with store.open_store(db) as con:
        approvals.set_require_approval(con, True, actor="admin1")
    held_version, held = _ai_values(db, pid)
    assert held_version != shown_version and held == set()
    with store.open_store(db) as con:
        name, version, sha = HELD
        approvals.decide(
            con, model_name=name, model_version=version, version_id=sha,
            decision=approvals.APPROVED, comment="read the card", actor="board1",
        )  # fmt: skip
    approved_version, approved = _ai_values(db, pid)
    assert approved_version != held_version and approved == {57.5}
