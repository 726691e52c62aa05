"""Data-quality checks of the store, in the spirit of OHDSI's Data Quality Dashboard.

Why: every model, cohort and forecast in OncoLens reads the store; a treatment dated before the
diagnosis, a 900 mm lesion, a measurement of a patient who is not in ``person`` or one woman
registered twice quietly bend what the pages show. The store's CHECK constraints refuse what
can be refused at insert time (enumerations, sizes of a diagnosis, ``end >= start``); the
checks here find what a constraint cannot express: relations between tables, dates across
tables, duplicates, units per concept.

Each check is named, belongs to one of DQD's three categories (completeness, conformance,
plausibility; Kahn et al. 2016), and is two constant SQL queries with ``?`` parameters: how many
rows it looks at (``n_checked``) and its failing rows (``person_id``, a row key, a detail).
A check passes when the share of failing rows is at most its threshold (percent). Nothing is
built from input: the queries are constants of this module, the bounds travel as parameters.

Failing rows name patients only by pseudonym (``pseudonyms.pseudonym`` under the store's key),
never by name, MRN or raw id, and say what is wrong without a patient's dates (days between two
events, a year of birth): the ethics board and the admin read them (docs/governance.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from analytics.governance.pseudonyms import pseudonym, store_secret

__all__ = [
    "CATEGORIES",
    "CHECKS",
    "BY_NAME",
    "Check",
    "CheckResult",
    "UnknownCheckError",
    "failing_rows",
    "run_check",
    "run_checks",
    "store_secret",
    "summary",
]

CATEGORIES = ("completeness", "conformance", "plausibility")
SAMPLE_ROWS = 5  # failing row keys printed per check by the CLI

LESION_CONCEPTS = ("lesion_longest_diameter", "brain_lesion_longest_diameter")
# concept -> the unit the store expects (sample_data.demo writes these; imports must match)
EXPECTED_UNITS = {
    "lesion_longest_diameter": "mm",
    "brain_lesion_longest_diameter": "mm",
    "ca15_3": "U/mL",
    "haemoglobin": "g/dL",
    "neutrophils": "10^9/L",
}
# concept -> (low, high) in the expected unit: values a living adult can have, wide on purpose
# (a check of plausibility, not of normality). Lesion: RECIST longest diameter, 0-300 mm.
PLAUSIBLE_RANGES = {
    "lesion_longest_diameter": (0.0, 300.0),
    "brain_lesion_longest_diameter": (0.0, 300.0),
    "ca15_3": (0.0, 10_000.0),
    "haemoglobin": (3.0, 25.0),
    "neutrophils": (0.0, 100.0),
}
AGE_AT_DIAGNOSIS_YEARS = (18, 110)
EARLIEST_BIRTH = "1900-01-01"
IMAGING_MODALITIES = ("MG", "MR", "CT", "US", "PT", "OT")
RECEPTOR_POSITIVE_FMOL = 10.0  # fmol/mg: ER/PR positive at or above (GBSG2's cut-off)

# Tables holding a person_id and a date, for orphans and for "before birth" / "after death".
# (table, row key expression, date expression): constants, never input.
_DATED = (
    ("condition_occurrence", "'condition_id=' || t.condition_id", "t.diagnosis_date"),
    (
        "treatment_exposure",
        "'exposure_id=' || t.exposure_id",
        "greatest(t.start_date, coalesce(t.end_date, t.start_date))",
    ),
    ("measurement", "'measurement_id=' || t.measurement_id", "t.measurement_date"),
    ("imaging_study", "'study_uid=' || t.study_uid", "t.study_date"),
    ("outcome_event", "'event_id=' || t.event_id", "t.event_date"),
    ("episode", "'episode_id=' || t.episode_id", "t.start_date"),
)
_CHILDREN = (*_DATED, ("observation_period", "'observation_period'", "t.start_date"))


@dataclass(frozen=True)
class Check:
    """One named check: what it counts (``checked_sql``), what fails (``failing_sql``), the share allowed.

    ``failing_sql`` returns ``person_id`` (may be NULL), ``row_key`` and ``detail`` (text without
    names or MRNs); ``params`` are bound to ``failing_sql``'s ``?`` in order, ``checked_params`` to
    ``checked_sql``'s.
    """

    name: str
    category: str
    table: str
    description: str
    checked_sql: str
    failing_sql: str
    threshold_pct: float = 0.0
    params: tuple[Any, ...] = ()
    checked_params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check; ``passed`` None: it could not run on this store (``error`` says why)."""

    name: str
    category: str
    table: str
    description: str
    threshold_pct: float
    n_checked: int
    n_failed: int
    pct: float
    passed: bool | None
    sample: tuple[dict[str, str | None], ...] = field(default=())
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "table": self.table,
            "description": self.description,
            "threshold": self.threshold_pct,
            "n_checked": self.n_checked,
            "n_failed": self.n_failed,
            "pct": round(self.pct, 4),
            "passed": self.passed,
            "sample": list(self.sample),
            **({"error": self.error} if self.error else {}),
        }


