"""What the Cohorts page shows: who is in the clinic, and how long they stay recurrence-free.

Counts and distributions are SQL aggregates, so they cost one scan whatever
the cohort size. The Kaplan-Meier estimates need one row per patient in
Python; above ``KM_MAX_PATIENTS`` they are computed on a deterministic sample
(patients ordered by a fixed multiplicative hash of their id), so the curve is
the same on every run and the page can say how many patients it used.

Recurrence-free survival (RFS): time from diagnosis to the first recurrence or
death; patients without either are censored at the end of their observation
period. The curves by first-line regimen compare patients who were treated
differently for clinical reasons (the treatment was not randomised), so they
describe the cohort and are not estimates of a treatment effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from analytics import store
from analytics.survival.kaplan_meier import KaplanMeier

KM_MAX_PATIENTS = 50_000
KM_GRID_POINTS = 241  # the curve is reported on this many evenly spaced days
AGE_BAND_YEARS = 5
NO_REGIMEN = "none recorded"
# Knuth's multiplicative hash constant: a stable order unrelated to enrolment order.
_SAMPLE_MULTIPLIER = 2654435761
_SAMPLE_MODULUS = 2**32


@dataclass(frozen=True, eq=False)
class CohortOverview:
    """Counts, distributions and Kaplan-Meier curves of the whole cohort.

    DataFrames:

    - ``age_distribution``: age_band_start_years, age_band (label), patients;
    - ``grade_counts``: grade, patients;
    - ``stage_counts``: stage, patients;
    - ``receptor_counts``: receptor ('ER+', 'PR+', 'HER2+'), positive, patients, percent;
    - ``regimen_counts``: regimen (first line), patients;
    - ``event_counts``: event_type, patients;
    - ``km``: group ('all patients' or a regimen), time_days, survival, ci_lower,
      ci_upper (95 % pointwise, log(-log) Greenwood, as lifelines), at_risk;
    - ``km_medians``: group, patients, events, median_rfs_days (NaN when the
      curve does not fall below one half).

    ``km_patients`` of ``patients`` were used for the curves (a deterministic
    sample when the cohort is larger than ``KM_MAX_PATIENTS``).
    """

    patients: int
    recurrences: int
    deaths: int
    median_follow_up_days: float
    age_distribution: pd.DataFrame
    grade_counts: pd.DataFrame
    stage_counts: pd.DataFrame
    receptor_counts: pd.DataFrame
    regimen_counts: pd.DataFrame
    event_counts: pd.DataFrame
    km: pd.DataFrame
    km_medians: pd.DataFrame
    km_patients: int

    @property
    def km_sampled(self) -> bool:
        return self.km_patients < self.patients


# First line's regimen per patient (a line holds several exposures of one regimen).
_FIRST_LINE = """
    SELECT person_id, min(regimen) AS regimen
    FROM treatment_exposure
    WHERE line_of_therapy = 1 AND regimen IS NOT NULL
    GROUP BY person_id
"""

# Index diagnosis per patient: the earliest recorded.
_INDEX_DIAGNOSIS = """
    SELECT person_id, arg_min(condition_id, diagnosis_date) AS condition_id,
           min(diagnosis_date) AS diagnosis_date
    FROM condition_occurrence GROUP BY person_id
