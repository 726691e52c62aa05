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
  recurrence or death for the option received against what happened, by diagnosis year, on
  patients the model never saw: diagnosed after the end of its training data (``data_end``: the
  lineage's data cut-off, else its training date) and followed to the horizon by the store's
  cut-off. Until such patients exist the report says so and tests nothing; the training patients'
  calibration follows as a separate, labelled in-sample reference that never alerts (a model
  fits its own patients; no alert there says little about new ones).
"""

from __future__ import annotations

import dataclasses
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


IN_SAMPLE = "calibration (in-sample reference)"  # the ``monitored`` of the reference report


def data_end(card: dict) -> dt.date | None:
    """The last day of data the model could have seen: its lineage's data cut-off, else the day it
    was trained (lineage, then the card's ``created_at``); None when the card records neither."""
    lineage = card.get("lineage") or {}
    for value in (lineage.get("data_cutoff"), lineage.get("trained_at"), card.get("created_at")):
        if value:
            try:
                return pd.Timestamp(value).date()
            except (TypeError, ValueError):
                continue
    return None


def calibration_inputs(
    con: duckdb.DuckDBPyConnection,
    model,
    horizon_days: float,
    *,
    diagnosed_after: dt.date | None = None,
    diagnosed_by: dt.date | None = None,
) -> pd.DataFrame:
    """Patients whose status at the horizon is known: diagnosis date, predicted risk, event (0/1).

    ``model``: the clinic's ``OutcomeModel``; the risk is 1 - its RFS at the horizon for the option
    each patient received. Only patients diagnosed at least one horizon before the data's cut-off
    (or the last follow-up on record) count: for a more recent year only those who already had an
    event have a known status, which made the observed risk of 2021 read 68 % against 46 %
    predicted on the demo (a false alert from selection, not drift). Patients lost before the
    horizon are still left out (status unknown), a smaller bias the page's method note states.
    ``diagnosed_after`` / ``diagnosed_by``: keep only patients diagnosed after / on or before it.
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
    dates = pd.to_datetime(frame["date"])
    if diagnosed_after is not None:
        frame = frame[dates > pd.Timestamp(diagnosed_after)]
    elif diagnosed_by is not None:
        frame = frame[dates <= pd.Timestamp(diagnosed_by)]
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
        reports.extend(calibration_reports(con, model, card, horizon, calibration_frequency))
    return reports


def calibration_reports(
    con: duckdb.DuckDBPyConnection, model, card: dict, horizon_days: float, frequency: str = "year"
) -> list[DriftReport]:
    """Calibration on patients diagnosed after the training data ended (the drift monitor), then
    the training patients' calibration as an in-sample reference that never alerts."""
    years = f"{horizon_days / 365.25:g}"
    end = data_end(card)
    seen = "the end of its training data" if end is None else f"{end:%Y-%m-%d}"
    fresh = (
        calibration_inputs(con, model, horizon_days, diagnosed_after=end)
        if end is not None
        else calibration_inputs(con, model, horizon_days).iloc[0:0]
    )
    report = calibration_drift(
        "treatment",
        fresh,
        date_column="date",
        reference_label=f"perfect calibration (intercept 0, slope 1) at {years} years, on patients "
        f"diagnosed after the model's training data ended ({seen}) whose {years}-year outcome is "
        "known: patients the model never saw",
        frequency=frequency,
    )
    if fresh.empty:
        report = dataclasses.replace(
            report,
            notes=(
                f"No patients diagnosed after training ({seen}) have reached the {years}-year "
                "horizon yet: calibration on new patients cannot be checked until they do"
                + (
                    "."
                    if end is not None
                    else " (the model's card records neither its data cut-off nor its training date)."
                ),
            ),
        )
    reports = [report]
    seen_patients = calibration_inputs(con, model, horizon_days, diagnosed_by=end)
    if not seen_patients.empty:
        reference = calibration_drift(
            "treatment",
            seen_patients,
            date_column="date",
            reference_label=f"in-sample: the patients diagnosed by {seen} (the model was fitted on "
            "them), at the same horizon; a reference for the figures above, not a drift test",
            frequency=frequency,
        )
        rows = reference.rows.assign(alert=False)
        reports.append(
            dataclasses.replace(
                reference,
                monitored=IN_SAMPLE,
                rows=rows,
                alerts=(),
                notes=(
                    "in-sample reference: never alerts; a model fits the patients it was trained on, "
                    "so these figures say little about patients it never saw",
                ),
            )
        )
    return reports
