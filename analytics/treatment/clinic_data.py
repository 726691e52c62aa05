"""The demo clinic's records as model inputs: covariates at diagnosis, first-line option, RFS.

Training and a single patient's recommendation read covariates through the
same SQL (``_COVARIATES``), so the model never sees a feature computed two
different ways. Nothing here reads the ``truth`` schema: that is for
validation only (``analytics.treatment.validation``).

Recurrence-free survival: days from the index (earliest) diagnosis to the
first recurrence or death, censored at the end of the observation period (the
same definition as the Cohorts page's Kaplan-Meier curves).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from analytics.treatment.data import Feature, SurvivalTable, TreatmentDataError

CLINIC_OPTIONS = ("endocrine", "chemotherapy", "chemo_endocrine")
CLINIC_FEATURES = (
    Feature("age", "Age at diagnosis (years)"),
    Feature("postmenopausal", "Postmenopausal (1 = yes)"),
    Feature("tumour_size_mm", "Tumour size (mm)"),
    Feature("grade", "Tumour grade (1-3)"),
    Feature("positive_nodes", "Positive lymph nodes (count)"),
    Feature("er_fmol", "Oestrogen receptor (fmol/mg)"),
    Feature("pr_fmol", "Progesterone receptor (fmol/mg)"),
    Feature("her2_positive", "HER2-positive (1 = yes)"),
)
FEATURE_COLUMNS = [f.column for f in CLINIC_FEATURES]
DEFAULT_MAX_TRAINING_PATIENTS = 20_000
# Knuth's multiplicative hash (as in cohort_summary): a stable sample unrelated to enrolment order.
_SAMPLE_MULTIPLIER = 2654435761
_SAMPLE_MODULUS = 2**32


class UnknownPatientError(LookupError):
    """No patient with that id in the store."""


class MissingCovariatesError(ValueError):
    """The patient lacks a value the model needs; the message names them."""


_COVARIATES = """
    SELECT p.person_id,
           date_sub('year', p.birth_date, c.diagnosis_date)::DOUBLE AS age,
           CASE p.menopausal_status WHEN 'post' THEN 1.0 WHEN 'pre' THEN 0.0 END AS postmenopausal,
           c.tumour_size_mm::DOUBLE AS tumour_size_mm,
           c.grade::DOUBLE AS grade,
           c.positive_nodes::DOUBLE AS positive_nodes,
           c.er_fmol::DOUBLE AS er_fmol,
           c.pr_fmol::DOUBLE AS pr_fmol,
           c.her2_positive::DOUBLE AS her2_positive,
           c.diagnosis_date
    FROM {person} AS p
    LEFT JOIN (
        SELECT * FROM condition_occurrence{condition_filter}
        QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY diagnosis_date, condition_id) = 1
    ) AS c USING (person_id)
