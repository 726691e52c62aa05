"""analytics.worklist.review: what changed since the last review, counted by hand on a tiny clinic."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from analytics.governance import audit
from analytics.worklist import review as worklist_review


def _finding(con, person_id: int, finding_id: int, created_at: datetime) -> None:
    con.execute(
        "INSERT INTO ai_finding VALUES (?, ?, NULL, 'mammography', '1', 'malignant', 0.8, 12.0, ?, NULL)",
        [finding_id, person_id, created_at],
    )


def _review(con, person_id: int, at: datetime, who: str) -> None:
    con.execute(
        "INSERT INTO worklist_review (person_id, reviewed_at, reviewed_by, role) VALUES (?, ?, ?, 'care_team')",
        [person_id, at, who],
    )


def test_changes_count_what_came_after_the_latest_review(tiny):
    for pid in (1, 2, 3):
        tiny.person(pid)
    tiny.lesion(1, ("2024-01-10", 20.0), ("2024-03-10", 22.0), ("2024-06-10", 30.0))
    tiny.lesion(2, ("2024-01-10", 20.0), ("2024-02-10", 15.0))
    tiny.measurement(1, "2024-06-11", "ca15_3", 40.0, "U/mL")  # not a lesion reading
    con = tiny.con
    _review(con, 1, datetime(2024, 2, 1, 9), "amy")
    _review(con, 1, datetime(2024, 4, 1, 9), "ben")  # the latest counts
    _finding(con, 1, 1, datetime(2024, 3, 30))  # before it: not new
    _finding(con, 1, 2, datetime(2024, 4, 1, 10))  # an hour after: new
    _finding(con, 3, 3, datetime(2024, 1, 1))
    out = worklist_review.changes_since_review(con, [3, 1, 2])
    assert out["person_id"].tolist() == [3, 1, 2]  # the page's order kept
    one = out.set_index("person_id").loc[1]
    assert one["reviewed_by"] == "ben" and one["last_reviewed_at"] == pd.Timestamp(2024, 4, 1, 9)
    assert one["new_readings"] == 1 and one["new_ai_findings"] == 1
    never = out.set_index("person_id").loc[2]
    assert (
        pd.isna(never["last_reviewed_at"])
        and never["new_readings"] == 2
        and never["new_ai_findings"] == 0
    )
    assert out.set_index("person_id").loc[3, "new_ai_findings"] == 1
    assert worklist_review.changes_since_review(con, []).empty


def test_new_progression_is_flagged_until_someone_reviews_after_it(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2024-01-10", 20.0), ("2024-06-10", 30.0))
    rows = pd.DataFrame({"person_id": [1], "progression_date": [pd.Timestamp("2024-06-10")]})
    assert worklist_review.with_changes(tiny.con, rows)["new_progression"].tolist() == [
        True
    ]  # never reviewed
    _review(tiny.con, 1, datetime(2024, 5, 1), "amy")
    assert worklist_review.with_changes(tiny.con, rows)["new_progression"].tolist() == [
        True
    ]  # progressed after
    _review(tiny.con, 1, datetime(2024, 6, 10, 15), "amy")
    assert worklist_review.with_changes(tiny.con, rows)["new_progression"].tolist() == [
        False
    ]  # seen that day


def test_marking_a_review_writes_the_row_and_a_chained_audit_event(tiny):
    tiny.person(7)
    before = datetime.utcnow() - timedelta(seconds=5)
    at = worklist_review.mark_reviewed(tiny.con, 7, "careteam", "care_team")
    assert at >= before and worklist_review.last_review(tiny.con, 7) == (at, "careteam")
    event = tiny.con.execute(
        "SELECT actor, role, action, subject FROM audit_event ORDER BY event_id DESC LIMIT 1"
    ).fetchone()
    assert event == ("careteam", "care_team", worklist_review.ACTION, "7")
    assert audit.verify(tiny.con).ok
    assert worklist_review.last_review(tiny.con, 8) is None
    with pytest.raises(worklist_review.ReviewError, match="no patient with id 999"):
        worklist_review.mark_reviewed(tiny.con, 999, "careteam")
    with pytest.raises(worklist_review.ReviewError, match="who reviewed"):
        worklist_review.mark_reviewed(tiny.con, 7, " ")
    assert (
        tiny.con.execute("SELECT count(*) FROM worklist_review").fetchone()[0] == 1
    )  # nothing half-written


def test_a_store_without_the_review_table_reads_as_never_reviewed(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2024-01-10", 20.0))
    tiny.con.execute(
        "DROP TABLE worklist_review"
    )  # as a version-5 store opened read-only, before its migration
    out = worklist_review.changes_since_review(tiny.con, [1])
    assert pd.isna(out.loc[0, "last_reviewed_at"]) and out.loc[0, "new_readings"] == 1
    assert worklist_review.last_review(tiny.con, 1) is None


def test_a_review_keeps_its_note_and_assignee_and_audits_neither_text(tiny):
    """The note stays in worklist_review; the audit event has its hash and the assignee."""
    import hashlib

    tiny.person(7)
    tiny.con.execute(
        "INSERT INTO app_user (username, role, password_hash, email, created_at) "
        "VALUES ('nurse', 'care_team', NULL, 'n@x.org', now()::TIMESTAMP), "
        "('board', 'ethics_board', NULL, 'b@x.org', now()::TIMESTAMP)"
    )
    worklist_review.mark_reviewed(
        tiny.con, 7, "careteam", "care_team", note="  called her, CT booked  ", assignee="nurse"
    )
    row = tiny.con.execute("SELECT note, assignee FROM worklist_review").fetchone()
    assert row == ("called her, CT booked", "nurse")
    details = tiny.con.execute(
        "SELECT details FROM audit_event WHERE action = ? ORDER BY event_id DESC LIMIT 1",
        [worklist_review.ACTION],
    ).fetchone()[0]
    assert "called her" not in details and "nurse" in details
    assert hashlib.sha256(b"called her, CT booked").hexdigest() in details
    assert worklist_review.assignable(tiny.con) == ["nurse"]
    with pytest.raises(worklist_review.ReviewError, match="no account named"):
        worklist_review.mark_reviewed(tiny.con, 7, "careteam", assignee="nobody")
    with pytest.raises(worklist_review.ReviewError, match="does not work the worklist"):
        worklist_review.mark_reviewed(tiny.con, 7, "careteam", assignee="board")
    with pytest.raises(worklist_review.ReviewError, match="at most"):
        worklist_review.mark_reviewed(tiny.con, 7, "careteam", note="x" * 281)
    assert tiny.con.execute("SELECT count(*) FROM worklist_review").fetchone()[0] == 1
    assert audit.verify(tiny.con).ok


def _volume_read(con, person_id: int, series: str, read_at: datetime, refused=None) -> None:
    """A 3D read of one series (``ai_volume_read``, schema 14), accepted or refused."""
    con.execute(
        "INSERT INTO ai_volume_read (series_uid, person_id, study_uid, study_date, modality, "
        "model_name, model_version, label, probability, lesions, refused, guard_score, "
        "guard_threshold, input_check, read_at) VALUES (?, ?, 'st', DATE '2024-03-01', 'MR', "
        "'brain_mets_3d', '1.1.0', ?, 0.9, 1, ?, 0.5, 1.5, '{}', ?)",
        [series, person_id, None if refused else "lesion", refused, read_at],
    )


def test_3d_reads_of_a_series_count_as_ai_reads_since_the_review(tiny):
    """Issue 21 leftovers: a series read in 3D after the review is new, like a 2D read; one
    before it is not, and a read the input check refused is not a read (as for 2D)."""
    from analytics.worklist.changes import since_last_look  # the Patient page's list of them

    tiny.person(1)
    tiny.person(2)
    con = tiny.con
    _review(con, 1, datetime(2024, 4, 1, 9), "amy")
    _volume_read(con, 1, "s-before", datetime(2024, 3, 31))
    _volume_read(con, 1, "s-after", datetime(2024, 4, 2))
    _volume_read(con, 1, "s-refused", datetime(2024, 4, 3), refused="outside the training data")
    _finding(con, 1, 1, datetime(2024, 4, 4))  # a 2D read after it too
    _volume_read(con, 2, "s-never", datetime(2023, 1, 1))  # never reviewed: every read is new
    out = worklist_review.changes_since_review(con, [1, 2]).set_index("person_id")
    assert out.loc[1, "new_ai_findings"] == 2 and out.loc[2, "new_ai_findings"] == 1
    changes = since_last_look(con, 1, datetime(2024, 4, 1, 9), datetime(2024, 6, 1).date())
    assert changes.counts["ai_reads"] == 2
    assert changes.ai_reads["model_name"].tolist() == ["mammography", "brain_mets_3d"]
    assert changes.ai_reads["predicted_class"].tolist() == ["malignant", "lesion"]
    # a store before version 14 opened read-only has no 3D reads: counted as none, no error
    con.execute("DROP TABLE ai_volume_lesion")
    con.execute("DROP TABLE ai_volume_read")
    assert worklist_review.changes_since_review(con, [1]).loc[0, "new_ai_findings"] == 1
    assert (
        since_last_look(con, 1, datetime(2024, 4, 1, 9), datetime(2024, 6, 1).date()).counts[
            "ai_reads"
        ]
        == 1
    )
