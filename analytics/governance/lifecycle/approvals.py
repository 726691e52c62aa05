"""Sign-off: the ethics board approves or rejects a model version; the admin may require approval.

Why the decision lives in the audit trail and nowhere else: a sign-off is worth what its record
is worth. Each decision is one chained event (``model_approved`` / ``model_rejected``, with the
model's name and version in the event's own hashed columns and the comment and version id
(sha256 of the weights) in its details), so editing, removing or reordering a decision breaks
``audit verify``.

A decision binds to the weights, not to a name: the imaging models keep the version string
"1.0.0" when retrained, so a decision keyed on name + version would carry over silently to other
weights. ``approval`` takes the current version id (the sha256 of the weights the caller is about
to use, from the card it verified; analytics never opens model files) and only a decision with
that id counts; the latest such decision is the status, none is "not reviewed". A decision on
other weights is shown as such ("approved for different weights (sha …), this version is not
approved"). Decisions recorded before ids were required carry none: they match no weights and
say so (no data migration: the id lives in the chained details, which a migration must not edit).

The admin's setting ``require_model_approval`` (table ``governance_setting``, changed in the
same transaction as its own chained ``setting_changed`` event) turns the banner on unapproved
output into withholding: pages, the report and the CLI show a message instead of the output.
"""

from __future__ import annotations

import datetime as dt
import json
import re
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
VERSION_ID = re.compile(r"[0-9a-f]{64}")  # sha256 of the weights, lower-case hex


class ApprovalError(ValueError):
    """A sign-off or setting change that is not allowed (role, empty comment, unknown decision)."""


@dataclass(frozen=True)
class OtherDecision:
    """The latest decision on this model's other weights (or on none: before ids were recorded)."""

    status: str
    model_version: str
    version_id: str | None
    decided_by: str
    decided_at: dt.datetime | None
    event_id: int

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "model_version": self.model_version,
            "version_id": self.version_id,
            "decided_by": self.decided_by,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "event_id": self.event_id,
        }


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
    version_id: str | None = None  # the weights' sha256 the caller asked about (None: unknown)
    other: OtherDecision | None = None  # the latest decision on other weights, when none on these

    @property
    def approved(self) -> bool:
        return self.status == APPROVED

    @property
    def short_status(self) -> str:
        """A few words: the status, or the decision on other weights (or on none) that does not apply."""
        if self.version_id is None and self.status == NOT_REVIEWED:
            return "not reviewed (weights unknown)"
        if self.other is None:
            return self.status
        if self.other.version_id is None:
            return f"{self.other.status} with no weights recorded"
        return f"{self.other.status} for different weights (sha {self.other.version_id[:12]}…)"

    @property
    def status_text(self) -> str:
        """The status as a table shows it: names a decision on other weights, or on none."""
        if self.other is None:
            return self.short_status
        return f"{self.short_status}; this version is not approved"

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
        if self.status == NOT_REVIEWED:
            state += self._why_not_these_weights()
        if self.withheld:
            return (
                f"Output withheld: the {self.model_name} model (version {self.model_version}) {state}, and "
                "this installation shows output only of approved versions (admin setting)."
            )
        return (
            f"The {self.model_name} model (version {self.model_version}) {state}. "
            "Read its output with that in mind."
        )

    def _why_not_these_weights(self) -> str:
        if self.version_id is None:
            return " (its weights could not be identified, so no decision applies)"
        mine = f"sha {self.version_id[:12]}…"
        other = self.other
        if other is None:
            return f" (weights {mine})"
        when = f" on {other.decided_at:%Y-%m-%d}" if other.decided_at else ""
        if other.version_id is None:
            return (
                f" (weights {mine}): the board's decision{when} ({other.status}) was recorded "
                "before decisions named their weights, so it applies to none"
            )
        return (
            f": it was {other.status} for different weights (sha {other.version_id[:12]}…){when}; "
            f"this version ({mine}) is not approved"
        )

    def to_json(self) -> dict:
        """The ``approval`` key of the CLI's JSON."""
        return {
            "model": self.model_name,
            "model_version": self.model_version,
            "version_id": self.version_id,
            "status": self.status,
            "status_text": self.status_text,
            "other_decision": None if self.other is None else self.other.to_json(),
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


def account_role(con: duckdb.DuckDBPyConnection, username: str) -> str | None:
    """The stored role of an active account (None: no such account, or deactivated).

    Why: a sign-off or a setting change is only as good as the role behind it, and a caller's
    claim is not evidence; the ``app_user`` row is.
    """
    if not _has_table(con, "app_user"):
        return None
    row = con.execute(
        "SELECT role FROM app_user WHERE username = ? AND deactivated_at IS NULL", [username]
    ).fetchall()
    return str(row[0][0]) if row else None


def set_require_approval(
    con: duckdb.DuckDBPyConnection, value: bool, *, actor: str, role: str | None = None
) -> int:
    """Change the setting with its chained ``setting_changed`` event; returns the event id.

    Only an active admin account: ``role`` (the caller's claim) is ignored in favour of the
    account's stored role, so a stale session or a hand-made call cannot change it.
    """
    stored = account_role(con, actor)
    if stored not in SETTING_ROLES:
        raise ApprovalError(
            "only an administrator (an active admin account) changes whether approval is required"
        )
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
            role=stored,
            action="setting_changed",
            details={"setting": REQUIRE_APPROVAL, "from": before, "to": bool(value)},
        )


