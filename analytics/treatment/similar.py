""" "Similar patients": recurrence-free survival of the store's patients like this one, by first-line option.

Similarity is simple on purpose, so that a clinician can say it in one breath
and check it: the same stage (I-IV) and the same oestrogen-receptor status
(positive / negative) at the index (earliest) diagnosis, the patient herself
left out, grouped by the first-line regimen actually received. The curves are
Kaplan-Meier estimates with the Cohorts page's definition of recurrence-free
survival and its code (``cohort_summary.kaplan_meier``). Above
``max_patients`` matches, a deterministic sample (fixed hash of the id) is used.

These are observed outcomes of patients who were treated differently for
clinical reasons (not randomised): they show what happened to patients like
her, not what an option would do for her.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from analytics.cohorts.summary import KM_MAX_PATIENTS, kaplan_meier

_SAMPLE_MULTIPLIER = 2654435761
_SAMPLE_MODULUS = 2**32


@dataclass(frozen=True, eq=False)
class SimilarPatients:
    """Kaplan-Meier curves of similar patients by first-line option.

    ``criteria``: how they were matched, in words (None when the patient has no
    diagnosis to match on); ``km``: group, time_days, survival, ci_lower,
    ci_upper, at_risk; ``counts``: group, patients, events, median_rfs_days;
    ``matched``: similar patients with a first-line option, before sampling;
    ``used``: patients in the curves.
    """

    criteria: str | None
    matched: int
    used: int
    km: pd.DataFrame
    counts: pd.DataFrame

    @property
    def sampled(self) -> bool:
        return self.used < self.matched


_INDEX_CONDITION = """
    SELECT person_id, stage, er_positive, diagnosis_date FROM condition_occurrence
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY diagnosis_date, condition_id) = 1
"""


def similar_patients(
    con: duckdb.DuckDBPyConnection, person_id: int, max_patients: int = KM_MAX_PATIENTS
) -> SimilarPatients:
    """Patients with the same stage and ER status as ``person_id``, by first-line option."""
    me = con.execute(
        "SELECT stage, er_positive FROM condition_occurrence WHERE person_id = ? "
        "ORDER BY diagnosis_date, condition_id LIMIT 1",
        [int(person_id)],
    ).fetchall()
    if not me:
        return SimilarPatients(None, 0, 0, *kaplan_meier(pd.DataFrame()))
    stage, er_positive = me[0]
    criteria = f"stage {stage}, ER-{'positive' if er_positive else 'negative'}"
    rfs = con.execute(
        f"""
        WITH first_line AS (
            SELECT person_id, min(regimen) AS regimen FROM treatment_exposure
            WHERE line_of_therapy = 1 AND regimen IS NOT NULL GROUP BY person_id
        ),
        matched AS (
            SELECT i.person_id, i.diagnosis_date, f.regimen, count(*) OVER () AS matched
            FROM ({_INDEX_CONDITION}) AS i JOIN first_line AS f USING (person_id)
            WHERE i.stage = ? AND i.er_positive = ? AND i.person_id <> ?
            ORDER BY (i.person_id::HUGEINT * ?) % ?, i.person_id
            LIMIT ?
        ),
        first_event AS (SELECT person_id, min(event_date) AS event_date FROM outcome_event GROUP BY person_id)
        SELECT m.person_id, m.regimen, m.matched,
               greatest(date_diff('day', m.diagnosis_date,
                                  least(coalesce(e.event_date, op.end_date), op.end_date)), 0) AS rfs_days,
               coalesce(e.event_date <= op.end_date, false) AS event
        FROM matched AS m
        JOIN observation_period AS op USING (person_id)
        LEFT JOIN first_event AS e USING (person_id)
        ORDER BY m.person_id
        """,  # noqa: S608 - constant SQL fragments, values as parameters
        [
            stage,
            bool(er_positive),
            int(person_id),
            _SAMPLE_MULTIPLIER,
            _SAMPLE_MODULUS,
            int(max_patients),
        ],
    ).df()
    matched = int(rfs["matched"].iloc[0]) if not rfs.empty else 0
    km, counts = kaplan_meier(rfs, "regimen")
    return SimilarPatients(criteria, matched, len(rfs), km, counts)
