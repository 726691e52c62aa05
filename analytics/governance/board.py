"""What the ethics board reads besides the models: the audit trail filtered, and what clinicians did
with the treatment recommendations.

Plain queries with parameters; the Governance page caches them on the store's
file stamp (every page view writes an audit event, so the trail changes often).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pandas as pd

from analytics import store

AUDIT_COLUMNS = (
    "event_id",
    "occurred_at",
    "actor",
    "role",
    "action",
    "subject",
    "model_name",
    "model_version",
    "inputs_sha256",
    "details",
)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
    }


DECISION_RATE_COLUMNS = (
    "model_version",
    "decisions",
    "accepted",
    "overridden",
    "no_recommendation",
    "patients",
)


@dataclass(frozen=True)
class AuditFilterOptions:
    """What the audit trail's filters offer: distinct actions and actors, first and last event day (UTC)."""

    actions: tuple[str, ...]
    actors: tuple[str, ...]
    first: dt.date | None  # None: no events yet
    last: dt.date | None


@dataclass(frozen=True, eq=False)
class DecisionRates:
    """Accept / override counts of treatment recommendations, overall and per model version.

    ``accepted``: the clinician chose the recommended option; ``overridden``: another option
    although one was recommended; ``no_recommendation``: the model said "no clear difference"
    (a choice, neither). ``by_version``: ``DECISION_RATE_COLUMNS``, one row per model version.
    """

    decisions: int
    accepted: int
    overridden: int
    no_recommendation: int
    by_version: pd.DataFrame

    @property
    def accept_rate(self) -> float | None:
        """accepted / (accepted + overridden), 0-1; None when nothing was recommended."""
        recommended = self.accepted + self.overridden
        return self.accepted / recommended if recommended else None


def audit_filter_options(con: duckdb.DuckDBPyConnection) -> AuditFilterOptions:
    """Distinct actions and actors, and the first and last event date, for the filter widgets."""
    actions = [
        r[0] for r in con.execute("SELECT DISTINCT action FROM audit_event ORDER BY 1").fetchall()
    ]
    actors = [
        r[0] for r in con.execute("SELECT DISTINCT actor FROM audit_event ORDER BY 1").fetchall()
    ]
    first, last = store.one_row(
        con.execute("SELECT min(occurred_at)::DATE, max(occurred_at)::DATE FROM audit_event")
    )
    return AuditFilterOptions(tuple(actions), tuple(actors), first, last)


def audit_events(
    con: duckdb.DuckDBPyConnection,
    *,
    actions: list[str] | None = None,
    actors: list[str] | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    limit: int = 10_000,
) -> pd.DataFrame:
    """Audit events matching every filter given (dates inclusive, UTC), newest first, at most ``limit``."""
    present = [c for c in AUDIT_COLUMNS if c in _columns(con, "audit_event")]
    where: list[str] = []
    params: list[object] = []
    if actions:
        where.append("list_contains(?::VARCHAR[], action)")
        params.append(list(actions))
    if actors:
        where.append("list_contains(?::VARCHAR[], actor)")
        params.append(list(actors))
    if since is not None:
        where.append("occurred_at >= ?")
        params.append(dt.datetime.combine(since, dt.time.min))
    if until is not None:
        where.append("occurred_at < ?")
        params.append(dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min))
    sql = (
        f"SELECT {', '.join(present)} FROM audit_event"  # noqa: S608 - constant column names
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY event_id DESC LIMIT ?"
    )
    return con.execute(sql, [*params, int(limit)]).df()


def decision_rates(con: duckdb.DuckDBPyConnection) -> DecisionRates:
    """Accept / override counts of treatment recommendations, overall and per model version
    (all zero on a store still at schema version 1, which has no decisions table)."""
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    if "treatment_decision" not in tables:
        return DecisionRates(0, 0, 0, 0, pd.DataFrame(columns=list(DECISION_RATE_COLUMNS)))
    rows = con.execute(
        """
        SELECT model_version,
               count(*) AS decisions,
               count(*) FILTER (WHERE accepted) AS accepted,
               count(*) FILTER (WHERE NOT accepted AND recommended IS NOT NULL) AS overridden,
               count(*) FILTER (WHERE recommended IS NULL) AS no_recommendation,
               count(DISTINCT person_id) AS patients
        FROM treatment_decision GROUP BY model_version ORDER BY model_version
        """
    ).df()
    total = rows[["decisions", "accepted", "overridden", "no_recommendation"]].sum()
    return DecisionRates(
        decisions=int(total["decisions"]),
        accepted=int(total["accepted"]),
        overridden=int(total["overridden"]),
        no_recommendation=int(total["no_recommendation"]),
        by_version=rows,
    )
