"""Write a simulated clinic into a new DuckDB store, all or nothing.

Why a temporary file and a rename: a demo build of a million patients takes a
minute; if it fails or is interrupted, the user must not be left with half a
clinic, and the app (which opens the file per request) must see either the old
file or the new one. ``os.replace`` within one folder is atomic on POSIX.

Tables are filled with set-based SQL over NumPy arrays registered as views:
strings (names, UIDs, dates) are derived inside DuckDB, in parallel, never in
a Python loop.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics import store
from analytics.cohorts import base as cohort_base
from sample_data.cohort import (
    AGENTS,
    FAMILY_NAMES,
    GIVEN_NAMES,
    OPTIONS,
    SITES,
    TREATMENT_CLASSES,
    SimulatedClinic,
    simulate_clinic,
)
from sample_data.metastatic import LINE_AGENTS
from sample_data.records import (
    EPISODE_END_REASONS,
    EPISODE_KINDS,
    EPISODE_SETTINGS,
    STUDY_KINDS,
)

BRAIN_CONCEPT = (
    "brain_lesion_longest_diameter"  # as sample_data.demo_imaging and analytics.forecast
)

GENERATOR_VERSION = "2"  # 2: disease settings, lines of therapy, surveillance imaging
MAX_PATIENTS = 5_000_000


class DemoError(Exception):
    """The demo clinic could not be written; the message says why and nothing was left behind."""


@dataclass(frozen=True)
class DemoSummary:
    path: Path
    patients: int
    seed: int
    rows: dict[str, int]
    simulate_s: float
    write_s: float  # tables, cohort base and (``rank_worklist``) the stored worklist
    rank_s: float = 0.0  # of write_s: ranking the stored worklist (``analytics.worklist.stored``)


def _sql_list(values) -> str:
    """A SQL list literal of our own constant labels (never user input)."""
    return "[" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) + "]"


def check_target(path: Path, force: bool) -> None:
    """Refuse early, before any work, with a message a user can act on."""
    if path.exists() and path.is_dir():
        raise DemoError(f"{path} is a folder; give a file path such as {path / 'oncolens.duckdb'}")
    if path.exists() and not force:
        raise DemoError(f"{path} already exists; pass --force to replace it with a new demo clinic")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create folder {parent}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DemoError(f"cannot write to folder {parent} (permission denied)")


def write_demo(
    path: str | Path,
    patients: int = 2000,
    seed: int = 20261125,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    rank_worklist: bool = True,
    cutoff: str | None = None,
) -> DemoSummary:
    """Simulate ``patients`` and write them as a new store at ``path`` (atomically).

    ``rank_worklist``: also fill the stored worklist (``analytics.worklist.stored``; about
    five minutes at a million patients); ``oncolens demo`` passes False and ranks it once
    after training the clinic's treatment model, whose recurrence risk joins the ranking.
    ``cutoff``: the data cut-off (YYYY-MM-DD; default 2026-06-30): a clinic as it stood earlier,
    e.g. to train a model on data that ends before another store's patients were diagnosed.
    """
    if isinstance(patients, bool) or not isinstance(patients, (int, np.integer)):
        raise DemoError("--patients must be a whole number")
    if patients < 1:
        raise DemoError(f"--patients must be at least 1 (got {patients})")
    if patients > MAX_PATIENTS:
        raise DemoError(f"--patients is capped at {MAX_PATIENTS:,} on one machine")
    path = Path(path).expanduser().absolute()
    check_target(path, force)
    say = progress or (lambda _msg: None)

    t0 = time.perf_counter()
    say(f"simulating {patients:,} patients (seed {seed})")
    cutoff_day = None if cutoff is None else int(np.datetime64(cutoff, "D").astype(np.int64))
    clinic = simulate_clinic(patients, seed=seed, cutoff_day=cutoff_day)
    t1 = time.perf_counter()

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    try:
        con = store.connect(tmp, create=True)
        try:
            # keep the 1M-patient build under 8 GB: DuckDB spills instead of growing
            con.execute("SET memory_limit = '3GB'")
            say("writing tables")
            _write(con, clinic)
            say("deriving the cohort base")

            # the Cohorts page's per-patient rows (analytics.cohorts.base)
            cohort_base.refresh_base(con)
            rank_s = 0.0
            if rank_worklist:
                # lazy: at the top, importing sample_data.demo took 957 ms instead of 226 ms
                from analytics.worklist.stored import refresh as refresh_worklist

                say("ranking the worklist by forecast risk")
                # the Worklist page's stored rows, without a treatment model; autocommit, so the
                # ranking's threads (one per core: None) read what this connection has written
                rank_s = refresh_worklist(con, threads=None).seconds
            rows = store.table_counts(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + ".wal").unlink()
    except BaseException as exc:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        if isinstance(exc, OSError):
            raise DemoError(f"could not write {path}: {exc.strerror or exc}") from exc
        raise
    t2 = time.perf_counter()
    say(f"done: {path}")
    return DemoSummary(path, patients, seed, rows, t1 - t0, t2 - t1, rank_s)


# Tables whose primary key is added after their rows are in (``_write``): (table, key column).
LATE_KEYS = (("imaging_study", "study_uid"), ("imaging_series", "series_uid"))
_UID_LOW_DIGITS = 18  # the UID's last digits, computed as a BIGINT (``_uid_sql``)


def _uid_sql(prefix: int, n_studies: int) -> tuple[str, list]:
    """The SQL of a study's (k = 0) or series' (k = 1) UID, ``'2.25.' || (prefix + study_id * 2 + k)``
    in decimal, as a format string with ``{k}`` and its parameters.

    Why not the HUGEINT sum as written: DuckDB's HUGEINT-to-text is a third of a microsecond per
    UID and the demo writes three per study. The prefix's last 18 digits plus the counter stay
    below 10^18 (the counter is at most twice the number of studies), so the sum is the prefix's
    leading digits followed by that BIGINT padded to 18 digits: the same text. If it would carry
    into the leading digits (a prefix ending in 18 nines, give or take a few million) the HUGEINT
    form is used.
    """
    high, low = divmod(prefix, 10**_UID_LOW_DIGITS)
    if high == 0 or low + 2 * n_studies + 2 >= 10**_UID_LOW_DIGITS:
        return "'2.25.' || (?::HUGEINT + study_id * 2 + {k})::VARCHAR", [prefix]
    return (
        f"? || lpad((?::BIGINT + study_id * 2 + {{k}})::VARCHAR, {_UID_LOW_DIGITS}, '0')",
        [f"2.25.{high}", low],
    )


def _without_late_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Recreate the (empty) ``LATE_KEYS`` tables without their primary key; ``_add_late_keys``
    puts it back once the rows are in.

    Why: DuckDB checks and indexes a key row by row as rows go in; added to a full table it is
    built in one pass over the column (about 1.5 of the 19 CPU-seconds of writing 100,000
    patients, docs/benchmarks.md). The columns, types and constraints are the store's own
    (``duckdb_constraints`` is the same; the key is listed as a table constraint in the
    catalogue's text). Only ever on the generator's new, empty file.
    """
    for table, column in LATE_KEYS:
        (sql,) = store.one_row(
            con.execute(
                "SELECT sql FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
                [table],
            )
        )
        keyless = sql.replace(f"{column} VARCHAR PRIMARY KEY", f"{column} VARCHAR", 1)
        if keyless == sql:
            raise DemoError(f"the store's {table} table is not as the generator expects")
        con.execute(f"DROP TABLE {table}")  # constant names (LATE_KEYS)
        con.execute(keyless)


