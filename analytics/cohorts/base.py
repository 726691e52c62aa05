"""The cohort base: one derived row per patient (index diagnosis, covariates, first-line regimen, RFS).

Why a derived table: every cohort question starts from the same per-patient row,
and building it from the OMOP-shaped tables takes a window over the diagnoses,
two group-bys and four joins — about 4 s of a 2-core machine at a million
patients, far over the Cohorts page's 300 ms. Stored once (``cohort_base``,
schema version 4, written in ``person_id`` order), a cohort with its
Kaplan-Meier counts is one scan of a narrow table.

Freshness: writers of the source tables (the demo generator, ``oncolens
import``) call ``refresh_base`` inside their own transaction, so the table and
its sources change together. As a safety net for any other writer (or a store
written before version 4, opened read-only), ``base_source`` compares a cheap
fingerprint of the sources (row counts and largest ids) with the one recorded
at the last refresh and, when they differ, answers from the live query instead:
slower, never stale. An in-place UPDATE that keeps counts and ids would escape
the fingerprint; that is why writers refresh explicitly.
"""

from __future__ import annotations

import duckdb

# This module imports nothing from analytics: analytics.store imports it for its migration.
BASE_TABLE = "cohort_base"
NO_REGIMEN = "none recorded"  # first-line regimen of a patient without one

# One row per patient with an index diagnosis and an observation period. Constant SQL.
BASE_SQL = f"""
    WITH idx AS (
        SELECT * FROM condition_occurrence
        QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY diagnosis_date, condition_id) = 1
    ),
    first_line AS (
        SELECT person_id, min(regimen) AS regimen FROM treatment_exposure
        WHERE line_of_therapy = 1 AND regimen IS NOT NULL GROUP BY person_id
    ),
    first_event AS (
        SELECT person_id, min(event_date) AS event_date FROM outcome_event GROUP BY person_id
    )
    SELECT p.person_id,
           date_sub('year', p.birth_date, i.diagnosis_date)::INTEGER AS age_years,
           CASE WHEN date_sub('year', p.birth_date, i.diagnosis_date) < 40 THEN '<40'
                WHEN date_sub('year', p.birth_date, i.diagnosis_date) < 50 THEN '40-49'
                WHEN date_sub('year', p.birth_date, i.diagnosis_date) < 60 THEN '50-59'
                WHEN date_sub('year', p.birth_date, i.diagnosis_date) < 70 THEN '60-69'
                ELSE '70+' END AS age_group,
           p.menopausal_status, p.site, i.diagnosis_date, i.stage, i.grade::VARCHAR AS grade,
           i.tumour_size_mm, i.positive_nodes, i.er_fmol, i.pr_fmol,
           CASE WHEN i.er_positive THEN 'positive' ELSE 'negative' END AS er_status,
           CASE WHEN i.pr_positive THEN 'positive' ELSE 'negative' END AS pr_status,
           CASE WHEN i.her2_positive THEN 'positive' ELSE 'negative' END AS her2_status,
           coalesce(f.regimen, '{NO_REGIMEN}') AS first_line_regimen,
           greatest(date_diff('day', i.diagnosis_date,
                              least(coalesce(e.event_date, op.end_date), op.end_date)), 0)::INTEGER
               AS rfs_days,
           coalesce(e.event_date <= op.end_date, false) AS event
    FROM person AS p
    JOIN idx AS i USING (person_id)
    JOIN observation_period AS op USING (person_id)
    LEFT JOIN first_line AS f USING (person_id)
    LEFT JOIN first_event AS e USING (person_id)
"""  # noqa: S608 - constants only

# The schema-version-4 statements (analytics.store owns them; defined here beside the query they mirror).
TABLE_STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS {BASE_TABLE} (
        person_id        BIGINT NOT NULL,             -- derived: rebuilt by refresh_base, never edited
        age_years        INTEGER,
        age_group        VARCHAR,
        menopausal_status VARCHAR,
        site             VARCHAR,
        diagnosis_date   DATE,
        stage            VARCHAR,
        grade            VARCHAR,
        tumour_size_mm   DOUBLE,
        positive_nodes   SMALLINT,
        er_fmol          DOUBLE,
        pr_fmol          DOUBLE,
        er_status        VARCHAR,
        pr_status        VARCHAR,
        her2_status      VARCHAR,
        first_line_regimen VARCHAR,
        rfs_days         INTEGER,
        event            BOOLEAN
    )""",
    """CREATE TABLE IF NOT EXISTS cohort_base_state (
        id               TINYINT PRIMARY KEY CHECK (id = 1),
        source_fingerprint VARCHAR NOT NULL,           -- sources' row counts and largest ids at refresh
        refreshed_at     TIMESTAMP NOT NULL
    )""",
)

# One UNION ALL, not eight scalar subqueries: the same answer in ~2 ms instead of ~40 ms.
_FINGERPRINT_SQL = """
    SELECT 1, count(*), 0 FROM person
    UNION ALL SELECT 2, count(*), 0 FROM observation_period
    UNION ALL SELECT 3, count(*), coalesce(max(condition_id), 0) FROM condition_occurrence
    UNION ALL SELECT 4, count(*), coalesce(max(exposure_id), 0) FROM treatment_exposure
    UNION ALL SELECT 5, count(*), coalesce(max(event_id), 0) FROM outcome_event
"""


def source_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """Row counts and largest ids of the tables the base is derived from, as one string."""
    rows = sorted(con.execute(_FINGERPRINT_SQL).fetchall())
    return ":".join(f"{n}/{m}" for _, n, m in rows)


def refresh_base(con: duckdb.DuckDBPyConnection) -> int:
    """Rebuild ``cohort_base`` from the source tables; runs in the caller's transaction. Returns rows."""
    con.execute(
        "SET enable_progress_bar = false"
    )  # seconds at a million patients: no bar on a CLI's stderr
    con.execute(f"DELETE FROM {BASE_TABLE}")  # noqa: S608 - constant
    con.execute(f"INSERT INTO {BASE_TABLE} SELECT * FROM ({BASE_SQL}) ORDER BY person_id")  # noqa: S608
    con.execute(
        "INSERT OR REPLACE INTO cohort_base_state VALUES (1, ?, now()::TIMESTAMP)",
        [source_fingerprint(con)],
    )
    row = con.execute(f"SELECT count(*) FROM {BASE_TABLE}").fetchone()  # noqa: S608
    # count(*) always returns a row (store.one_row would say so, but the store imports this module)
    assert row is not None
    return int(row[0])


def base_is_fresh(con: duckdb.DuckDBPyConnection) -> bool:
    """The stored base exists and was refreshed after the sources last changed (by the fingerprint)."""
    try:
        row = con.execute(
            "SELECT source_fingerprint FROM cohort_base_state WHERE id = 1"
        ).fetchall()
    except duckdb.CatalogException:  # a store from before schema version 4
        return False
    return bool(row) and row[0][0] == source_fingerprint(con)


def base_source(con: duckdb.DuckDBPyConnection) -> str:
    """SQL text to select base rows FROM: the stored table when fresh, else the live query."""
    return BASE_TABLE if base_is_fresh(con) else f"({BASE_SQL})"