def _orphan(table: str, key: str) -> Check:
    return Check(
        name=f"orphan_{table}",
        category="plausibility",
        table=table,
        description=f"{table} rows whose person_id is not in person",
        checked_sql=f"SELECT count(*) FROM {table}",  # noqa: S608 - constant table name
        failing_sql=(
            f"SELECT t.person_id, {key} AS row_key, 'no such person' AS detail "  # noqa: S608
            f"FROM {table} t ANTI JOIN person p ON p.person_id = t.person_id"
        ),
    )


def _dated_union(column: str, op: str) -> tuple[str, str]:
    """(count of dated rows of people with a reference date, rows dated ``op`` it): before birth or after death."""
    ref = {
        "birth": "SELECT person_id, birth_date AS ref FROM person",
        "death": "SELECT person_id, event_date AS ref FROM outcome_event WHERE event_type = 'death'",
    }[column]
    rows = " UNION ALL ".join(
        f"SELECT '{table}' AS tbl, t.person_id, {key} AS row_key, {date} AS d FROM {table} t"  # noqa: S608
        for table, key, date in _DATED
        if not (column == "death" and table == "outcome_event")
    )
    if column == "death":  # a recurrence after death; death itself is the reference
        rows += (
            " UNION ALL SELECT 'outcome_event', t.person_id, 'event_id=' || t.event_id, t.event_date "
            "FROM outcome_event t WHERE t.event_type <> 'death'"
        )
    where = "before" if op == "<" else "after"
    base = f"WITH r AS ({ref}), d AS ({rows}) "  # noqa: S608 - constant parts
    checked = base + "SELECT count(*) FROM d JOIN r USING (person_id)"  # noqa: S608
    select = "SELECT d.person_id, d.tbl || ': ' || d.row_key AS row_key, "
    detail = f"abs(date_diff('day', r.ref, d.d)) || ' days {where} {column}' AS detail "
    failing = base + select + detail + f"FROM d JOIN r USING (person_id) WHERE d.d {op} r.ref"  # noqa: S608
    return checked, failing


def _value_table() -> str:
    """concept, unit, low, high as a relation of bound lists (four ``?``)."""
    return (
        "(SELECT unnest(?::VARCHAR[]) AS concept, unnest(?::VARCHAR[]) AS unit, "
        "unnest(?::DOUBLE[]) AS low, unnest(?::DOUBLE[]) AS high)"
    )


def _value_params() -> tuple[Any, ...]:
    concepts = list(EXPECTED_UNITS)
    return (
        concepts,
        [EXPECTED_UNITS[c] for c in concepts],
        [PLAUSIBLE_RANGES[c][0] for c in concepts],
        [PLAUSIBLE_RANGES[c][1] for c in concepts],
    )


