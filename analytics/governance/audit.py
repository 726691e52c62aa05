"""The audit trail by path: record an event, verify a store, read the latest events.

What the chain is and why (each event's hash over the previous one, the head row, how writers
in several processes and threads take turns, what a chain cannot prove) is written beside its
code in ``analytics.governance.chain``. This module adds the calls that open the store and
re-exports the chain's connection-level functions, so the rest of OncoLens imports ``audit`` alone.

Never store passwords or direct identifiers here: ``subject`` is a patient id (a surrogate key,
never a name or MRN), ``actor`` a staff username.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from analytics import store
from analytics.governance.chain import (
    GENESIS,
    HASHED_FIELDS,
    Anchor,
    Verification,
    _append,
    anchor,
    append_event,
    canonical_json,
    chained_transaction,
    check_anchor,
    event_hash,
    inputs_hash,
    seal_unchained,
    verify,
)

__all__ = [
    "GENESIS",
    "Anchor",
    "HASHED_FIELDS",
    "Verification",
    "anchor",
    "append_event",
    "canonical_json",
    "chained_transaction",
    "check_anchor",
    "event_hash",
    "inputs_hash",
    "recent_events",
    "record_event",
    "seal_unchained",
    "verify",
    "verify_store",
]


def record_event(
    db_path: str | Path,
    *,
    actor: str,
    action: str,
    role: str | None = None,
    subject: str | None = None,
    details: dict | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    inputs_sha256: str | None = None,
    wait_s: float = 30.0,
) -> int:
    """Append one event in its own short transaction and return its id.

    ``subject`` must be pseudonymous (a patient id, never a name or MRN).
    """
    with store.open_store(db_path, wait_s=wait_s) as con, chained_transaction(con):
        return _append(
            con, actor, action, role, subject, details, model_name, model_version, inputs_sha256
        )


def verify_store(db_path: str | Path, wait_s: float = 30.0) -> Verification:
    """``verify`` on the file at ``db_path``, opened for writing so a pre-chain store is first sealed."""
    with store.open_store(db_path, wait_s=wait_s) as con:
        return verify(con)


def recent_events(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    return con.execute(
        "SELECT event_id, occurred_at, actor, role, action, subject, details "
        "FROM audit_event ORDER BY event_id DESC LIMIT ?",
        [limit],
    ).df()
