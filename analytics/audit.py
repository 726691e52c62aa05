"""Audit events: what the system showed or did, to whom, and when.

This is the interim, append-only form of the trail; the governance issue adds
hash chaining, verification and the ethics-board view on top of the same table.
Events are written through ``store.open_store`` like every other write, so the
app and a CLI writer take turns on the file instead of failing.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from analytics import store


def append_event(
    con: duckdb.DuckDBPyConnection,
    *,
    actor: str,
    action: str,
    role: str | None = None,
    subject: str | None = None,
    details: dict | None = None,
) -> int:
    """Append one event on an open, writable connection (inside the caller's transaction, if any)."""
    payload = json.dumps(details or {}, sort_keys=True, default=str)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    row = con.execute(
        "INSERT INTO audit_event (occurred_at, actor, role, action, subject, details) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING event_id",
        [now, actor, role, action, subject, payload],
    ).fetchone()
    return int(row[0])


def record_event(
    db_path: str | Path,
    *,
    actor: str,
    action: str,
    role: str | None = None,
    subject: str | None = None,
    details: dict | None = None,
    wait_s: float = 30.0,
) -> int:
    """Append one event and return its id. ``subject`` must be pseudonymous (an id, never a name)."""
    with store.open_store(db_path, wait_s=wait_s) as con:
        return append_event(con, actor=actor, action=action, role=role, subject=subject, details=details)


def recent_events(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    return con.execute(
        "SELECT event_id, occurred_at, actor, role, action, subject, details "
        "FROM audit_event ORDER BY event_id DESC LIMIT ?",
        [limit],
    ).df()
