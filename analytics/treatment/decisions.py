"""What the clinician did with a treatment recommendation: accepted it, or chose otherwise and why.

Stored in ``treatment_decision`` (schema version 2), one row per decision and
never updated: a changed mind is a new row, so the history stays readable.
Each decision also appends an ``audit_event`` (action ``treatment_decision``)
in the same transaction, so the two never disagree. The audit event carries
the decision id, the model version, the recommended and chosen options and
the figures shown, but not the free-text reason, which may name people: that
stays in the clinical table.

Rules, also enforced by CHECK constraints in the table:

- *accepted* means the chosen option is the recommended one; when the model
  said "no clear difference" there is nothing to accept, only a choice;
- anything other than an acceptance needs a reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from analytics import store
from analytics.governance import audit

if TYPE_CHECKING:  # a type only: recording a decision needs no model code
    from analytics.treatment.recommend import Recommendation

ACTION = "treatment_decision"
DECISION_COLUMNS = [
    "decision_id",
    "decided_at",
    "actor",
    "model_version",
    "recommended",
    "chosen",
    "accepted",
    "reason",
]


class DecisionError(ValueError):
    """A decision that cannot be recorded as given; the message says what is missing."""


@dataclass(frozen=True)
class Decision:
    """One clinician's decision on one patient's recommendation (``recommended`` None: no clear difference)."""

    person_id: int
    model_version: str
    recommended: str | None
    chosen: str
    reason: str | None
    actor: str

    @property
    def accepted(self) -> bool:
        return self.recommended is not None and self.chosen == self.recommended


def make_decision(
    *,
    person_id: int,
    model_version: str,
    recommended: str | None,
    options: tuple[str, ...] | list[str],
    actor: str,
    chosen: str | None = None,
    reason: str | None = None,
) -> Decision:
    """Validate a decision: ``chosen`` None accepts the recommendation; otherwise a reason is needed."""
    reason = (reason or "").strip() or None
    if recommended is not None and recommended not in options:
        raise DecisionError(f"recommended option {recommended!r} is not one of {list(options)}")
    if chosen is None:
        if recommended is None:
            raise DecisionError(
                "there is no recommendation to accept (no clear difference): choose an option"
            )
        chosen = recommended
    if chosen not in options:
        raise DecisionError(f"{chosen!r} is not one of the options {list(options)}")
    decision = Decision(int(person_id), str(model_version), recommended, chosen, reason, str(actor))
    if not decision.accepted and decision.reason is None:
        what = (
            "overriding the recommendation"
            if recommended is not None
            else "choosing without a clear difference"
        )
        raise DecisionError(f"give a reason for {what}")
    return decision


def shown_summary(recommendation: Recommendation) -> dict:
    """What the clinician saw, in the keys of ``oncolens recommend --json``: no SHAP detail, no names.

    Stored with the decision and in its audit event, so it keeps the CLI's JSON keys.
    """
    shown = recommendation.to_json()
    keys = (
        "model_version",
        "statement",
        "recommended",
        "best_predicted",
        "compared_with",
        "benefit",
        "benefit_ci",
    )
    return {
        **{k: shown[k] for k in keys},
        "options": [
            {k: o[k] for k in ("treatment", "rfs_5y", "rfs_5y_ci", "rmst_days")}
            for o in shown["options"]
        ],
    }


def record_decision(
    db_path: str | Path,
    decision: Decision,
    *,
    shown: dict | None = None,
    wait_s: float = 30.0,
    role: str | None = None,
) -> int:
    """Store the decision and its audit event in one transaction; returns the decision id.

    ``shown``: the figures on screen when the clinician decided (JSON-serialisable, no names);
    ``role``: the signed-in role of ``decision.actor``, for the audit trail.
    """
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    shown_json = json.dumps(shown, sort_keys=True, default=str) if shown is not None else None
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        decision_id = int(
            store.one_row(
                con.execute(
                    "INSERT INTO treatment_decision (person_id, model_version, recommended, chosen, accepted, "
                    "reason, actor, decided_at, shown) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING decision_id",
                    [
                        decision.person_id,
                        decision.model_version,
                        decision.recommended,
                        decision.chosen,
                        decision.accepted,
                        decision.reason,
                        decision.actor,
                        now,
                        shown_json,
                    ],
                )
            )[0]
        )
        audit.append_event(
            con,
            actor=decision.actor,
            role=role,
            action=ACTION,
            subject=str(decision.person_id),
            details={
                "decision_id": decision_id,
                "model_version": decision.model_version,
                "recommended": decision.recommended,
                "chosen": decision.chosen,
                "accepted": decision.accepted,
                "shown": shown,
            },
            model_name="treatment",
            model_version=decision.model_version,
        )
    return decision_id


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_name = 'treatment_decision'"
        ).fetchall()[0][0]
    )


def patient_decisions(con: duckdb.DuckDBPyConnection, person_id: int) -> pd.DataFrame:
    """The patient's decisions, newest first (``DECISION_COLUMNS``).

    A store still at schema version 1 (opened read-only, so not yet migrated) has none.
    """
    if not _has_table(con):
        return pd.DataFrame(columns=DECISION_COLUMNS)
    return con.execute(
        f"SELECT {', '.join(DECISION_COLUMNS)} FROM treatment_decision "  # noqa: S608 - constant columns
        "WHERE person_id = ? ORDER BY decided_at DESC, decision_id DESC",
        [int(person_id)],
    ).df()
