"""Opening the store: short-lived connections that wait their turn, and migrate on write.

Concurrency (see docs/architecture.md): DuckDB lets one process hold a file, so
every connection here is short-lived. ``open_store`` retries while another
process holds the lock, and writers keep their transactions short (data are
prepared before the file is opened), so the app and a CLI writer take turns
instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from analytics.store.errors import (
    MissingDatabaseError,
    NotADatabaseError,
    StoreBusyError,
    StoreError,
)
from analytics.store.migrations import current_version, migrate

_LOCK_MARKERS = ("could not set lock", "conflicting lock", "resource temporarily unavailable")


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _LOCK_MARKERS)


def _connect_once(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.ConnectionException as exc:
        # This process already holds the file with the other mode (the app writes
        # audit events while another session reads): share that instance instead.
        if "different configuration" in str(exc):
            if read_only:
                return duckdb.connect(str(path), read_only=False)
            # a read-only connection of ours is open: wait for it like for a lock
            raise duckdb.IOException(f"could not set lock: {exc}") from exc
        raise
    except duckdb.IOException as exc:
        if _is_lock_error(exc):
            raise
        raise NotADatabaseError(f"{path} is not a readable DuckDB database ({exc})") from exc
    except (duckdb.SerializationException, duckdb.InvalidInputException) as exc:
        raise NotADatabaseError(f"{path} is not a DuckDB database ({exc})") from exc
    except duckdb.Error as exc:
        if "not a valid duckdb" in str(exc).lower() or "corrupt" in str(exc).lower():
            raise NotADatabaseError(f"{path} is not a DuckDB database ({exc})") from exc
        raise


def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    wait_s: float = 30.0,
    create: bool = False,
) -> duckdb.DuckDBPyConnection:
    """Open the store, waiting (with jittered back-off) while another process holds it.

    A missing file is an error unless ``create`` is set: opening a typo'd path must
    not silently create an empty clinic. Writable connections migrate the schema.
    """
    path = Path(path).expanduser()
    if not path.exists():
        if not create:
            raise MissingDatabaseError(
                f"no OncoLens database at {path}; create one with `oncolens demo --db {path}`"
            )
        if read_only:
            raise StoreError("cannot create a database read-only")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create folder {path.parent}: {exc.strerror}") from exc
    elif path.is_dir():
        raise NotADatabaseError(f"{path} is a folder, not a DuckDB database file")

    deadline = time.monotonic() + wait_s
    delay = 0.01
    while True:
        try:
            con = _connect_once(path, read_only)
            break
        except duckdb.IOException as exc:
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"{path} is held by another process (an import or the app) for more "
                    f"than {wait_s:.0f} s; try again when it has finished"
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)
    if not read_only:
        _owner_only(path)
        try:
            migrate(con)
        except Exception:
            con.close()
            raise
    else:
        version = current_version(con)
        if version == 0:
            con.close()
            raise NotADatabaseError(f"{path} is a DuckDB file but not an OncoLens store")
    return con


def _owner_only(path: Path) -> None:
    """Mode 0600 for the store (and its WAL) when we own it: it holds password hashes, the
    pseudonym key, names and MRNs. Tightened on every writable open, so stores made before this
    rule (0644 under the usual umask) are fixed too; a file of another owner is left alone."""
    for file in (path, path.with_name(path.name + ".wal")):
        try:
            info = file.stat()
            if info.st_uid == os.getuid() and info.st_mode & 0o077:
                os.chmod(file, 0o600)
        except OSError:  # gone meanwhile, or a file system without modes: nothing to tighten
            continue


@contextlib.contextmanager
def open_store(
    path: str | Path, *, read_only: bool = False, wait_s: float = 30.0, create: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Short-lived connection: open, use, close, so that other processes get their turn."""
    con = connect(path, read_only=read_only, wait_s=wait_s, create=create)
    try:
        yield con
    finally:
        con.close()


def one_row(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The result row of the query just run on ``con``, one that always returns exactly one row.

    For aggregates (``count(*)``, ``max``) and an ``INSERT ... RETURNING`` of one row. DuckDB's
    ``fetchone`` is None when there is no row; for these queries that would be a broken
    invariant, reported as a ``StoreError`` instead of a ``TypeError`` on ``None[0]``.
    """
    row = con.fetchone()
    if row is None:
        raise StoreError("a query that always returns one row returned none")
    return row


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the store has table ``name`` in ``main``: a store opened read-only is never
    migrated, so a reader of a table added by a later version asks first."""
    return bool(
        one_row(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_name = ?",
                [name],
            )
        )[0]
    )


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every store table (``truth`` included, counted, never read)."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' ORDER BY table_schema, table_name"
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table in rows:
        ident = f'"{schema}"."{table}"'  # identifiers from the catalogue, not from users
        counts[f"{schema}.{table}" if schema != "main" else table] = one_row(
            con.execute(f"SELECT count(*) FROM {ident}")  # noqa: S608
        )[0]
    return counts


def default_db_path() -> Path:
    """``$ONCOLENS_DB`` if set (``oncolens serve --db`` sets it for the app), else ~/.oncolens/."""
    env = os.environ.get("ONCOLENS_DB")
    return Path(env).expanduser() if env else Path.home() / ".oncolens" / "oncolens.duckdb"
