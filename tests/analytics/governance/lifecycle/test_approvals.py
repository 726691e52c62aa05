"""Sign-off: approvals and rejections are chained audit events bound to the weights' sha256; roles
from stored accounts only; the admin's setting; withholding."""

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


SHA = "ab" * 32  # the weights decided on in these tests
OTHER_SHA = "cd" * 32  # retrained weights under the same name and version string


def _status(con, version: str = "xgb_pseudo-abc", sha: str | None = SHA, name: str = "treatment"):
    return approvals.approval(con, name, version, sha)


def _decide(con, decision: str, comment: str = "reviewed card and subgroups", **kw) -> int:
    args = {
        "model_name": "treatment",
        "model_version": "xgb_pseudo-abc",
        "version_id": SHA,
        "actor": "board1",
        "role": "ethics_board",
        **kw,
    }
    return approvals.decide(con, decision=decision, comment=comment, **args)


def test_approval_and_rejection_are_chained_events_and_the_latest_counts(db):
    with store.open_store(db) as con:
        assert _status(con).status == approvals.NOT_REVIEWED
        first = _decide(con, approvals.APPROVED)
        assert _status(con).approved
        second = _decide(con, approvals.REJECTED, "calibration slope drifted in 2026")
        status = _status(con)
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
        assert _status(con, "xgb_pseudo-def", OTHER_SHA).status == approvals.NOT_REVIEWED
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
        # a claimed board role without an account is not enough
        ({"actor": "nobody", "role": "ethics_board"}, "active account"),
        ({"version_id": None}, "version_id must be their sha256"),
        ({"version_id": "1.0.0"}, "version_id must be their sha256"),
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
        assert not _status(con).withheld
        event = approvals.set_require_approval(con, True, actor="admin1", role="admin")
        assert approvals.require_approval(con)
        details = con.execute(
            "SELECT action, details FROM audit_event WHERE event_id = ?", [event]
        ).fetchall()[0]
        assert details[0] == "setting_changed" and '"to":true' in details[1]
        status = _status(con)
        assert status.withheld and (status.banner() or "").startswith("Output withheld")
        assert status.to_json()["withheld"] is True
        _decide(con, approvals.APPROVED)
        approved = _status(con)
        assert not approved.withheld and approved.banner() is None
        _decide(con, approvals.REJECTED, "withdrawn")
        assert _status(con).withheld
        approvals.set_require_approval(con, False, actor="admin1", role="admin")
        assert not _status(con).withheld
        assert audit.verify(con).ok


def test_a_decision_binds_to_the_weights_not_to_the_version_string(db):
    """Imaging models keep "1.0.0" when retrained: an approval of old weights must not carry over."""
    with store.open_store(db) as con:
        event = _decide(con, approvals.APPROVED, model_name="mammography", model_version="1.0.0")
        assert _status(con, "1.0.0", SHA, "mammography").approved
        moved = _status(
            con, "1.0.0", OTHER_SHA, "mammography"
        )  # same name and version, new weights
        assert moved.status == approvals.NOT_REVIEWED and not moved.approved
        assert moved.other is not None and moved.other.event_id == event
        assert moved.status_text == (
            f"approved for different weights (sha {SHA[:12]}…); this version is not approved"
        )
        banner = moved.banner() or ""
        assert f"approved for different weights (sha {SHA[:12]}…)" in banner
        assert f"this version (sha {OTHER_SHA[:12]}…) is not approved" in banner
        assert moved.to_json()["other_decision"]["version_id"] == SHA
        # another model with the same weights id is a different model
        assert not _status(con, "1.0.0", SHA, "brain_mri").approved
        # unknown weights (no card for that version): nothing applies
        unknown = _status(con, "0.9.0", None, "mammography")
        assert unknown.status == approvals.NOT_REVIEWED
        assert "could not be identified" in (unknown.banner() or "")
        approvals.set_require_approval(con, True, actor="admin1")
        assert _status(con, "1.0.0", OTHER_SHA, "mammography").withheld
        assert not _status(con, "1.0.0", SHA, "mammography").withheld
        # the new weights get their own decision; the old weights keep theirs
        _decide(
            con,
            approvals.REJECTED,
            "new weights fail the subgroup audit",
            model_name="mammography",
            model_version="1.0.0",
            version_id=OTHER_SHA,
        )
        assert _status(con, "1.0.0", OTHER_SHA, "mammography").status == approvals.REJECTED
        assert _status(con, "1.0.0", SHA, "mammography").approved
        assert audit.verify(con).ok


def test_a_decision_recorded_without_weights_matches_none_and_says_so(db):
    """Decisions from before version ids were required carry none: they apply to no weights."""
    with store.open_store(db) as con:
        audit.append_event(  # as the earlier code wrote it: no version_id in the details
            con,
            actor="board1",
            role="ethics_board",
            action="model_approved",
            model_name="brain_mri",
            model_version="1.0.0",
            details={"decision": "approved", "comment": "looked fine"},
        )
        status = _status(con, "1.0.0", SHA, "brain_mri")
        assert status.status == approvals.NOT_REVIEWED and status.other is not None
        assert status.other.version_id is None
        assert status.status_text.startswith("approved with no weights recorded")
        assert "recorded before decisions named their weights" in (status.banner() or "")
        history = approvals.decision_history(con)
        assert history["version_id"].isna().all()


def test_the_setting_trusts_the_stored_role_not_the_claimed_one(db):
    with store.open_store(db) as con:
        for actor, claimed in (("onc1", "admin"), ("ghost", "admin"), ("board1", "admin")):
            with pytest.raises(approvals.ApprovalError, match="active admin account"):
                approvals.set_require_approval(con, True, actor=actor, role=claimed)
        assert not approvals.require_approval(con)
        con.execute("UPDATE app_user SET deactivated_at = now() WHERE username = 'admin1'")
        with pytest.raises(approvals.ApprovalError):
            approvals.set_require_approval(con, True, actor="admin1", role="admin")
        con.execute("UPDATE app_user SET deactivated_at = NULL WHERE username = 'admin1'")
        event = approvals.set_require_approval(con, True, actor="admin1", role="oncologist")
        role = con.execute("SELECT role FROM audit_event WHERE event_id = ?", [event]).fetchall()
        assert role[0][0] == "admin"  # the stored role is what the trail records