def _add_late_keys(con: duckdb.DuckDBPyConnection) -> None:
    for table, column in LATE_KEYS:
        con.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({column})")  # constant names


def _write(con: duckdb.DuckDBPyConnection, c: SimulatedClinic) -> None:
    p = c.patient
    epoch = "DATE '1970-01-01'"
    con.execute("BEGIN TRANSACTION")
    _without_late_keys(con)

    patients = pd.DataFrame(p)
    patients["given_name"] = GIVEN_NAMES[p["given_idx"]]
    patients["family_name"] = FAMILY_NAMES[p["family_idx"]]
    con.register("sim_patient", patients)
    con.execute(
        f"""INSERT INTO person
        SELECT person_id, 'MRN' || lpad(person_id::VARCHAR, 8, '0'), given_name, family_name,
               {epoch} + birth_day, 'F', {_sql_list(SITES)}[site + 1],
               CASE WHEN post THEN 'post' ELSE 'pre' END
        FROM sim_patient ORDER BY person_id"""  # noqa: S608 - constants only
    )
    con.execute(
        f"""INSERT INTO observation_period
        SELECT person_id, {epoch} + dx_day, {epoch} + fu_end_day,
               ['data_cutoff', 'lost_to_follow_up', 'death'][end_reason + 1]
        FROM sim_patient ORDER BY person_id"""  # noqa: S608
    )
    con.execute(
        f"""INSERT INTO condition_occurrence
        SELECT person_id, person_id, 'breast_cancer', {epoch} + dx_day,
               CASE WHEN laterality_left THEN 'left' ELSE 'right' END,
               ['I', 'II', 'III', 'IV'][stage], grade, tsize_mm, nodes, er_fmol, pr_fmol,
               er_pos, pr_pos, her2
        FROM sim_patient ORDER BY person_id"""  # noqa: S608
    )

    t = pd.DataFrame(c.treatments)
    con.register("sim_treatment", t)
    con.execute(
        f"""INSERT INTO treatment_exposure
        SELECT row_number() OVER () AS exposure_id, person_id,
               CASE WHEN class IN (0, 3) THEN 'procedure' ELSE 'drug' END,
               {_sql_list(TREATMENT_CLASSES)}[class + 1],
               {_sql_list(AGENTS)}[agent + 1], line,
               CASE WHEN regimen >= 0 THEN {_sql_list(OPTIONS)}[regimen + 1] END,
               {epoch} + start_day,
               CASE WHEN ongoing THEN NULL ELSE {epoch} + end_day END
        FROM sim_treatment"""  # noqa: S608
    )

    st = c.studies
    n_studies = st["day"].size
    studies = pd.DataFrame({"study_id": np.arange(1, n_studies + 1, dtype=np.int64), **st})
    con.register("sim_study", studies)
    # UUID-derived UIDs (PS3.5 B.2, root 2.25): a 120-bit random prefix from the seed plus a
    # counter, so UIDs are unique across builds yet identical for the same seed.
    prefix = int(np.random.default_rng([c.seed, 2025]).integers(1, 2**60)) << 60
    uid, uid_args = _uid_sql(prefix, n_studies)
    modalities = _sql_list(m for m, _ in STUDY_KINDS)
    descriptions = _sql_list(d for _, d in STUDY_KINDS)
    body_parts = _sql_list(["BREAST", "BREAST", "CHEST_ABDOMEN_PELVIS", "BRAIN"])
    con.execute(
        f"""INSERT INTO imaging_study
        SELECT {uid.format(k=0)}, person_id, {epoch} + day, {modalities}[kind + 1],
               {descriptions}[kind + 1], 'ACC' || lpad(study_id::VARCHAR, 10, '0')
        FROM sim_study""",  # noqa: S608 - constants only
        uid_args,
    )
    con.execute(
        f"""INSERT INTO imaging_series
        SELECT {uid.format(k=1)}, {uid.format(k=0)}, {modalities}[kind + 1], {body_parts}[kind + 1],
               {descriptions}[kind + 1]
        FROM sim_study""",  # noqa: S608
        uid_args + uid_args,
    )

    # Measurements: three labs per clinic visit, one radiology read per CT (target lesion) and
    # brain MR study; sorted in NumPy so the table is in person order.
    v = c.visits
    n_visits = v["day"].size
    read = ~np.isnan(st["lesion_mm"])
    read_kind = np.where(st["kind"][read] == 3, 4, 3).astype(np.int8)  # 3: target lesion, 4: brain
    person = np.concatenate([np.repeat(v["person_id"], 3), st["person_id"][read]])
    day = np.concatenate([np.repeat(v["day"], 3), st["day"][read]])
    concept = np.concatenate([np.tile(np.arange(3, dtype=np.int8), n_visits), read_kind])
    value = np.concatenate(
        [
            np.stack([v["ca15_3"], v["haemoglobin"], v["neutrophils"]], axis=1).ravel(),
            st["lesion_mm"][read],
        ]
    )
    study = np.concatenate([np.zeros(3 * n_visits, np.int64), studies["study_id"].to_numpy()[read]])
    order = np.lexsort((concept, day, person))
    meas = pd.DataFrame(
        {
            "measurement_id": np.arange(1, order.size + 1, dtype=np.int64),
            "person_id": person[order],
            "day": day[order],
            "concept": concept[order],
            "value": value[order],
            "study_id": study[order],
        }
    )
    con.register("sim_measurement", meas)
    concepts = ("ca15_3", "haemoglobin", "neutrophils", "lesion_longest_diameter", BRAIN_CONCEPT)
    units = ("U/mL", "g/dL", "10^9/L", "mm", "mm")
    sources = ("clinic", "clinic", "clinic", "radiology", "radiology")
    con.execute(
        f"""INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value,
            unit, source, study_uid)
        SELECT measurement_id, person_id, {epoch} + day,
               {_sql_list(concepts)}[concept + 1], value,
               {_sql_list(units)}[concept + 1], {_sql_list(sources)}[concept + 1],
               CASE WHEN study_id > 0 THEN {uid.format(k=0)} END
        FROM sim_measurement""",  # noqa: S608
        uid_args,
    )
    del meas, value

    ep = pd.DataFrame(c.episodes)
    con.register("sim_episode", ep)
    line_agents = _sql_list(a for sub in LINE_AGENTS for a, _ in sub)
    con.execute(
        f"""INSERT INTO episode
        SELECT row_number() OVER (), person_id, {_sql_list(EPISODE_SETTINGS)}[setting + 1],
               {_sql_list(EPISODE_KINDS)}[kind + 1], CASE WHEN line > 0 THEN line END,
               {epoch} + start_day, CASE WHEN end_day >= 0 THEN {epoch} + end_day END,
               CASE WHEN end_reason >= 0 THEN {_sql_list(EPISODE_END_REASONS)}[end_reason + 1] END,
               CASE WHEN agent_line >= 0
                    THEN {line_agents}[agent_line + 1]
                         || CASE WHEN brain THEN '; progression: new brain metastasis' ELSE '' END
                    WHEN setting = 1 AND kind = 0 THEN 'after recurrence' END,
               'demo'
        FROM sim_episode"""  # noqa: S608 - constants only
    )

    e = pd.DataFrame(c.events)
    con.register("sim_event", e)
    con.execute(
        f"""INSERT INTO outcome_event
        SELECT row_number() OVER (), person_id, ['recurrence', 'death'][type + 1], {epoch} + day
        FROM sim_event"""  # noqa: S608
    )

    n = c.n
    truth = pd.DataFrame(
        {
            "person_id": np.repeat(p["person_id"], len(OPTIONS)),
            "option": np.tile(np.arange(len(OPTIONS), dtype=np.int8), n),
            "rfs_days": c.truth["rfs_days"].ravel(),
            "rfs_5y": c.truth["rfs_5y"].ravel(),
            "rmst_5y": c.truth["rmst_5y"].ravel(),
        }
    )
    con.register("sim_truth", truth)
    con.execute(
        f"""INSERT INTO truth.potential_outcome
        SELECT person_id, {_sql_list(OPTIONS)}[option + 1], rfs_days, rfs_5y, rmst_5y FROM sim_truth"""  # noqa: S608
    )
    con.execute(
        f"""INSERT INTO truth.patient_parameters
        SELECT person_id, {_sql_list(OPTIONS)}[assigned + 1], {_sql_list(OPTIONS)}[best + 1],
               prognostic, growth, decay FROM sim_patient ORDER BY person_id"""  # noqa: S608
    )
    cutoff = str(np.datetime64(int(c.cutoff_day), "D"))
    con.executemany(
        "INSERT INTO clinic_metadata VALUES (?, ?)",
        [
            ["kind", "demo"],
            ["generator_version", GENERATOR_VERSION],
            ["seed", str(c.seed)],
            ["patients", str(c.n)],
            ["data_cutoff", cutoff],
            ["treatment_options", ",".join(OPTIONS)],
        ],
    )
    _add_late_keys(con)
    con.execute("COMMIT")
    for view in (
        "sim_patient",
        "sim_treatment",
        "sim_study",
        "sim_measurement",
        "sim_episode",
        "sim_event",
        "sim_truth",
    ):
        con.unregister(view)
