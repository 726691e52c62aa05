"""The audit trail by path: record an event, verify a store, read the latest events.

What the chain is and why (each event's hash over the previous one, the head row, how writers
in several processes and threads take turns, what a chain cannot prove) is written beside its
code in ``analytics.governance.chain``. This module adds the calls that open the store and
re-exports the chain's connection-level functions, so the rest of OncoLens imports ``audit`` alone.

Never store passwords or direct identifiers here: ``subject`` is a patient id (a surrogate key,
never a name or MRN), ``actor`` a staff username.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
    "open_for_verify",
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


def open_for_verify(db_path: str | Path, wait_s: float = 30.0):
    """The store at ``db_path`` opened read-only for a verification (a context manager).

    Why read-only: a verification is evidence about the file as it is. A writable open migrates
    an older store (and seals a pre-chain one) as a side effect, so the verifier would change
    what it was asked to check, and it would wait for, or block, the app and an import. Read-only
    it runs beside them; a store at an older schema is verified as it is (one before the chain,
    version < 3, is reported as unverifiable: ``verify``'s problem says how to seal it). A store
    of a newer OncoLens is refused with ``store.StoreError``: its events may hold what this
    version cannot hash.
    """
    return _verifiable(db_path, wait_s)


@contextlib.contextmanager
def _verifiable(db_path: str | Path, wait_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    with store.open_store(db_path, read_only=True, wait_s=wait_s) as con:
        version = store.schema_version(con)
        if version > store.SCHEMA_VERSION:
            raise store.StoreError(
                f"{db_path} is at schema version {version}, newer than this OncoLens (knows up to "
                f"{store.SCHEMA_VERSION}): not verified; verify it with the OncoLens that wrote it"
            )
        yield con


def verify_store(db_path: str | Path, wait_s: float = 30.0) -> Verification:
    """``verify`` on the file at ``db_path``, opened read-only (``open_for_verify``)."""
    with open_for_verify(db_path, wait_s) as con:
        return verify(con)


def recent_events(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    return con.execute(
        "SELECT event_id, occurred_at, actor, role, action, subject, details "
        "FROM audit_event ORDER BY event_id DESC LIMIT ?",
        [limit],
    ).df()
