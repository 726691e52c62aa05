"""The store's secret and the pseudonyms made with it.

Pseudonyms: ``pseudonym(key, person_id)`` is HMAC-SHA256 under a random per-store secret
(``app_secret``), so the ethics board sees stable ids it cannot turn back into patients,
while the store can still link them. One function, one argument order (key first), for
every pseudonym OncoLens shows or writes: ``models.deid.pseudonyms.pseudonym``, re-exported
here (de-identified DICOM files use it too, with their own ``OL-`` spelling).

Why a module of its own: the store's version-3 migration creates the secret on its own
connection; this module never opens the store, so the migration imports it without a cycle.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

import duckdb

from models.deid.pseudonyms import keyed_hash, pseudonym

__all__ = ["ensure_secret", "keyed_hash", "pseudonym", "store_secret"]

_SECRET_NAME = "store_key"


def ensure_secret(con: duckdb.DuckDBPyConnection) -> bytes:
    """The store's random 256-bit key, created on first use (needs a writable connection then)."""
    key = store_secret(con)
    if key is None:
        con.execute(
            "INSERT INTO app_secret VALUES (?, ?, ?)",
            [_SECRET_NAME, secrets.token_hex(32), datetime.now(timezone.utc).replace(tzinfo=None)],
        )
        key = store_secret(con)
    assert key is not None
    return key


def store_secret(con: duckdb.DuckDBPyConnection) -> bytes | None:
    """The key if the store has one (a store older than schema version 3 has none)."""
    try:
        rows = con.execute("SELECT value FROM app_secret WHERE name = ?", [_SECRET_NAME]).fetchall()
    except duckdb.CatalogException:
        return None
    return bytes.fromhex(rows[0][0]) if rows else None