# each patient's first diagnosis date, as a CTE ``f`` (person_id, dx)
_FIRST_DX = (
    "WITH f AS (SELECT person_id, min(diagnosis_date) AS dx FROM condition_occurrence "
    "GROUP BY person_id) "
)
_VALUES = _value_table()
_UNIT_CHECKED = "SELECT count(*) FROM measurement m JOIN " + _VALUES + " e USING (concept)"  # noqa: S608
_UNIT_FAILING = (
    "SELECT m.person_id, 'measurement_id=' || m.measurement_id AS row_key, "
    "m.concept || ' in ' || m.unit || ' (expected ' || e.unit || ')' AS detail "
    "FROM measurement m JOIN " + _VALUES + " e USING (concept) WHERE m.unit <> e.unit"
)  # noqa: S608
_RANGE_CHECKED = "SELECT count(*) FROM measurement m JOIN " + _VALUES + " e USING (concept, unit)"  # noqa: S608
_RANGE_FAILING = (
    "SELECT m.person_id, 'measurement_id=' || m.measurement_id AS row_key, m.concept || ' ' || m.value "  # noqa: S608
    "|| ' ' || m.unit || ' (plausible ' || e.low || '-' || e.high || ')' AS detail FROM measurement m JOIN "
    + _VALUES
    + " e USING (concept, unit) WHERE m.value NOT BETWEEN e.low AND e.high"
)  # noqa: S608


