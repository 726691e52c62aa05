"""Sign-off: the ethics board approves or rejects a model version; the admin may require approval.

Why the decision lives in the audit trail and nowhere else: a sign-off is worth what its record
is worth. Each decision is one chained event (``model_approved`` / ``model_rejected``, with the
model's name and version in the event's own hashed columns and the comment and version id
(sha256 of the weights) in its details), so editing, removing or reordering a decision breaks
``audit verify``. The latest decision for a version is its status; a version nobody decided on
is "not reviewed". A new version (retrained weights) starts unreviewed: approval is of weights,
not of a name.

The admin's setting ``require_model_approval`` (table ``governance_setting``, changed in the
same transaction as its own chained ``setting_changed`` event) turns the banner on unapproved
output into withholding: pages, the report and the CLI show a message instead of the output.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb
import pandas as pd

from analytics.governance import audit

APPROVED, REJECTED, NOT_REVIEWED = "approved", "rejected", "not reviewed"
DECISION_ACTIONS = {APPROVED: "model_approved", REJECTED: "model_rejected"}
BOARD_ROLES = frozenset({"ethics_board"})  # who signs off (analytics.governance.users.ROLES)
SETTING_ROLES = frozenset({"admin"})  # who changes the setting
REQUIRE_APPROVAL = "require_model_approval"
COMMENT_MAX = 2000


class ApprovalError(ValueError):
    """A sign-off or setting change that is not allowed (role, empty comment, unknown decision)."""


@dataclass(frozen=True)
class Approval:
    """A model version's sign-off status, and whether its output is withheld.

    ``status``: approved, rejected or not reviewed (the latest decision); ``required``: the admin
    requires approval before any output is shown; ``withheld``: required and not approved.
    """

    model_name: str
    model_version: str
    status: str
    required: bool
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    comment: str | None = None
    event_id: int | None = None

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    @property
    def withheld(self) -> bool:
        return self.required and not self.approved

    def banner(self) -> str | None:
        """What a screen says above this version's output (None when approved)."""
        if self.approved:
            return None
        who = (
            f" by {self.decided_by} on {self.decided_at:%Y-%m-%d}"
            if self.decided_by and self.decided_at
            else ""
        )
        state = (
            f"was rejected by the ethics board{who}"
            + (f": “{self.comment}”" if self.comment else "")
            if self.status == REJECTED
            else "has not been approved by the ethics board"
        )
        if self.withheld:
            return (
                f"Output withheld: the {self.model_name} model (version {self.model_version}) {state}, and "
                "this installation shows output only of approved versions (admin setting)."
            )
        return (
            f"The {self.model_name} model (version {self.model_version}) {state}. "
            "Read its output with that in mind."
        )

    def to_json(self) -> dict:
        """The ``approval`` key of the CLI's JSON."""
        return {
            "model": self.model_name,
            "model_version": self.model_version,
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "comment": self.comment,
            "event_id": self.event_id,
            "required": self.required,
            "withheld": self.withheld,
            "message": self.banner(),
        }


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()[0][0]
    )


def require_approval(con: duckdb.DuckDBPyConnection) -> bool:
    """The admin's setting (False where never set, or on a store before schema version 12)."""
    if not _has_table(con, "governance_setting"):
        return False
    row = con.execute(
        "SELECT value FROM governance_setting WHERE key = ?", [REQUIRE_APPROVAL]
    ).fetchall()
    return bool(row) and json.loads(row[0][0]) is True


def set_require_approval(
    con: duckdb.DuckDBPyConnection, value: bool, *, actor: str, role: str | None
) -> int:
    """Change the setting (admin only) with its chained ``setting_changed`` event; returns the event id."""
    if role not in SETTING_ROLES:
        raise ApprovalError("only an administrator changes whether approval is required")
    before = require_approval(con)
    with audit.chained_transaction(con):
        con.execute(
            "INSERT OR REPLACE INTO governance_setting VALUES (?, ?, ?, ?)",
            [
                REQUIRE_APPROVAL,
                json.dumps(bool(value)),
                actor,
                dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            ],
        )
        return audit.append_event(
            con,
            actor=actor,
            role=role,
            action="setting_changed",
            details={"setting": REQUIRE_APPROVAL, "from": before, "to": bool(value)},
        )


def decide(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model_version: str,
    decision: str,
    comment: str,
    actor: str,
    role: str | None,
    version_id: str | None = None,
) -> int:
    """Record a board member's approval or rejection of one model version; returns the event id.

    Refused (``ApprovalError``) unless the role is the ethics board's, the decision is
    approved/rejected and the comment says something. Where the actor has an account, its
    stored role and state count, not the role claimed.
    """
    if decision not in DECISION_ACTIONS:
        raise ApprovalError(f"a decision is one of {', '.join(DECISION_ACTIONS)}, not {decision!r}")
    text = (comment or "").strip()
    if not text:
        raise ApprovalError("say why: an approval or a rejection needs a comment")
    if len(text) > COMMENT_MAX:
        raise ApprovalError(f"the comment is longer than {COMMENT_MAX} characters")
    if _has_table(con, "app_user"):
        row = con.execute(
            "SELECT role, deactivated_at IS NULL FROM app_user WHERE username = ?", [actor]
        ).fetchall()
        if row:
            role = row[0][0] if row[0][1] else None
    if role not in BOARD_ROLES:
        raise ApprovalError("only a member of the ethics board approves or rejects a model version")
    return audit.append_event(
        con,
        actor=actor,
        role=role,
        action=DECISION_ACTIONS[decision],
        model_name=str(model_name),
        model_version=str(model_version),
        details={"decision": decision, "comment": text, "version_id": version_id},
    )


def _decisions_sql(where: str) -> str:
    return (
        "SELECT event_id, occurred_at, actor, role, action, model_name, model_version, details "
        "FROM audit_event WHERE action IN ('model_approved', 'model_rejected')"
        + where
        + " ORDER BY event_id DESC"
    )


def approval(con: duckdb.DuckDBPyConnection, model_name: str, model_version: str) -> Approval:
    """The latest decision on this version (``not reviewed`` when none) and the setting."""
    required = require_approval(con)
    rows = con.execute(
        _decisions_sql(" AND model_name = ? AND model_version = ?") + " LIMIT 1",
        [str(model_name), str(model_version)],
    ).fetchall()
    if not rows:
        return Approval(str(model_name), str(model_version), NOT_REVIEWED, required)
    event_id, at, actor, _, action, _, _, details = rows[0]
    status = APPROVED if action == DECISION_ACTIONS[APPROVED] else REJECTED
    comment = json.loads(details or "{}").get("comment")
    return Approval(
        str(model_name), str(model_version), status, required, actor, at, comment, int(event_id)
    )


def decision_history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every sign-off decision, newest first: event, when, who, model, version, decision, comment."""
    rows = con.execute(_decisions_sql("")).fetchall()
    out = [
        {
            "event_id": int(r[0]),
            "decided_at": r[1],
            "decided_by": r[2],
            "model": r[5],
            "version": r[6],
            "decision": APPROVED if r[4] == DECISION_ACTIONS[APPROVED] else REJECTED,
            "comment": json.loads(r[7] or "{}").get("comment"),
            "version_id": json.loads(r[7] or "{}").get("version_id"),
        }
        for r in rows
    ]
    return pd.DataFrame(
        out,
        columns=[
            "event_id",
            "decided_at",
            "decided_by",
            "model",
            "version",
            "decision",
            "comment",
            "version_id",
        ],
    )
