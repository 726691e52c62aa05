"""AI measurements behind the ethics board's sign-off: one SQL condition for every reader of ``measurement``.

Why in SQL, and why from the store alone: the readers of ``measurement`` (the Patient page's record,
the forecasts, the worklist's ranking and review, "what changed") run in the app, in the CLI and in
writers such as imaging ingest's worklist refresh, and at a million patients they read tens of
millions of rows. The condition is a filter on the row's own columns (schema version 16:
``model_name``, ``model_version``, ``weights_sha256`` of the read that wrote an AI row), against the
approved weights, which are read from the chained decisions in the same statement, so no caller
needs the model cards and no reader a join to the read tables.

The rule (docs/governance.md, "AI measurements"): a row whose ``source`` is not ``'ai'`` always
counts. An AI row counts when the admin does not require approval, or when the board's latest
decision on the weights that made it (model name + weights sha256, as ``approvals.approval`` binds
a decision) is an approval. An AI row stored before version 16 carries no weights: unknown, so
withheld when approval is required. A decision recorded before decisions named their weights
applies to none (as in ``approvals``).

A store opened read-only before version 16 has no such columns: its AI rows are unknown (withheld
when required); before version 12 nothing can be required. ``shown`` picks the condition the
store can answer, after reading the setting: where approval is not required the condition is
``TRUE`` and costs the readers nothing per row.
"""

from __future__ import annotations

import hashlib
import json

import duckdb

from analytics.governance.lifecycle.approvals import DECISION_ACTIONS, REQUIRE_APPROVAL

__all__ = ["APPROVED_WEIGHTS_SQL", "REQUIRED_SQL", "affected_people", "fingerprint", "shown"]

# (model_name, weights_sha256) whose latest decision is an approval (constants only)
APPROVED_WEIGHTS_SQL = f"""
    SELECT model_name || '/' || json_extract_string(details, '$.version_id')
    FROM audit_event
    WHERE action IN ('{DECISION_ACTIONS["approved"]}', '{DECISION_ACTIONS["rejected"]}')
      AND json_extract_string(details, '$.version_id') IS NOT NULL
    GROUP BY model_name, json_extract_string(details, '$.version_id')
    HAVING arg_max(action, event_id) = '{DECISION_ACTIONS["approved"]}'
"""  # noqa: S608 - constants of ``approvals``

# the admin's setting, as ``approvals.require_approval`` reads it (stored as JSON text)
REQUIRED_SQL = f"""coalesce((SELECT trim(value) = 'true' FROM governance_setting
    WHERE key = '{REQUIRE_APPROVAL}'), FALSE)"""  # noqa: S608 - a constant of ``approvals``

_ALIASES = frozenset({"m", "measurement"})


def _full(alias: str) -> str:
    return (
        f"({alias}.source <> 'ai' OR coalesce("
        f"{alias}.model_name || '/' || {alias}.weights_sha256 IN ({APPROVED_WEIGHTS_SQL}), FALSE))"
    )


def _schema_version(con: duckdb.DuckDBPyConnection) -> int:
    # fetchall, not fetchone: a half-read result blocks ``con.register()`` afterwards (the
    # worklist's refresh registers its rows)
    return int(con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] or 0)


def _required(con: duckdb.DuckDBPyConnection) -> bool:
    """The admin's setting, as ``approvals.require_approval`` reads it (a store of version 12 or
    later; a plain lookup: ~0.4 ms, where that function's table check costs ~1 ms more)."""
    rows = con.execute(
        "SELECT value FROM governance_setting WHERE key = ?", [REQUIRE_APPROVAL]
    ).fetchall()
    return bool(rows) and json.loads(rows[0][0]) is True


def shown(con: duckdb.DuckDBPyConnection, alias: str = "m") -> str:
    """The condition (SQL, no parameters) that a ``measurement`` row under ``alias`` may be read:
    ``WHERE ... AND {shown(con)}``. ``alias``: ``m`` or ``measurement`` (a constant, never input).

    Where approval is not required (or cannot be: before version 12) it is ``TRUE``, so the usual
    case costs a reader one lookup of the setting (~0.5 ms) and no work per row; the setting is
    read in the caller's transaction, as the statement will be."""
    if alias not in _ALIASES:
        raise ValueError(f"unknown alias {alias!r}")
    version = _schema_version(con)
    if version < 12 or not _required(con):
        return "TRUE"
    if version < 16:  # opened read-only before version 16: no AI row names its weights
        return f"({alias}.source <> 'ai')"
    return _full(alias)


def fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """What the condition depends on besides the rows: which (model, weights) pairs of the AI rows
    in the store it lets through. Stored results built from readings (the worklist, the forecast
    prior) compare it to know that a decision or the setting changed what they may read.

    Why the visible pairs and not the decisions: a decision on a model that wrote no measurement
    (the treatment model, an imaging model not used yet), or any decision while approval is not
    required, changes nothing a reader sees, and must not mark the stored worklist out of date
    (above 20,000 patients that means "out of date" until someone refreshes) nor drop the app's
    cached results (review of 2026-12-04). Costs nothing where approval is not required; where it
    is, one scan of the AI rows (``source = 'ai'``) and of the decisions.
    """
    condition = shown(con, "m")
    if condition == "TRUE":
        return "gate:open"
    if _schema_version(con) < 16:  # read-only before version 16: every AI row withheld
        return "gate:no-ai"
    pairs = con.execute(
        "SELECT coalesce(string_agg(DISTINCT pair, ',' ORDER BY pair), '') FROM ("  # noqa: S608
        "SELECT coalesce(m.model_name, '?') || '/' || coalesce(m.weights_sha256, '?') AS pair "
        f"FROM measurement m WHERE m.source = 'ai' AND {condition})"
    ).fetchall()[0][0]
    return "gate:" + hashlib.sha256(pairs.encode()).hexdigest()[:16]


def affected_people(
    con: duckdb.DuckDBPyConnection, model_name: str | None = None, weights: str | None = None
) -> list[int]:
    """The patients with AI measurements that a decision on ``model_name`` / ``weights`` (or, both
    None, a change of the setting) can show or hide: the ones a writer re-ranks after it."""
    if _schema_version(con) < 16:
        return []
    if model_name is None:
        rows = con.execute("SELECT DISTINCT person_id FROM measurement WHERE source = 'ai'")
    else:
        rows = con.execute(
            "SELECT DISTINCT person_id FROM measurement WHERE source = 'ai' "
            "AND model_name = ? AND weights_sha256 = ?",
            [model_name, weights],
        )
    return sorted(int(r[0]) for r in rows.fetchall())