def _checks() -> tuple[Check, ...]:
    after_death = _dated_union("death", ">")
    before_birth = _dated_union("birth", "<")
    return (
        # --- completeness ------------------------------------------------------------------
        Check(
            "person_identifiers_present",
            "completeness",
            "person",
            "MRN, given and family name are not blank",
            "SELECT count(*) FROM person",
            "SELECT person_id, 'person' AS row_key, 'blank: ' || concat_ws(', ', "
            "CASE WHEN trim(mrn) = '' THEN 'MRN' END, CASE WHEN trim(given_name) = '' THEN 'given name' END, "
            "CASE WHEN trim(family_name) = '' THEN 'family name' END) AS detail FROM person "
            "WHERE trim(mrn) = '' OR trim(given_name) = '' OR trim(family_name) = ''",
        ),
        Check(
            "person_has_diagnosis",
            "completeness",
            "condition_occurrence",
            "every patient has at least one diagnosis",
            "SELECT count(*) FROM person",
            "SELECT p.person_id, 'person' AS row_key, 'no diagnosis' AS detail "
            "FROM person p ANTI JOIN condition_occurrence c ON c.person_id = p.person_id",
        ),
        Check(
            "person_has_observation_period",
            "completeness",
            "observation_period",
            "every patient has a follow-up window",
            "SELECT count(*) FROM person",
            "SELECT p.person_id, 'person' AS row_key, 'no observation period' AS detail "
            "FROM person p ANTI JOIN observation_period o ON o.person_id = p.person_id",
        ),
        Check(
            "lesion_reading_has_study",
            "completeness",
            "measurement",
            "radiology lesion readings name the imaging study they were read from",
            "SELECT count(*) FROM measurement WHERE source = 'radiology' AND list_contains(?, concept)",
            "SELECT person_id, 'measurement_id=' || measurement_id AS row_key, 'no study_uid' AS detail "
            "FROM measurement WHERE source = 'radiology' AND list_contains(?, concept) AND study_uid IS NULL",
            threshold_pct=5.0,
            params=(list(LESION_CONCEPTS),),
            checked_params=(list(LESION_CONCEPTS),),
        ),
        Check(
            "instance_has_pixel_spacing",
            "completeness",
            "imaging_instance",
            "stored images carry their pixel spacing (needed for any size in mm)",
            "SELECT count(*) FROM imaging_instance",
            "SELECT s.person_id, 'sop_instance_uid=' || i.sop_instance_uid AS row_key, "
            "'no pixel spacing' AS detail FROM imaging_instance i "
            "LEFT JOIN imaging_series r USING (series_uid) LEFT JOIN imaging_study s USING (study_uid) "
            "WHERE i.pixel_spacing_mm IS NULL",
            threshold_pct=5.0,
        ),
        # --- conformance -------------------------------------------------------------------
        Check(
            "measurement_concept_known",
            "conformance",
            "measurement",
            "measurement concepts are ones OncoLens knows",
            "SELECT count(*) FROM measurement",
            "SELECT person_id, 'measurement_id=' || measurement_id AS row_key, "
            "'concept ' || concept AS detail FROM measurement WHERE NOT list_contains(?, concept)",
            params=(list(EXPECTED_UNITS),),
        ),
        Check(
            "measurement_unit_expected",
            "conformance",
            "measurement",
            "each known concept is in its expected unit (lesions mm, haemoglobin g/dL, ...)",
            _UNIT_CHECKED,
            _UNIT_FAILING,
            params=_value_params(),
            checked_params=_value_params(),
        ),
        Check(
            "receptor_status_matches_fmol",
            "conformance",
            "condition_occurrence",
            f"ER/PR positive exactly when the receptor is at least {RECEPTOR_POSITIVE_FMOL:g} fmol/mg",
            "SELECT count(*) FROM condition_occurrence",
            "SELECT person_id, 'condition_id=' || condition_id AS row_key, concat_ws('; ', "
            "CASE WHEN er_positive <> (er_fmol >= ?) THEN 'ER ' || er_fmol || ' fmol/mg, positive ' || er_positive END, "
            "CASE WHEN pr_positive <> (pr_fmol >= ?) THEN 'PR ' || pr_fmol || ' fmol/mg, positive ' || pr_positive END) "
            "AS detail FROM condition_occurrence WHERE er_positive <> (er_fmol >= ?) OR pr_positive <> (pr_fmol >= ?)",
            params=(RECEPTOR_POSITIVE_FMOL,) * 4,
        ),
        Check(
            "series_modality_known",
            "conformance",
            "imaging_series",
            "series modalities are DICOM modalities OncoLens reads (MG, MR, CT, US, PT, OT)",
            "SELECT count(*) FROM imaging_series",
            "SELECT s.person_id, 'series_uid=' || r.series_uid AS row_key, 'modality ' || r.modality AS detail "
            "FROM imaging_series r LEFT JOIN imaging_study s USING (study_uid) "
            "WHERE NOT list_contains(?, r.modality)",
            params=(list(IMAGING_MODALITIES),),
        ),
        Check(
            "data_cutoff_parses",
            "conformance",
            "clinic_metadata",
            "the data cut-off is a date",
            "SELECT count(*) FROM clinic_metadata WHERE key = 'data_cutoff'",
            "SELECT NULL::BIGINT AS person_id, 'key=data_cutoff' AS row_key, 'value ' || value AS detail "
            "FROM clinic_metadata WHERE key = 'data_cutoff' AND try_cast(value AS DATE) IS NULL",
        ),
        # --- plausibility ------------------------------------------------------------------
        Check(
            "birth_date_plausible",
            "plausibility",
            "person",
            f"birth dates lie between {EARLIEST_BIRTH} and today",
            "SELECT count(*) FROM person",
            "SELECT person_id, 'person' AS row_key, 'born in ' || year(birth_date) AS detail "
            "FROM person WHERE birth_date < ?::DATE OR birth_date > current_date",
            params=(EARLIEST_BIRTH,),
        ),
        Check(
            "age_at_diagnosis_plausible",
            "plausibility",
            "condition_occurrence",
            f"age at diagnosis between {AGE_AT_DIAGNOSIS_YEARS[0]} and {AGE_AT_DIAGNOSIS_YEARS[1]} years",
            "SELECT count(*) FROM condition_occurrence c JOIN person p USING (person_id)",
            "SELECT c.person_id, 'condition_id=' || c.condition_id AS row_key, "
            "'age ' || date_diff('year', p.birth_date, c.diagnosis_date) || ' at diagnosis' AS detail "
            "FROM condition_occurrence c JOIN person p USING (person_id) "
            "WHERE date_diff('year', p.birth_date, c.diagnosis_date) NOT BETWEEN ? AND ?",
            params=AGE_AT_DIAGNOSIS_YEARS,
        ),
        Check(
            "records_before_birth",
            "plausibility",
            "several",
            "no diagnosis, treatment, measurement, study, event or episode is dated before birth",
            *before_birth,
        ),
        Check(
            "treatment_after_diagnosis",
            "plausibility",
            "treatment_exposure",
            "treatments start on or after the patient's first diagnosis",
            _FIRST_DX + "SELECT count(*) FROM treatment_exposure t JOIN f USING (person_id)",  # noqa: S608
            _FIRST_DX + "SELECT t.person_id, 'exposure_id=' || t.exposure_id AS row_key, "
            "t.treatment_class || ' started ' || date_diff('day', t.start_date, f.dx) || "
            "' days before the first diagnosis' AS detail "
            "FROM treatment_exposure t JOIN f USING (person_id) WHERE t.start_date < f.dx",
        ),
        Check(
            "records_after_death",
            "plausibility",
            "several",
            "death is the last event: nothing is dated after it",
            *after_death,
        ),
        Check(
            "measurement_value_plausible",
            "plausibility",
            "measurement",
            "values in physiological ranges (lesion 0-300 mm, haemoglobin 3-25 g/dL, ...), in the expected unit",
            _RANGE_CHECKED,
            _RANGE_FAILING,
            params=_value_params(),
            checked_params=_value_params(),
        ),
        Check(
            "ai_lesion_size_plausible",
            "plausibility",
            "ai_finding",
            "AI-measured lesions are at most 300 mm",
            "SELECT count(*) FROM ai_finding WHERE longest_diameter_mm IS NOT NULL",
            "SELECT person_id, 'finding_id=' || finding_id AS row_key, "
            "'longest diameter ' || longest_diameter_mm || ' mm' AS detail "
            "FROM ai_finding WHERE longest_diameter_mm > ?",
            params=(PLAUSIBLE_RANGES["lesion_longest_diameter"][1],),
        ),
        *(_orphan(table, key) for table, key, _ in _CHILDREN),
        Check(
            "lesion_reading_study_matches",
            "plausibility",
            "measurement",
            "a lesion reading's study exists and belongs to the same patient",
            "SELECT count(*) FROM measurement WHERE study_uid IS NOT NULL",
            "SELECT m.person_id, 'measurement_id=' || m.measurement_id AS row_key, "
            "CASE WHEN s.study_uid IS NULL THEN 'study not in imaging_study' "
            "ELSE 'study belongs to another patient' END AS detail "
            "FROM measurement m LEFT JOIN imaging_study s USING (study_uid) "
            "WHERE m.study_uid IS NOT NULL AND (s.study_uid IS NULL OR s.person_id <> m.person_id)",
        ),
        Check(
            "duplicate_patient_name_birth",
            "plausibility",
            "person",
            "no two patients share given name, family name and birth date",
            "SELECT count(*) FROM person",
            "SELECT person_id, 'person' AS row_key, "
            "'one of ' || n || ' records with the same name and birth date (group ' || g || ')' AS detail "
            "FROM (SELECT person_id, count(*) OVER w AS n, dense_rank() OVER (ORDER BY "
            "lower(trim(family_name)), lower(trim(given_name)), birth_date) AS g FROM person "
            "WINDOW w AS (PARTITION BY lower(trim(family_name)), lower(trim(given_name)), birth_date)) "
            "WHERE n > 1",
        ),
        Check(
            "duplicate_patient_mrn",
            "plausibility",
            "person",
            "no two patients share an MRN once case, spaces and punctuation are ignored",
            "SELECT count(*) FROM person",
            "SELECT person_id, 'person' AS row_key, "
            "'one of ' || n || ' records with the same MRN (group ' || g || ')' AS detail "
            "FROM (SELECT person_id, count(*) OVER w AS n, dense_rank() OVER (ORDER BY k) AS g FROM "
            "(SELECT person_id, regexp_replace(upper(mrn), '[^A-Z0-9]', '', 'g') AS k FROM person) "
            "WINDOW w AS (PARTITION BY k)) WHERE n > 1",
        ),
    )


