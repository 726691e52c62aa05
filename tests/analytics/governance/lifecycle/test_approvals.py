"""Sign-off: approvals and rejections are chained audit events; roles; the admin's setting; withholding."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics import store
from analytics.governance import audit, users
from analytics.governance.lifecycle import approvals


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "signoff.duckdb"
    with store.open_store(path, create=True) as con:
        users.add_user(con, "board1", "ethics_board", password="board-password-1")
        users.add_user(con, "onc1", "oncologist", password="oncologist-pass-1")
        users.add_user(con, "admin1", "admin", password="admin-password-1")
        audit.append_event(con, actor="onc1", action="view_patient", subject="1")
    return path


def _decide(con, decision: str, comment: str = "reviewed card and subgroups", **kw) -> int:
    args = {
        "model_name": "treatment",
        "model_version": "xgb_pseudo-abc",
        "version_id": "ab" * 32,
        "actor": "board1",
        "role": "ethics_board",
        **kw,
    }
    return approvals.decide(con, decision=decision, comment=comment, **args)


def test_approval_and_rejection_are_chained_events_and_the_latest_counts(db):
    with store.open_store(db) as con:
        assert (
            approvals.approval(con, "treatment", "xgb_pseudo-abc").status == approvals.NOT_REVIEWED
        )
        first = _decide(con, approvals.APPROVED)
        assert approvals.approval(con, "treatment", "xgb_pseudo-abc").approved
        second = _decide(con, approvals.REJECTED, "calibration slope drifted in 2026")
        status = approvals.approval(con, "treatment", "xgb_pseudo-abc")
        assert (status.status, status.event_id, status.decided_by) == ("rejected", second, "board1")
        assert status.comment == "calibration slope drifted in 2026"
        assert "rejected by the ethics board" in (status.banner() or "")
        rows = con.execute(
            "SELECT action, model_name, model_version, prev_hash, hash FROM audit_event "
            "WHERE event_id IN (?, ?) ORDER BY event_id",
            [first, second],
        ).fetchall()
        assert [r[0] for r in rows] == ["model_approved", "model_rejected"]
        assert rows[1][3] == rows[0][4]  # the rejection is chained onto the approval
        assert audit.verify(con).ok
        # another version is not covered by this one's decisions
        assert (
            approvals.approval(con, "treatment", "xgb_pseudo-def").status == approvals.NOT_REVIEWED
        )
        history = approvals.decision_history(con)
        assert list(history["decision"]) == ["rejected", "approved"]


def test_tampering_with_a_decision_breaks_the_chain(db):
    with store.open_store(db) as con:
        _decide(con, approvals.REJECTED, "not yet")
        event = _decide(con, approvals.APPROVED)
        _decide(con, approvals.APPROVED, "second look", model_version="other")
        assert audit.verify(con).ok
        # turn the approval into a rejection by hand: the status follows the edit, the chain does not
        con.execute("UPDATE audit_event SET action = 'model_rejected' WHERE event_id = ?", [event])
        result = audit.verify(con)
        assert not result.ok and result.first_bad == event
        assert "changed after it was written" in (result.problem or "")


def test_removing_a_rejection_breaks_the_chain(db):
    with store.open_store(db) as con:
        event = _decide(con, approvals.REJECTED, "too few events")
        _decide(
            con, approvals.APPROVED, "other model", model_name="mammography", model_version="1.0.0"
        )
        con.execute("DELETE FROM audit_event WHERE event_id = ?", [event])
        result = audit.verify(con)
        assert not result.ok and result.first_bad == event + 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"actor": "onc1", "role": "ethics_board"},
            "only a member of the ethics board",
        ),  # stored role wins
        ({"actor": "someone", "role": "oncologist"}, "only a member of the ethics board"),
        ({"comment": "   "}, "needs a comment"),
        ({"decision": "maybe"}, "a decision is one of"),
        ({"comment": "x" * (approvals.COMMENT_MAX + 1)}, "longer than"),
    ],
)
def test_refused_decisions_write_nothing(db, kw, message):
    with store.open_store(db) as con:
        before = con.execute("SELECT count(*) FROM audit_event").fetchall()[0][0]
        decision = kw.pop("decision", approvals.APPROVED)
        with pytest.raises(approvals.ApprovalError, match=message):
            _decide(con, decision, **kw)
        assert con.execute("SELECT count(*) FROM audit_event").fetchall()[0][0] == before


def test_a_deactivated_board_member_cannot_sign_off(db):
    with store.open_store(db) as con:
        con.execute("UPDATE app_user SET deactivated_at = now() WHERE username = 'board1'")
        with pytest.raises(approvals.ApprovalError):
            _decide(con, approvals.APPROVED)


def test_the_admin_setting_is_audited_and_withholds_unapproved_output(db):
    with store.open_store(db) as con:
        with pytest.raises(approvals.ApprovalError, match="administrator"):
            approvals.set_require_approval(con, True, actor="board1", role="ethics_board")
        assert not approvals.require_approval(con)
        assert not approvals.approval(con, "treatment", "xgb_pseudo-abc").withheld
        event = approvals.set_require_approval(con, True, actor="admin1", role="admin")
        assert approvals.require_approval(con)
        details = con.execute(
            "SELECT action, details FROM audit_event WHERE event_id = ?", [event]
        ).fetchall()[0]
        assert details[0] == "setting_changed" and '"to":true' in details[1]
        status = approvals.approval(con, "treatment", "xgb_pseudo-abc")
        assert status.withheld and (status.banner() or "").startswith("Output withheld")
        assert status.to_json()["withheld"] is True
        _decide(con, approvals.APPROVED)
        approved = approvals.approval(con, "treatment", "xgb_pseudo-abc")
        assert not approved.withheld and approved.banner() is None
        _decide(con, approvals.REJECTED, "withdrawn")
        assert approvals.approval(con, "treatment", "xgb_pseudo-abc").withheld
        approvals.set_require_approval(con, False, actor="admin1", role="admin")
        assert not approvals.approval(con, "treatment", "xgb_pseudo-abc").withheld
        assert audit.verify(con).ok
