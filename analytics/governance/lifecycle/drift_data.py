"""Drift from the store: what each model saw, per window, against its validation reference.

One call (``drift_reports``) for the Governance page and ``oncolens drift --json``:

* imaging models: the input guard's score and the ten image statistics of every read (accepted or
  refused; table ``ai_read_input``, written at ingest), by study date, against the same figures
  on the held-out phantoms the guard was checked on (``NAME.reference.json`` beside the weights,
  passed in by the caller: analytics never opens model files);
* treatment model (and the forecast, whose survival curves it gives): the eight covariates of
  every patient by diagnosis date, against the sample of its training covariates kept in its
  card (``drift_reference``); a card trained before that was recorded is compared with the
  store's patients diagnosed up to its training date, and says so;
* treatment calibration, where outcomes are known at the model's horizon: the predicted risk of
  recurrence or death for the option received against what happened, by diagnosis year.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from analytics import store
from analytics.forecast.data import data_cutoff
from analytics.governance.lifecycle.drift import (
    DriftReport,
    calibration_drift,
    input_drift,
)
from analytics.governance.lifecycle.tables import STAT_COLUMNS
from analytics.treatment.clinic_data import (
    FEATURE_COLUMNS,
    all_covariates_sql,
    clinic_training_table,
)

IMAGING_FEATURES = ("score", *(c.removeprefix("stat_") for c in STAT_COLUMNS))


def imaging_inputs(con: duckdb.DuckDBPyConnection, model_name: str) -> pd.DataFrame:
    """Every recorded read of ``model_name``: date (study date, else read date), score, statistics."""
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name = 'ai_read_input'"
        ).fetchall()
    }
    if not tables:
        return pd.DataFrame(columns=["date", *IMAGING_FEATURES])
    frame = con.execute(
        "SELECT coalesce(study_date, read_at::DATE) AS date, score, "
        "stat_mean, stat_std, stat_air_fraction, stat_saturated_fraction, stat_edge_rows, "
        "stat_edge_columns, stat_texture, stat_entropy, stat_asymmetry, stat_centre_minus_border "
        "FROM ai_read_input WHERE model_name = ? ORDER BY date",
        [model_name],
    ).df()
    return frame.rename(columns={c: c.removeprefix("stat_") for c in STAT_COLUMNS})


def patient_inputs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The treatment model's covariates of every patient with a diagnosis, and its date."""
    frame = con.execute(all_covariates_sql()).df()
    frame = frame[frame["diagnosis_date"].notna()]
    return frame.rename(columns={"diagnosis_date": "date"})[["date", *FEATURE_COLUMNS]]


def treatment_reference(card: dict, patients: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The card's sample of its training covariates, or (older cards) the patients diagnosed by then."""
    kept = card.get("drift_reference") or {}
    values = kept.get("values") or {}
    if values:
        return pd.DataFrame(values), f"treatment model {card.get('version')}: {kept.get('what')}"
    trained = pd.to_datetime(card.get("created_at") or dt.datetime.now(dt.timezone.utc))
    cutoff = trained.tz_localize(None) if trained.tzinfo is not None else trained
    before = patients[pd.to_datetime(patients["date"]) <= cutoff]
    return (
        before[list(FEATURE_COLUMNS)],
        f"the store's {len(before)} patients diagnosed by the model's training date "
        f"({cutoff:%Y-%m-%d}; the card predates recorded drift references)",
    )


def calibration_inputs(con: duckdb.DuckDBPyConnection, model, horizon_days: float) -> pd.DataFrame:
    """Patients whose status at the horizon is known: diagnosis date, predicted risk, event (0/1).

    ``model``: the clinic's ``OutcomeModel``; the risk is 1 - its RFS at the horizon for the option
    each patient received. Only patients diagnosed at least one horizon before the data's cut-off
    (or the last follow-up on record) count: for a more recent year only those who already had an
    event have a known status, which made the observed risk of 2021 read 68 % against 46 %
    predicted on the demo (a false alert from selection, not drift). Patients lost before the
    horizon are still left out (status unknown), a smaller bias the page's method note states.
    """
    table, ids = clinic_training_table(con)
    if len(ids) == 0:
        return pd.DataFrame(columns=["date", "predicted", "event"])
    rfs = model.rfs_5y(table.covariates)
    column = np.array([list(model.options_).index(t) for t in table.treatment])
    predicted = 1 - rfs[np.arange(len(column)), column]
    time, event = np.asarray(table.time_days, float), np.asarray(table.event, bool)
    known = (event & (time <= horizon_days)) | (time >= horizon_days)
    dates = con.execute(
        "SELECT person_id, min(diagnosis_date) AS date FROM condition_occurrence "
        "WHERE list_contains(?::BIGINT[], person_id) GROUP BY person_id",
        [[int(i) for i in ids]],
    ).df()
    frame = pd.DataFrame(
        {
            "person_id": np.asarray(ids, dtype=np.int64),
            "predicted": predicted,
            "event": (event & (time <= horizon_days)).astype(int),
        }
    )[known]
    frame = frame.merge(dates, on="person_id")
    cutoff = (
        data_cutoff(con)
        or store.one_row(con.execute("SELECT max(end_date) FROM observation_period"))[0]
    )
    if cutoff is not None:  # every patient kept could have been followed to the horizon
        reached = pd.to_datetime(frame["date"]) + pd.to_timedelta(horizon_days, unit="D")
        frame = frame[reached <= pd.Timestamp(cutoff)]
    return frame[["date", "predicted", "event"]].reset_index(drop=True)


def drift_reports(
    con: duckdb.DuckDBPyConnection,
    *,
    imaging_references: dict[str, tuple[pd.DataFrame, str]],
    treatment: tuple[object, dict] | None,
    frequency: str = "month",
    patient_frequency: str = "year",
    calibration_frequency: str = "year",
) -> list[DriftReport]:
    """Every model's drift: imaging inputs, patient covariates, and treatment calibration.

    Images are windowed by ``frequency`` (reads accrue by the hundred a month); patients by
    ``patient_frequency`` (a clinic diagnoses a few dozen a month); calibration by year.
    ``imaging_references``: per imaging model, its reference frame (``IMAGING_FEATURES``) and a
    description; ``treatment``: the loaded clinic ``OutcomeModel`` and its card, or None.
    """
    reports = []
    for name, (reference, label) in sorted(imaging_references.items()):
        reports.append(
            input_drift(
                name,
                reference[[c for c in IMAGING_FEATURES if c in reference.columns]],
                imaging_inputs(con, name),
                date_column="date",
                reference_label=label,
                frequency=frequency,
            )
        )
    if treatment is not None:
        model, card = treatment
        patients = patient_inputs(con)
        reference, label = treatment_reference(card, patients)
        reports.append(
            input_drift(
                "treatment",
                reference,
                patients,
                date_column="date",
                reference_label=label,
                frequency=patient_frequency,
            )
        )
        horizon = float(getattr(model, "horizon_days", 5 * 365.25))
        reports.append(
            calibration_drift(
                "treatment",
                calibration_inputs(con, model, horizon),
                date_column="date",
                reference_label=f"perfect calibration (intercept 0, slope 1) at {horizon / 365.25:.1f} years; "
                "the patients scored are those the model was trained on (only they have reached the "
                "horizon yet), so no alert here is weak evidence of calibration on new patients",
                frequency=calibration_frequency,
            )
        )
    return reports