CHECKS: tuple[Check, ...] = _checks()
BY_NAME = {c.name: c for c in CHECKS}


class UnknownCheckError(KeyError):
    """A check name that is not in ``CHECKS``."""


def _key(con: duckdb.DuckDBPyConnection) -> bytes | None:
    return store_secret(con)


def _label(key: bytes | None, person_id: Any) -> str | None:
    """A person id as the board may see it: its pseudonym (None when the row has no person)."""
    if person_id is None or pd.isna(person_id):
        return None
    return pseudonym(key, int(person_id)) if key is not None else "withheld (store has no key)"


def run_check(
    con: duckdb.DuckDBPyConnection,
    check: Check,
    *,
    sample: int = SAMPLE_ROWS,
    key: bytes | None = None,
) -> CheckResult:
    """Run one check; a store without one of its tables gives ``passed`` None and the reason."""
    checked_params = list(check.checked_params)
    try:
        n_checked = int(con.execute(check.checked_sql, checked_params).fetchone()[0])  # type: ignore[index]
        count_sql = f"SELECT count(*) FROM ({check.failing_sql})"  # noqa: S608 - constant SQL
        n_failed = int(con.execute(count_sql, list(check.params)).fetchone()[0])  # type: ignore[index]
        rows = (
            con.execute(
                f"SELECT * FROM ({check.failing_sql}) ORDER BY row_key, person_id LIMIT ?",  # noqa: S608 - constant SQL
                [*check.params, int(sample)],
            ).fetchall()
            if n_failed and sample > 0
            else []
        )
    except duckdb.CatalogException as exc:
        first = str(exc).splitlines()[0]
        return CheckResult(
            check.name, check.category, check.table, check.description, check.threshold_pct,
            0, 0, 0.0, None, (), f"not run on this store: {first}",
        )  # fmt: skip
    pct = 100.0 * n_failed / n_checked if n_checked else (100.0 if n_failed else 0.0)
    return CheckResult(
        name=check.name,
        category=check.category,
        table=check.table,
        description=check.description,
        threshold_pct=check.threshold_pct,
        n_checked=n_checked,
        n_failed=n_failed,
        pct=pct,
        passed=pct <= check.threshold_pct,
        sample=tuple({"person": _label(key, pid), "row": row_key} for pid, row_key, _ in rows),
    )


