"""Schema migrations: each version's statements and data step, applied in order, one transaction each.

Why data steps call ``governance``, ``cohorts`` and ``episodes``: version 3 seals the audit events
written before the chain existed and creates the store's secret, version 4 fills ``cohort_base``,
version 9 derives disease episodes (``analytics.episodes.derive_episodes``). Those
functions take the migration's connection and never open the store themselves, so importing
them here makes no cycle (``governance.chain``, ``governance.pseudonyms`` and ``cohorts.base``
import nothing of ``analytics.store``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from analytics import episodes
from analytics.cohorts import base as cohort_base
from analytics.governance import chain, pseudonyms
from analytics.governance.lifecycle import tables as lifecycle_tables
from analytics.store import worklist_schema
from analytics.store.errors import StoreError
from analytics.store.schema import (
    SCHEMA_VERSION,
    V1_STATEMENTS,
    V2_STATEMENTS,
    V3_STATEMENTS,
    V7_AI_REFUSAL_STATEMENTS,
    V10_SAVED_COHORT_STATEMENTS,
    V11_USER_STATEMENTS,
    V13_AI_WEIGHTS_STATEMENTS,
    V14_VOLUME_STATEMENTS,
    V16_AI_MEASUREMENT_STATEMENTS,
)


@dataclass(frozen=True)
class Migration:
    """One schema version: SQL statements, then an optional data step, in one transaction.

    ``data_step`` fills what SQL alone cannot (random secrets, hashes over existing
    rows); it runs on the same connection, inside the migration's transaction.
    """

    version: int
    description: str
    statements: tuple[str, ...]
    data_step: Callable[[duckdb.DuckDBPyConnection], None] | None = None


def _v3_data(con: duckdb.DuckDBPyConnection) -> None:
    """Create the store's secret and seal the events written before the chain existed."""

    pseudonyms.ensure_secret(con)
    chain.seal_unchained(con)


def _cohort_base_statements() -> tuple[str, ...]:
    """Version 4 (additive): the derived ``cohort_base`` table and its freshness row (analytics.cohorts.base)."""
    # defined beside the query whose rows it holds
    return cohort_base.TABLE_STATEMENTS


def _v4_data(con: duckdb.DuckDBPyConnection) -> None:
    """Fill ``cohort_base`` from the rows already in the store (seconds at a million patients, once)."""
    cohort_base.refresh_base(con)


def _worklist_statements() -> tuple[str, ...]:
    """Version 5 (additive): the stored worklist and its freshness row (analytics.store.worklist_schema).

    No data step: filling it is a forecast for every eligible patient (minutes at a million
    patients), too long for a migration that the app's first write may trigger. Until a writer
    or ``oncolens worklist --refresh`` fills it, the Worklist page says so (and ranks small
    stores on the fly).
    """
    return worklist_schema.TABLE_STATEMENTS


def _review_statements() -> tuple[str, ...]:
    """Version 6 (additive): worklist reviews, append-only (analytics.worklist.review)."""
    return worklist_schema.REVIEW_STATEMENTS


def _bucket_statements() -> tuple[str, ...]:
    """Version 8 (additive): the worklist's event and cadence columns, a review's note and assignee.

    No data step: stored rows keep NULLs in the new columns and say they are stale (the ranking's
    method version changed) until a writer or ``oncolens worklist --refresh`` ranks again.
    """
    return worklist_schema.BUCKET_STATEMENTS


def _v9_data(con: duckdb.DuckDBPyConnection) -> None:
    """Derive episodes for the patients already in the store; what cannot be derived goes to episode_note."""
    episodes.derive_episodes(con)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "initial OMOP-shaped schema, imaging, governance, simulation truth", V1_STATEMENTS
    ),
    Migration(
        2,
        "treatment_decision: clinicians' accept or override of treatment recommendations",
        V2_STATEMENTS,
    ),
    Migration(
        3,
        "sign-in accounts and roles, per-store secret, hash-chained audit trail",
        V3_STATEMENTS,
        _v3_data,
    ),
    Migration(
        4,
        "cohort_base: derived per-patient row for cohort queries (analytics issue)",
        _cohort_base_statements(),
        _v4_data,
    ),
    Migration(
        5,
        "worklist_entry: stored worklist ranked by forecast risk (analytics issue)",
        _worklist_statements(),
    ),
    Migration(
        6,
        "worklist_review: who reviewed a worklist patient when (analytics issue)",
        _review_statements(),
    ),
    Migration(
        7,
        "ai_refusal: AI reads refused by the input guard (imaging issue 18)",
        V7_AI_REFUSAL_STATEMENTS,
    ),
    Migration(
        8,
        "worklist buckets: events and imaging cadence per entry; review note and assignee (issue 17)",
        _bucket_statements(),
    ),
    Migration(
        9,
        "episode: disease settings and lines of therapy, derived for existing patients (issue 17)",
        episodes.TABLE_STATEMENTS,
        _v9_data,
    ),
    Migration(
        10,
        "saved_cohort: named cohort definitions, reopened by link (issue 20)",
        V10_SAVED_COHORT_STATEMENTS,
    ),
    Migration(
        11,
        "app_user.deactivated_at: accounts an admin deactivated (governance issue 22)",
        V11_USER_STATEMENTS,
    ),
    Migration(
        12,
        "governance_setting and ai_read_input: approval setting, AI read inputs for drift (issue 22)",
        lifecycle_tables.V12_STATEMENTS,
    ),
    Migration(
        13,
        "ai_finding.weights_sha256: the weights that made each AI read (sign-off, issue 22)",
        V13_AI_WEIGHTS_STATEMENTS,
    ),
    Migration(
        14,
        "ai_volume_read and ai_volume_lesion: 3D reads and lesions tracked over time (issue 21)",
        V14_VOLUME_STATEMENTS,
    ),
    Migration(
        15,
        "forecast_prior: the growth-inhibition prior stored by the worklist refresh (issue 23)",
        worklist_schema.PRIOR_STATEMENTS,
    ),
    Migration(
        16,
        "measurement.model_name, model_version, weights_sha256: who made an AI measurement (sign-off)",
        V16_AI_MEASUREMENT_STATEMENTS,
    ),
)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_name = 'schema_version'"
    ).fetchall()[0][0]  # fetchall: a half-read result blocks con.register() afterwards
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchall()[0]
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; safe to call on every open.

    Each migration runs in its own transaction with its ``schema_version`` row,
    so a crash leaves the file at a whole version, never between two.
    Returns the version reached.
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    current = current_version(con)
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {current} is newer than this OncoLens "
            f"(knows up to {SCHEMA_VERSION}); upgrade OncoLens"
        )
    for m in MIGRATIONS:
        if m.version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in m.statements:
                con.execute(statement)
            if m.data_step is not None:
                m.data_step(con)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)",
                [m.version, m.description],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    return current_version(con)
