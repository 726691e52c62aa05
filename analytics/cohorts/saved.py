"""Saved cohorts: a named definition in the store, so a researcher (or a colleague) reopens the same cohort.

Why in the store and not in a browser or a file: a cohort is shared by a link
(``/cohorts?cohort=ID``), so whoever opens the link must read the same definition, on the same
clinic, with who saved it and at which data cut-off. What is stored is the definition (the JSON of
``CohortDefinition``), never the patients: reopened later, the cohort is rebuilt on the data as it
is then, and the saved data cut-off says whether the data moved since.

- Table ``saved_cohort`` (schema version 10, additive; ``analytics.store.schema``, because the
  store's migrations may not import this module, which opens the store).
- Saving, deleting and opening are audit events (``cohort_saved``, ``cohort_deleted``,
  ``cohort_opened``); a save or a delete is written with its event in one chained transaction.
- Only the author or an admin deletes a saved cohort. Every role that may open the Cohorts page
  may open every saved cohort: a definition holds no patient data, and the patients it selects
  are shown to each role as that role may see them (pseudonyms for the ethics board).
- A store without the table (older, opened read-only) raises ``SavedCohortsUnavailable`` with
  what to do, instead of a database error.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from analytics import store
from analytics.cohorts.definition import CohortDefinition
from analytics.cohorts.fields import CohortError
from analytics.governance import audit
from analytics.store.schema import SAVED_COHORT_NAME_MAX

TABLE = "saved_cohort"  # its statements: analytics.store.schema.V10_SAVED_COHORT_STATEMENTS
NAME_MAX = SAVED_COHORT_NAME_MAX
ADMIN_ROLE = "admin"

COLUMNS = ("cohort_id", "name", "definition", "author", "author_role", "created_at", "data_cutoff")


class SavedCohortsUnavailable(CohortError):
    """The store has no ``saved_cohort`` table yet (written by an older OncoLens, opened read-only)."""


class UnknownSavedCohort(CohortError):
    """No saved cohort with that id (never saved, or deleted)."""


class NotAllowed(CohortError):
    """The user may not do this to a saved cohort (only its author or an admin deletes it)."""


@dataclass(frozen=True)
class SavedCohort:
    """One saved cohort; ``created_at`` in UTC; ``data_cutoff`` as the store recorded it when saved."""

    cohort_id: int
    name: str
    definition: CohortDefinition
    author: str
    author_role: str | None
    created_at: dt.datetime
    data_cutoff: str | None

    def to_json(self) -> dict:
        return {
            "cohort_id": self.cohort_id,
            "name": self.name,
            "definition": self.definition.to_json(),
            "author": self.author,
            "author_role": self.author_role,
            "created_at": self.created_at.isoformat(),
            "data_cutoff": self.data_cutoff,
        }


UNAVAILABLE = (
    "saved cohorts need this store's schema to be migrated (it was written by an older OncoLens "
    "and is open read-only); the next write migrates it: sign in again, or run "
    "`oncolens audit verify --db PATH` while the app is stopped"
)


def has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_name = ?",
            [TABLE],
        ).fetchall()[0][0]
    )


def clean_name(name: str) -> str:
    """The name as stored: trimmed, control characters refused, 1 to ``NAME_MAX`` characters."""
    text = (name or "").strip()
    if not text:
        raise CohortError("a saved cohort needs a name")
    if len(text) > NAME_MAX:
        raise CohortError(f"a cohort's name has at most {NAME_MAX} characters, not {len(text)}")
    if any(unicodedata.category(c).startswith("C") for c in text):
        raise CohortError("a cohort's name cannot hold control characters (tabs, line breaks)")
    return text


def _data_cutoff(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        rows = con.execute("SELECT value FROM clinic_metadata WHERE key = 'data_cutoff'").fetchall()
    except duckdb.CatalogException:
        return None
    return str(rows[0][0]) if rows else None


def save_cohort(
    db_path: str | Path,
    name: str,
    definition: CohortDefinition,
    *,
    author: str,
    role: str | None,
    wait_s: float = 30.0,
) -> SavedCohort:
    """Store ``definition`` under ``name`` with its audit event (``cohort_saved``), in one transaction."""
    name = clean_name(name)
    definition.check()
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        cutoff = _data_cutoff(con)
        row = con.execute(
            f"INSERT INTO {TABLE} (name, definition, author, author_role, created_at, data_cutoff) "  # noqa: S608 - constant
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING cohort_id",
            [name, definition.canonical(), author, role, now, cutoff],
        ).fetchall()
        cohort_id = int(row[0][0])
        audit.append_event(
            con,
            actor=author,
            role=role,
            action="cohort_saved",
            details={
                "cohort_id": cohort_id,
                "name": name,
                "definition": definition.texts(),
                "group_by": definition.group_by,
                "data_cutoff": cutoff,
            },
        )
    return SavedCohort(cohort_id, name, definition, author, role, now, cutoff)


def _from_row(row: tuple) -> SavedCohort:
    cohort_id, name, definition, author, role, created_at, cutoff = row
    return SavedCohort(
        int(cohort_id),
        name,
        CohortDefinition.from_json(definition),
        author,
        role,
        created_at,
        cutoff,
    )


def list_saved(con: duckdb.DuckDBPyConnection) -> list[SavedCohort]:
    """Every saved cohort, newest first. Raises ``SavedCohortsUnavailable`` on a store without the table."""
    if not has_table(con):
        raise SavedCohortsUnavailable(UNAVAILABLE)
    rows = con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY created_at DESC, cohort_id DESC"  # noqa: S608
    ).fetchall()
    return [_from_row(r) for r in rows]


def saved_frame(cohorts: list[SavedCohort]) -> pd.DataFrame:
    """Saved cohorts as a table: id, name, definition in words, author, created (UTC), data cut-off."""
    return pd.DataFrame(
        [
            {
                "cohort_id": c.cohort_id,
                "name": c.name,
                "definition": c.definition.words(),
                "author": c.author,
                "created_at": c.created_at,
                "data_cutoff": c.data_cutoff,
            }
            for c in cohorts
        ],
        columns=["cohort_id", "name", "definition", "author", "created_at", "data_cutoff"],
    )


def get_saved(con: duckdb.DuckDBPyConnection, cohort_id: int | str) -> SavedCohort:
    """One saved cohort by id (an id from a link is text: only a whole number is looked up)."""
    if not has_table(con):
        raise SavedCohortsUnavailable(UNAVAILABLE)
    try:
        number = int(str(cohort_id).strip())
    except ValueError:
        raise UnknownSavedCohort(
            f"{str(cohort_id)[:40]!r} is not a saved cohort's number"
        ) from None
    rows = con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE cohort_id = ?",  # noqa: S608 - constant
        [number],
    ).fetchall()
    if not rows:
        raise UnknownSavedCohort(f"there is no saved cohort {number} (it may have been deleted)")
    return _from_row(rows[0])


def may_delete(cohort: SavedCohort, username: str, role: str | None) -> bool:
    return role == ADMIN_ROLE or username == cohort.author


def delete_saved(
    db_path: str | Path,
    cohort_id: int,
    *,
    actor: str,
    role: str | None,
    wait_s: float = 30.0,
) -> None:
    """Delete a saved cohort (its author or an admin) with its audit event ``cohort_deleted``."""
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        cohort = get_saved(con, cohort_id)
        if not may_delete(cohort, actor, role):
            raise NotAllowed(
                f"only {cohort.author} (who saved it) or an admin may delete saved cohort {cohort_id}"
            )
        con.execute(f"DELETE FROM {TABLE} WHERE cohort_id = ?", [cohort.cohort_id])  # noqa: S608
        audit.append_event(
            con,
            actor=actor,
            role=role,
            action="cohort_deleted",
            details={
                "cohort_id": cohort.cohort_id,
                "name": cohort.name,
                "definition": cohort.definition.texts(),
                "author": cohort.author,
            },
        )


def record_opened(
    db_path: str | Path, cohort: SavedCohort, *, actor: str, role: str | None, wait_s: float = 30.0
) -> int:
    """The audit event of opening a saved cohort (``cohort_opened``); returns the event id."""
    return audit.record_event(
        db_path,
        actor=actor,
        role=role,
        action="cohort_opened",
        details={"cohort_id": cohort.cohort_id, "name": cohort.name},
        wait_s=wait_s,
    )