"""


def clinic_training_table(
    con: duckdb.DuckDBPyConnection, max_patients: int = DEFAULT_MAX_TRAINING_PATIENTS
) -> tuple[SurvivalTable, np.ndarray]:
    """Patients with a diagnosis, a first-line option and follow-up, as a SurvivalTable, and their ids.

    Above ``max_patients`` a deterministic sample (fixed hash of the id) is used.
    Patients with a missing covariate are left out and counted in ``notes``.
    """
    person = "(SELECT * FROM person ORDER BY (person_id::HUGEINT * ?) % ?, person_id LIMIT ?)"
    df = con.execute(
        f"""
        WITH cov AS ({_COVARIATES.format(person=person, condition_filter="")}),
        first_line AS (
            SELECT person_id, min(regimen) AS regimen FROM treatment_exposure
            WHERE line_of_therapy = 1 AND regimen IS NOT NULL GROUP BY person_id
        ),
        first_event AS (SELECT person_id, min(event_date) AS event_date FROM outcome_event GROUP BY person_id)
        SELECT cov.*, f.regimen,
               date_diff('day', cov.diagnosis_date,
                         least(coalesce(e.event_date, op.end_date), op.end_date)) AS rfs_days,
               coalesce(e.event_date <= op.end_date, false) AS event
        FROM cov
        JOIN first_line AS f USING (person_id)
        JOIN observation_period AS op USING (person_id)
        LEFT JOIN first_event AS e USING (person_id)
        WHERE cov.diagnosis_date IS NOT NULL
        ORDER BY cov.person_id
        """,  # noqa: S608 - constant SQL fragments, values as parameters
        [_SAMPLE_MULTIPLIER, _SAMPLE_MODULUS, int(max_patients)],
    ).df()
    incomplete = df[FEATURE_COLUMNS].isna().any(axis=1)
    no_time = df["rfs_days"].isna() | (df["rfs_days"] <= 0)
    dropped = int((incomplete | no_time).sum())
    df = df[~(incomplete | no_time)].reset_index(drop=True)
    if len(df) < 50 or df["event"].sum() < 10:
        raise TreatmentDataError(
            f"too few usable patients to train a treatment model ({len(df)} patients, "
            f"{int(df['event'].sum())} events; at least 50 and 10 are needed)"
        )
    counts = df["regimen"].value_counts()
    options = tuple(o for o in CLINIC_OPTIONS if counts.get(o, 0) > 0)
    if len(options) < 2:
        raise TreatmentDataError("the store's first-line regimens cover fewer than two options")
    notes = (
        (f"{dropped} patient(s) left out: missing covariate or no follow-up time",)
        if dropped
        else ()
    )
    table = SurvivalTable(
        df[FEATURE_COLUMNS].astype(float).reset_index(drop=True),
        df["regimen"].to_numpy(dtype=object),
        df["rfs_days"].to_numpy(dtype=float),
        df["event"].to_numpy(dtype=bool),
        options,
        CLINIC_FEATURES,
        source="OncoLens store (first-line regimen, RFS from diagnosis)",
        notes=notes,
    )
    return table, df["person_id"].to_numpy(dtype=np.int64)


def covariates_frame(con: duckdb.DuckDBPyConnection, person_subquery: str) -> pd.DataFrame:
    """person_id, ``FEATURE_COLUMNS`` and diagnosis_date of the persons a constant subquery selects.

    The same SQL as training and ``patient_covariates``, for callers that need many patients at
    once (the worklist's forecast risk). ``person_subquery`` must be constant SQL, never user text.
    """
    return con.execute(_COVARIATES.format(person=person_subquery, condition_filter="")).df()  # noqa: S608


def patient_covariates(con: duckdb.DuckDBPyConnection, person_id: int) -> pd.DataFrame:
    """One patient's model inputs (one row, ``FEATURE_COLUMNS``); raises if unknown or incomplete."""
    person = "(SELECT * FROM person WHERE person_id = ?)"
    # the diagnosis table filtered on her id too: the window function would otherwise rank every
    # patient's diagnoses first (10 ms at 10,000 patients, growing with the store)
    sql = _COVARIATES.format(person=person, condition_filter=" WHERE person_id = ?")
    df = con.execute(sql, [int(person_id), int(person_id)]).df()  # noqa: S608
    if df.empty:
        raise UnknownPatientError(f"no patient with id {person_id} in this store")
    return covariates_row(
        person_id, df.iloc[0][FEATURE_COLUMNS].tolist(), df.at[0, "diagnosis_date"]
    )


def one_patient_covariates_sql() -> str:
    """``patient_covariates``' query with her id as the parameter ``$1``, to fold into a larger query.

    Columns: person_id, ``FEATURE_COLUMNS``, diagnosis_date; one row if she exists. One
    patient's forecast reads it in the same query as the rest of her record.
    """
    person = "(SELECT * FROM person WHERE person_id = $1)"
    return _COVARIATES.format(person=person, condition_filter=" WHERE person_id = $1")


def all_covariates_sql() -> str:
    """``patient_covariates``' query for every patient (drift monitoring reads them by diagnosis date).

    Columns: person_id, ``FEATURE_COLUMNS``, diagnosis_date; no parameters.
    """
    return _COVARIATES.format(person="person", condition_filter="")


def covariates_row(person_id: int, values: list, diagnosis_date) -> pd.DataFrame:
    """One patient's model inputs (one row, ``FEATURE_COLUMNS``) from her values in that order.

    Raises ``MissingCovariatesError`` naming what is missing: the model does not impute.
    """
    floats = [np.nan if v is None else float(v) for v in values]
    missing = [f.label for f, v in zip(CLINIC_FEATURES, floats, strict=True) if np.isnan(v)]
    if missing:
        why = " (no diagnosis recorded)" if pd.isna(diagnosis_date) else ""
        raise MissingCovariatesError(
            f"patient {person_id} lacks {', '.join(missing)}{why}; the treatment model "
            "does not impute (its model card says so), so it cannot recommend for her"
        )
    return pd.DataFrame([floats], columns=FEATURE_COLUMNS)