def run_checks(
    con: duckdb.DuckDBPyConnection, *, sample: int = SAMPLE_ROWS, checks: tuple[Check, ...] = CHECKS
) -> list[CheckResult]:
    """Every check on ``con`` (a read-only connection is enough), in ``CHECKS`` order."""
    key = _key(con)
    return [run_check(con, c, sample=sample, key=key) for c in checks]


def failing_rows(con: duckdb.DuckDBPyConnection, name: str, *, limit: int = 500) -> pd.DataFrame:
    """The failing rows of check ``name``: ``patient`` (pseudonym), ``row`` (table key), ``detail``.

    At most ``limit`` rows, ordered by row key. Never a name or an MRN.
    """
    check = BY_NAME.get(name)
    if check is None:
        raise UnknownCheckError(f"no data-quality check named {name!r}")
    rows = con.execute(
        f"SELECT * FROM ({check.failing_sql}) ORDER BY row_key, person_id LIMIT ?",  # noqa: S608 - constant SQL
        [*check.params, int(limit)],
    ).fetchall()
    key = _key(con)
    return pd.DataFrame(
        [
            {"patient": _label(key, pid), "row": row_key, "detail": detail}
            for pid, row_key, detail in rows
        ],
        columns=["patient", "row", "detail"],
    )


def summary(results: list[CheckResult]) -> pd.DataFrame:
    """Checks passed, failed and not run per category (every category present, in ``CATEGORIES`` order)."""
    rows = []
    for category in CATEGORIES:
        mine = [r for r in results if r.category == category]
        rows.append(
            {
                "category": category,
                "checks": len(mine),
                "passed": sum(r.passed is True for r in mine),
                "failed": sum(r.passed is False for r in mine),
                "not_run": sum(r.passed is None for r in mine),
            }
        )
    return pd.DataFrame(rows)
