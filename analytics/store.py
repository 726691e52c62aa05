"""The DuckDB store: every table definition, migrations, and how connections are opened.

Why one module owns the schema: the app, the CLI and the demo generator must agree
on one set of tables and constraints, and a hospital's file written by an older
version must be brought forward by the same code (``migrate``), never by hand.

Tables follow the OMOP Common Data Model where it fits (person, condition,
exposures, measurement, observation period) plus imaging and governance tables.
The simulation's ground truth (potential outcomes under every treatment option)
lives in the separate schema ``truth``: no model, page or query outside the
validation code reads it.

Concurrency (see docs/architecture.md): DuckDB lets one process hold a file, so
every connection here is short-lived. ``open_store`` retries while another
process holds the lock, and writers keep their transactions short (data are
prepared before the file is opened), so the app and a CLI writer take turns
instead of failing.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

SCHEMA_VERSION = 6

# Treatment options of the demo clinic: the first-line systemic regimen.
TREATMENT_OPTIONS = ("endocrine", "chemotherapy", "chemo_endocrine")


class StoreError(Exception):
    """A store that cannot be opened or used; the message is meant for the user."""


class StoreBusyError(StoreError):
    """Another process held the database file for longer than we were willing to wait."""


class NotADatabaseError(StoreError):
    """The file exists but is not a DuckDB database (or is damaged)."""


class MissingDatabaseError(StoreError):
    """No database file at the given path."""


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


_V1 = (
    "CREATE SCHEMA IF NOT EXISTS truth",
    # --- who -----------------------------------------------------------------
    """CREATE TABLE person (
        person_id        BIGINT PRIMARY KEY,
        mrn              VARCHAR NOT NULL UNIQUE,      -- hospital record number (direct identifier)
        given_name       VARCHAR NOT NULL,             -- direct identifier
        family_name      VARCHAR NOT NULL,             -- direct identifier
        birth_date       DATE NOT NULL,
        sex              VARCHAR NOT NULL CHECK (sex IN ('F', 'M')),
        site             VARCHAR NOT NULL,             -- treating clinic, for subgroup audits
        menopausal_status VARCHAR NOT NULL CHECK (menopausal_status IN ('pre', 'post'))
    )""",
    """CREATE TABLE observation_period (
        person_id        BIGINT PRIMARY KEY,
        start_date       DATE NOT NULL,
        end_date         DATE NOT NULL,
        end_reason       VARCHAR NOT NULL CHECK (end_reason IN ('data_cutoff', 'lost_to_follow_up', 'death')),
        CHECK (end_date >= start_date)
    )""",
    # --- what ----------------------------------------------------------------
    """CREATE TABLE condition_occurrence (
        condition_id     BIGINT PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        condition        VARCHAR NOT NULL,             -- e.g. 'breast_cancer'
        diagnosis_date   DATE NOT NULL,
        laterality       VARCHAR NOT NULL CHECK (laterality IN ('left', 'right')),
        stage            VARCHAR NOT NULL CHECK (stage IN ('I', 'II', 'III', 'IV')),
        grade            TINYINT NOT NULL CHECK (grade BETWEEN 1 AND 3),
        tumour_size_mm   DOUBLE NOT NULL CHECK (tumour_size_mm > 0 AND tumour_size_mm < 300),
        positive_nodes   SMALLINT NOT NULL CHECK (positive_nodes >= 0),
        er_fmol          DOUBLE NOT NULL CHECK (er_fmol >= 0),   -- oestrogen receptor, fmol/mg
        pr_fmol          DOUBLE NOT NULL CHECK (pr_fmol >= 0),   -- progesterone receptor, fmol/mg
        er_positive      BOOLEAN NOT NULL,
        pr_positive      BOOLEAN NOT NULL,
        her2_positive    BOOLEAN NOT NULL
    )""",
    """CREATE TABLE treatment_exposure (
        exposure_id      BIGINT PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        exposure_type    VARCHAR NOT NULL CHECK (exposure_type IN ('drug', 'procedure')),
        treatment_class  VARCHAR NOT NULL CHECK (treatment_class IN
                           ('surgery', 'chemotherapy', 'endocrine', 'radiotherapy', 'anti_her2')),
        agent            VARCHAR NOT NULL,
        line_of_therapy  TINYINT NOT NULL CHECK (line_of_therapy >= 1),
        regimen          VARCHAR,                      -- the option this line belongs to, if any
        start_date       DATE NOT NULL,
        end_date         DATE,
        CHECK (end_date IS NULL OR end_date >= start_date),
        CHECK (regimen IS NULL OR regimen IN ('endocrine', 'chemotherapy', 'chemo_endocrine'))
    )""",
    # No PRIMARY KEY on the fact table: an ART index over tens of millions of rows
    # tripled the bulk-load time and memory (docs/architecture.md); ids are unique by
    # construction (generator, import sequence) and imports de-duplicate on natural keys.
    """CREATE TABLE measurement (
        measurement_id   BIGINT NOT NULL,
        person_id        BIGINT NOT NULL,
        measurement_date DATE NOT NULL,
        concept          VARCHAR NOT NULL,             -- 'lesion_longest_diameter', 'ca15_3', ...
        value            DOUBLE NOT NULL,
        unit             VARCHAR NOT NULL,
        source           VARCHAR NOT NULL CHECK (source IN ('clinic', 'radiology', 'ai', 'import')),
        study_uid        VARCHAR,                      -- imaging study the value was read from
        CHECK (concept <> 'lesion_longest_diameter' OR (value >= 0 AND unit = 'mm'))
    )""",
    """CREATE TABLE outcome_event (
        event_id         BIGINT PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        event_type       VARCHAR NOT NULL CHECK (event_type IN ('recurrence', 'death')),
        event_date       DATE NOT NULL,
        UNIQUE (person_id, event_type)
    )""",
    # --- imaging -------------------------------------------------------------
    """CREATE TABLE imaging_study (
        study_uid        VARCHAR PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        study_date       DATE NOT NULL,
        modality         VARCHAR NOT NULL CHECK (modality IN ('MG', 'MR', 'CT', 'US', 'PT', 'OT')),
        description      VARCHAR,
        accession_number VARCHAR
    )""",
    """CREATE TABLE imaging_series (
        series_uid       VARCHAR PRIMARY KEY,
        study_uid        VARCHAR NOT NULL,
        modality         VARCHAR NOT NULL,
        body_part        VARCHAR,
        description      VARCHAR
    )""",
    """CREATE TABLE imaging_instance (
        sop_instance_uid VARCHAR PRIMARY KEY,
        series_uid       VARCHAR NOT NULL,
        file_path        VARCHAR,                      -- where the DICOM file lies, if stored locally
        rows             INTEGER CHECK (rows > 0),
        columns          INTEGER CHECK (columns > 0),
        pixel_spacing_mm DOUBLE CHECK (pixel_spacing_mm > 0)
    )""",
    """CREATE TABLE ai_finding (
        finding_id       BIGINT PRIMARY KEY,
        person_id        BIGINT,
        sop_instance_uid VARCHAR,
        model_name       VARCHAR NOT NULL,
        model_version    VARCHAR NOT NULL,
        predicted_class  VARCHAR NOT NULL,
        probability      DOUBLE NOT NULL CHECK (probability BETWEEN 0 AND 1),
        longest_diameter_mm DOUBLE CHECK (longest_diameter_mm >= 0),
        created_at       TIMESTAMP NOT NULL
    )""",
    # --- governance ----------------------------------------------------------
    "CREATE SEQUENCE audit_event_seq START 1",
    """CREATE TABLE audit_event (
        event_id         BIGINT PRIMARY KEY DEFAULT nextval('audit_event_seq'),
        occurred_at      TIMESTAMP NOT NULL,
        actor            VARCHAR NOT NULL,
        role             VARCHAR,
        action           VARCHAR NOT NULL,
        subject          VARCHAR,                      -- pseudonymous reference, never a name
        details          VARCHAR                       -- JSON text
    )""",
    """CREATE TABLE clinic_metadata (
        key              VARCHAR PRIMARY KEY,
        value            VARCHAR NOT NULL
    )""",
    # --- hidden ground truth of the simulation (read only by validation code) --
    """CREATE TABLE truth.potential_outcome (
        person_id        BIGINT NOT NULL,
        option           VARCHAR NOT NULL CHECK (option IN ('endocrine', 'chemotherapy', 'chemo_endocrine')),
        rfs_days         DOUBLE NOT NULL CHECK (rfs_days > 0),  -- recurrence-free survival had she received this option
        rfs_5y_probability DOUBLE NOT NULL CHECK (rfs_5y_probability BETWEEN 0 AND 1),
        rmst_5y_days     DOUBLE NOT NULL CHECK (rmst_5y_days >= 0),
        PRIMARY KEY (person_id, option)
    )""",
    """CREATE TABLE truth.patient_parameters (
        person_id        BIGINT PRIMARY KEY,
        assigned_option  VARCHAR NOT NULL,
        best_option      VARCHAR NOT NULL,
        linear_predictor DOUBLE NOT NULL,              -- prognostic part of the log-hazard
        tgi_growth_per_day DOUBLE NOT NULL,            -- g in f(t) = f0 (exp(-d t) + exp(g t) - 1)
        tgi_decay_per_day  DOUBLE NOT NULL             -- d under the assigned option
    )""",
)

# Version 2 (additive): what the clinician did with a treatment recommendation.
_V2 = (
    "CREATE SEQUENCE treatment_decision_seq START 1",
    """CREATE TABLE treatment_decision (
        decision_id      BIGINT PRIMARY KEY DEFAULT nextval('treatment_decision_seq'),
        person_id        BIGINT NOT NULL,
        model_version    VARCHAR NOT NULL,             -- the treatment model card's version
        recommended      VARCHAR,                      -- NULL: the model said "no clear difference"
        chosen           VARCHAR NOT NULL,             -- the option the clinician chose
        accepted         BOOLEAN NOT NULL,             -- chosen is the recommended option
        reason           VARCHAR,                      -- free text; required unless accepted
        actor            VARCHAR NOT NULL,
        decided_at       TIMESTAMP NOT NULL,
        shown            VARCHAR,                      -- JSON: the figures on screen when deciding
        CHECK (NOT accepted OR (recommended IS NOT NULL AND chosen = recommended)),
        CHECK (accepted OR length(trim(coalesce(reason, ''))) > 0)
    )""",
)

# Version 3 (additive): sign-in accounts and the hash-chained audit trail (governance issue).
_V3 = (
    # the audit trail gains what it must say (model, inputs) and its hash chain
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS model_name VARCHAR",
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS model_version VARCHAR",
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS inputs_sha256 VARCHAR",  # hash of what the model saw
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS prev_hash VARCHAR",      # hash of the event before
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS hash VARCHAR",           # sha256(prev_hash + row)
    # the end of the chain: catches removed last events, and a concurrent fork conflicts on its row
    """CREATE TABLE IF NOT EXISTS audit_chain_head (
        id               TINYINT PRIMARY KEY CHECK (id = 1),
        events           BIGINT NOT NULL CHECK (events >= 0),
        last_event_id    BIGINT,
        last_hash        VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS app_user (
        username         VARCHAR PRIMARY KEY,          -- lower case; staff sign-in name
        role             VARCHAR NOT NULL CHECK (role IN ('oncologist', 'care_team', 'ethics_board', 'admin')),
        password_hash    VARCHAR,                      -- argon2id PHC string; NULL: single sign-on only
        email            VARCHAR UNIQUE,               -- single sign-on identity (lower case)
        created_at       TIMESTAMP NOT NULL,
        CHECK (password_hash IS NOT NULL OR email IS NOT NULL)
    )""",
    # failed sign-ins per typed username, keyed by a keyed hash so that a password
    # typed into the username box is never stored
    """CREATE TABLE IF NOT EXISTS sign_in_throttle (
        username_key     VARCHAR PRIMARY KEY,          -- HMAC-SHA256 of the typed username
        failures         INTEGER NOT NULL CHECK (failures >= 0),
        last_failure_at  TIMESTAMP NOT NULL
    )""",
    # per-store secrets (pseudonym and throttle keys); never shown on a page
    """CREATE TABLE IF NOT EXISTS app_secret (
        name             VARCHAR PRIMARY KEY,
        value            VARCHAR NOT NULL,             -- hex
        created_at       TIMESTAMP NOT NULL
    )""",
)


def _v3_data(con: duckdb.DuckDBPyConnection) -> None:
    """Create the store's secret and seal the events written before the chain existed."""
    from analytics import audit, users  # they import this module: imported here, not at the top

    users.ensure_secret(con)
    audit.seal_unchained(con)


def _cohort_base_statements() -> tuple[str, ...]:
    """Version 4 (additive): the derived ``cohort_base`` table and its freshness row (analytics.cohort_base)."""
    # defined beside the query whose rows it holds
    from analytics.cohort_base import TABLE_STATEMENTS

    return TABLE_STATEMENTS


def _v4_data(con: duckdb.DuckDBPyConnection) -> None:
    """Fill ``cohort_base`` from the rows already in the store (seconds at a million patients, once)."""
    from analytics.cohort_base import refresh_base

    refresh_base(con)


def _worklist_statements() -> tuple[str, ...]:
    """Version 5 (additive): the stored worklist and its freshness row (analytics.worklist_schema).

    No data step: filling it is a forecast for every eligible patient (minutes at a million
    patients), too long for a migration that the app's first write may trigger. Until a writer
    or ``oncolens worklist --refresh`` fills it, the Worklist page says so (and ranks small
    stores on the fly).
    """
    from analytics.worklist_schema import TABLE_STATEMENTS

    return TABLE_STATEMENTS


def _review_statements() -> tuple[str, ...]:
    """Version 6 (additive): worklist reviews, append-only (analytics.worklist_review)."""
    from analytics.worklist_schema import REVIEW_STATEMENTS

    return REVIEW_STATEMENTS


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial OMOP-shaped schema, imaging, governance, simulation truth", _V1),
    Migration(2, "treatment_decision: clinicians' accept or override of treatment recommendations", _V2),
    Migration(3, "sign-in accounts and roles, per-store secret, hash-chained audit trail", _V3, _v3_data),
    Migration(4, "cohort_base: derived per-patient row for cohort queries (analytics issue)",
              _cohort_base_statements(), _v4_data),
    Migration(5, "worklist_entry: stored worklist ranked by forecast risk (analytics issue)",
              _worklist_statements()),
    Migration(6, "worklist_review: who reviewed a worklist patient when (analytics issue)",
              _review_statements()),
)


def _current_version(con: duckdb.DuckDBPyConnection) -> int:
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
    current = _current_version(con)
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
    return _current_version(con)


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
        try:
            migrate(con)
        except Exception:
            con.close()
            raise
    else:
        version = _current_version(con)
        if version == 0:
            con.close()
            raise NotADatabaseError(f"{path} is a DuckDB file but not an OncoLens store")
    return con


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


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every store table (``truth`` included, counted, never read)."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' ORDER BY table_schema, table_name"
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table in rows:
        ident = f'"{schema}"."{table}"'  # identifiers from the catalogue, not from users
        counts[f"{schema}.{table}" if schema != "main" else table] = con.execute(
            f"SELECT count(*) FROM {ident}"  # noqa: S608
        ).fetchone()[0]
    return counts


def default_db_path() -> Path:
    """``$ONCOLENS_DB`` if set (``oncolens serve --db`` sets it for the app), else ~/.oncolens/."""
    import os

    env = os.environ.get("ONCOLENS_DB")
    return Path(env).expanduser() if env else Path.home() / ".oncolens" / "oncolens.duckdb"
