"""The audit trail: what the system showed or did, to whom, and when, hash-chained.

Why a chain: an ethics board must be able to trust that the trail it reads is the
trail that was written. Each event stores ``prev_hash`` (the hash of the event
before it) and ``hash = sha256(prev_hash + canonical JSON of its own fields)``,
so changing a row breaks its own hash, and removing or reordering rows breaks
the next event's ``prev_hash``. ``audit_chain_head`` (one row) holds the number
of events and the last hash, so removing the *last* events is caught too.
``verify`` walks the chain and names the first bad event.

What the chain does not do: someone who can write the file can also recompute
every hash after an edit. The head hash that ``oncolens audit verify --json``
prints can be copied somewhere else (a ticket, a log server) to anchor the
trail at that moment; anchoring automatically is out of scope.

Concurrency. Events are written through ``store.open_store`` like every other
write. DuckDB lets one process hold the file at a time, so writers in
different processes (the app, a CLI) are serialised by the file lock; writers
in one process (the app's sessions are threads) take ``_CHAIN_LOCK`` around
their transaction. Each append reads the head and updates it in the same
transaction, so even a writer that skipped the lock cannot fork the chain:
DuckDB refuses the second concurrent update of the head row.

Never store passwords or direct identifiers here: ``subject`` is a patient id
(a surrogate key, never a name or MRN), ``actor`` a staff username.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from analytics import store
from analytics.governance.chain import (
    GENESIS,
    HASHED_FIELDS,
    Verification,
    _append,
    append_event,
    canonical_json,
    chained_transaction,
    event_hash,
    inputs_hash,
    seal_unchained,
    verify,
)

__all__ = [
    "GENESIS",
    "HASHED_FIELDS",
    "Verification",
    "append_event",
    "canonical_json",
    "chained_transaction",
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