def decide(
    con: duckdb.DuckDBPyConnection,
    *,
    model_name: str,
    model_version: str,
    version_id: str,
    decision: str,
    comment: str,
    actor: str,
    role: str | None = None,
) -> int:
    """Record a board member's approval or rejection of one model version; returns the event id.

    ``version_id``: the sha256 of the weights decided on (the card's), which the decision binds
    to. Refused (``ApprovalError``) unless ``actor`` is an active account whose stored role is the
    ethics board's (``role``, the caller's claim, is not trusted), the decision is
    approved/rejected, the comment says something and the id is a sha256.
    """
    if decision not in DECISION_ACTIONS:
        raise ApprovalError(f"a decision is one of {', '.join(DECISION_ACTIONS)}, not {decision!r}")
    text = (comment or "").strip()
    if not text:
        raise ApprovalError("say why: an approval or a rejection needs a comment")
    if len(text) > COMMENT_MAX:
        raise ApprovalError(f"the comment is longer than {COMMENT_MAX} characters")
    if not isinstance(version_id, str) or not VERSION_ID.fullmatch(version_id):
        raise ApprovalError(
            "a decision names the weights it is about: version_id must be their sha256 (64 hex)"
        )
    stored = account_role(con, actor)
    if stored not in BOARD_ROLES:
        raise ApprovalError(
            "only a member of the ethics board (an active account with that role) approves or "
            "rejects a model version"
        )
    return audit.append_event(
        con,
        actor=actor,
        role=stored,
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


def _status(action: str) -> str:
    return APPROVED if action == DECISION_ACTIONS[APPROVED] else REJECTED


def approval(
    con: duckdb.DuckDBPyConnection,
    model_name: str,
    model_version: str,
    version_id: str | None,
) -> Approval:
    """The latest decision on these weights (``not reviewed`` when none) and the setting.

    ``version_id``: the sha256 of the weights whose output is about to be shown (the current
    card's; None where they cannot be identified, e.g. a stored read of a version whose card is
    gone: then nothing applies). Decisions on the same model's other weights, or recorded without
    an id, do not count; the latest of them is kept in ``other`` so the banner can say so.
    """
    required = require_approval(con)
    rows = con.execute(_decisions_sql(" AND model_name = ?"), [str(model_name)]).fetchall()
    mine, other = None, None
    for row in rows:
        details = json.loads(row[7] or "{}")
        rid = details.get("version_id")
        if version_id is not None and rid == version_id:
            mine = (row, details)
            break
        if other is None or (
            other.model_version != str(model_version) and str(row[6]) == str(model_version)
        ):  # the latest on other weights, preferring the same version string
            other = OtherDecision(
                _status(row[4]), str(row[6]), rid, str(row[2]), row[1], int(row[0])
            )
    if mine is None:
        return Approval(
            str(model_name),
            str(model_version),
            NOT_REVIEWED,
            required,
            version_id=version_id,
            other=other,
        )
    (event_id, at, actor, _, action, _, _, _), details = mine
    return Approval(
        str(model_name),
        str(model_version),
        _status(action),
        required,
        actor,
        at,
        details.get("comment"),
        int(event_id),
        version_id=version_id,
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
            "decision": _status(r[4]),
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