"""


def _counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int, float]:
    patients = store.one_row(con.execute("SELECT count(*) FROM person"))[0]
    recurrences, deaths = store.one_row(
        con.execute(
            "SELECT count(*) FILTER (event_type = 'recurrence'), count(*) FILTER (event_type = 'death') "
            "FROM outcome_event"
        )
    )
    follow_up = store.one_row(
        con.execute("SELECT median(date_diff('day', start_date, end_date)) FROM observation_period")
    )[0]
    return int(patients), int(recurrences), int(deaths), float(follow_up or 0.0)


def _distributions(con: duckdb.DuckDBPyConnection) -> dict[str, pd.DataFrame]:
    age = con.execute(
        f"""
        WITH ages AS (
            SELECT date_sub('year', p.birth_date, d.diagnosis_date) AS age
            FROM person AS p JOIN ({_INDEX_DIAGNOSIS}) AS d USING (person_id)
        )
        SELECT (floor(age / ?) * ?)::INTEGER AS age_band_start_years, count(*) AS patients
        FROM ages GROUP BY ALL ORDER BY 1
        """,  # noqa: S608 - constant SQL fragments
        [AGE_BAND_YEARS, AGE_BAND_YEARS],
    ).df()
    age["age_band"] = [
        f"{start}-{start + AGE_BAND_YEARS - 1}" for start in age["age_band_start_years"]
    ]
    index_condition = f"""
        SELECT c.* FROM condition_occurrence AS c
        JOIN ({_INDEX_DIAGNOSIS}) AS d USING (condition_id)
    """  # noqa: S608 - constant SQL fragments
    grade = con.execute(
        f"SELECT grade, count(*) AS patients FROM ({index_condition}) GROUP BY ALL ORDER BY 1"  # noqa: S608
    ).df()
    stage = con.execute(
        f"SELECT stage, count(*) AS patients FROM ({index_condition}) GROUP BY ALL ORDER BY 1"  # noqa: S608
    ).df()
    receptors = store.one_row(
        con.execute(
            f"""
            SELECT count(*) FILTER (er_positive), count(*) FILTER (pr_positive),
                   count(*) FILTER (her2_positive), count(*)
            FROM ({index_condition})
            """  # noqa: S608
        )
    )
    total = int(receptors[3])
    receptor = pd.DataFrame(
        {
            "receptor": ["ER+", "PR+", "HER2+"],
            "positive": [int(receptors[0]), int(receptors[1]), int(receptors[2])],
            "patients": [total] * 3,
        }
    )
    receptor["percent"] = 100.0 * receptor["positive"] / max(total, 1)
    regimen = con.execute(
        f"""
        SELECT coalesce(f.regimen, ?) AS regimen, count(*) AS patients
        FROM person AS p LEFT JOIN ({_FIRST_LINE}) AS f USING (person_id)
        GROUP BY ALL ORDER BY patients DESC, regimen
        """,  # noqa: S608 - constant SQL fragments
        [NO_REGIMEN],
    ).df()
    events = con.execute(
        "SELECT event_type, count(*) AS patients FROM outcome_event GROUP BY ALL ORDER BY 1"
    ).df()
    return {
        "age_distribution": age[["age_band_start_years", "age_band", "patients"]],
        "grade_counts": grade,
        "stage_counts": stage,
        "receptor_counts": receptor,
        "regimen_counts": regimen,
        "event_counts": events,
    }


def rfs_sample(con: duckdb.DuckDBPyConnection, max_patients: int = KM_MAX_PATIENTS) -> pd.DataFrame:
    """One row per patient (at most ``max_patients``, a deterministic sample): rfs_days, event, regimen.

    ``event`` is True for a recurrence or death before the end of observation;
    otherwise ``rfs_days`` is the censoring time. Patients without a diagnosis
    or observation period are left out (no time origin).
    """
    return con.execute(
        f"""
        WITH chosen AS (
            SELECT person_id FROM person
            ORDER BY (person_id::HUGEINT * ?) % ?, person_id
            LIMIT ?
        ),
        first_event AS (
            SELECT person_id, min(event_date) AS event_date
            FROM outcome_event GROUP BY person_id
        )
        SELECT c.person_id,
               greatest(date_diff('day', d.diagnosis_date,
                                  least(coalesce(e.event_date, op.end_date), op.end_date)), 0)
                   AS rfs_days,
               e.event_date IS NOT NULL AND e.event_date <= op.end_date AS event,
               coalesce(f.regimen, ?) AS regimen
        FROM chosen AS c
        JOIN ({_INDEX_DIAGNOSIS}) AS d USING (person_id)
        JOIN observation_period AS op USING (person_id)
        LEFT JOIN first_event AS e USING (person_id)
        LEFT JOIN ({_FIRST_LINE}) AS f USING (person_id)
        ORDER BY c.person_id
        """,  # noqa: S608 - constant SQL fragments
        [_SAMPLE_MULTIPLIER, _SAMPLE_MODULUS, int(max_patients), NO_REGIMEN],
    ).df()


def kaplan_meier(
    rfs: pd.DataFrame, group_col: str | None = None, grid_points: int = KM_GRID_POINTS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kaplan-Meier curves of ``rfs`` overall or per ``group_col`` (``analytics.survival``).

    Each curve is fitted on every patient's exact time and then read off at a
    common grid of days (the step function's value at each grid day), which
    keeps a 50,000-patient curve to a few hundred points for plotting; medians
    come from the exact fit. Returns (curves, medians) as described in
    ``CohortOverview``.
    """
    columns = ["group", "time_days", "survival", "ci_lower", "ci_upper", "at_risk"]
    if rfs.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame(
            columns=["group", "patients", "events", "median_rfs_days"]
        )
    horizon = float(rfs["rfs_days"].max())
    grid = np.linspace(0.0, max(horizon, 1.0), grid_points)
    groups = (
        [("all patients", rfs)]
        if group_col is None
        else [(str(name), part) for name, part in rfs.groupby(group_col, sort=True)]
    )
    curves, medians = [], []
    for name, part in groups:
        durations = part["rfs_days"].to_numpy(dtype=float)
        events = part["event"].to_numpy(dtype=bool)
        fit = KaplanMeier.fit(durations, events)
        lower, upper = fit.band_at(grid)
        curves.append(
            pd.DataFrame(
                {
                    "group": name,
                    "time_days": grid,
                    "survival": fit.survival_at(grid),
                    "ci_lower": lower,
                    "ci_upper": upper,
                    "at_risk": fit.at_risk_at(grid).astype(np.int64),
                }
            )
        )
        median = fit.median()
        medians.append(
            {
                "group": name,
                "patients": len(part),
                "events": int(events.sum()),
                "median_rfs_days": float("nan") if median is None else median,
            }
        )
    return pd.concat(curves, ignore_index=True), pd.DataFrame(medians)


def cohort_overview(
    con: duckdb.DuckDBPyConnection, km_max_patients: int = KM_MAX_PATIENTS
) -> CohortOverview:
    """Everything the Cohorts page plots, from SQL aggregates and one KM sample."""
    patients, recurrences, deaths, follow_up = _counts(con)
    dist = _distributions(con)
    rfs = rfs_sample(con, km_max_patients)
    km_all, med_all = kaplan_meier(rfs)
    km_regimen, med_regimen = kaplan_meier(rfs, "regimen")
    return CohortOverview(
        patients=patients,
        recurrences=recurrences,
        deaths=deaths,
        median_follow_up_days=follow_up,
        km=pd.concat([km_all, km_regimen], ignore_index=True),
        km_medians=pd.concat([med_all, med_regimen], ignore_index=True),
        km_patients=len(rfs),
        **dist,
    )
