"""Subgroup audit of the clinic's treatment model on the store's patients.

What is audited: the saved clinic model (the one whose recommendations the
oncologists see), predicting each patient's 5-year recurrence-free survival
under the first-line option she actually received, against what happened.
The patients are the model's own training patients, so every figure is
in-sample and optimistic; the *differences between groups* are what this
audit is for, and the page and CLI say so.

- Discrimination: Harrell's C of the predicted 5-year risk (1 - RFS) against
  RFS time and event, on every patient (censoring handled); AUC of the same
  risk for the 5-year event among patients whose 5-year status is known
  (event before 5 years, or followed 5 years without one; patients censored
  earlier are left out of AUC, TPR and FPR, and counted).
- Calibration: mean predicted 5-year RFS against the Kaplan-Meier 5-year RFS of
  the group (so censoring does not bias the observed side); the gap is
  predicted minus observed, in probability units.
- Error rates at a stated threshold: "high risk" when the predicted 5-year
  risk is at least ``threshold``; TPR and FPR of that flag for the 5-year event.

Attributes: age band at diagnosis, menopausal status, site, sex, stage, ER and
HER2 status (the person table records no ethnicity or other demographic; an
attribute with one group, like sex in the demo clinic, is listed as skipped).
"""

from __future__ import annotations

import math
from dataclasses import replace

import duckdb
import numpy as np
import pandas as pd

from analytics.governance.subgroup_audit import (
    BINARY_METRICS,
    DEFAULT_BOOTSTRAP,
    DEFAULT_MIN_N,
    Metric,
    SubgroupAudit,
    age_band,
    audit_subgroups,
)
from analytics.survival.constants import HORIZON_5Y_DAYS
from analytics.survival.kaplan_meier import kaplan_meier_at
from analytics.treatment.clinic_data import FEATURE_COLUMNS, clinic_training_table

DEFAULT_THRESHOLD = 0.40  # predicted 5-year risk of recurrence or death flagged "high risk"
ATTRIBUTES = ("age_band", "menopausal_status", "site", "sex", "stage", "er_status", "her2_status")


def harrell_c_fast(time, event, risk) -> float:
    """Harrell's C with scikit-survival's conventions (a pair is comparable when the earlier time is an
    event; equal times count when only the first is an event; tied risks count one half), vectorised.

    Equal to ``analytics.treatment.model.metrics.harrell_c`` (scikit-survival; tested) and fast enough
    for the bootstrap of a few thousand patients.
    """
    time, event, risk = np.asarray(time, float), np.asarray(event, bool), np.asarray(risk, float)
    ti, ri = time[event][:, None], risk[event][:, None]
    comparable = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
    concordant = (ri > risk[None, :]) & comparable
    tied = (ri == risk[None, :]) & comparable
    pairs = comparable.sum()
    return float((concordant.sum() + 0.5 * tied.sum()) / pairs) if pairs else math.nan


def harrell_c_resampled(time, event, risk, rows: np.ndarray) -> np.ndarray:
    """``harrell_c_fast`` of every resample ``time[r], event[r], risk[r]`` for ``r`` in ``rows``
    (resamples, n), from one pair table of the group: C of a resample counts each pair (i, j) of the
    group as often as i and j were drawn, so its sums are the pair table weighted by the draw counts,
    two matrix products for all resamples instead of one pair table per resample (issue 23).

    Bit for bit the same numbers as ``harrell_c_fast`` on each resample (tested): the pair counts
    are whole numbers (doubled for the ties' halves), exact in float64, and the last step is the
    same division. A copy of a patient never pairs with itself: equal times with an event on both
    sides are not comparable.
    """
    time, event, risk = np.asarray(time, float), np.asarray(event, bool), np.asarray(risk, float)
    rows = np.asarray(rows)
    reps, n = rows.shape[0], len(time)
    ti, ri = time[event][:, None], risk[event][:, None]
    comparable = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
    doubled = (2.0 * (ri > risk[None, :]) + 1.0 * (ri == risk[None, :])) * comparable
    # draw counts: resample r took patient i counts[r, i] times
    counts = np.bincount((rows + n * np.arange(reps)[:, None]).ravel(), minlength=reps * n)
    counts = counts.reshape(reps, n).astype(float)
    from_events = counts[:, event]
    # (from_events @ table) * counts summed by row: BLAS's matrix product (einsum's three-operand
    # form loops in C without it, 3 s of the audit); whole numbers, so the sums are exact
    pairs = ((from_events @ comparable.astype(float)) * counts).sum(axis=1)
    scored = ((from_events @ doubled) * counts).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(pairs > 0, (scored / 2.0) / pairs, math.nan)
    return c


def _c_index_resampled(y_true, y_score, rows, time) -> np.ndarray:
    """``_c_index`` of every resample (``Metric.batch``): NaN where it is NaN."""
    event, rows = np.asarray(y_true, bool), np.asarray(rows)
    if rows.shape[1] < 10:
        return np.full(rows.shape[0], math.nan)
    c = harrell_c_resampled(time, event, y_score, rows)
    return np.where(event[rows].sum(axis=1) < 2, math.nan, c)


def _c_index(y_true, y_score, time) -> float:
    event = np.asarray(y_true, bool)
    if event.sum() < 2 or len(event) < 10:
        return math.nan
    return harrell_c_fast(time, event, y_score)


def _predicted_rfs(y_true, y_score) -> float:
    return float(1.0 - np.mean(y_score))


def _km_rfs(y_true, y_score, time) -> float:
    return float(kaplan_meier_at(time, y_true, HORIZON_5Y_DAYS))


def _km_calibration_gap(y_true, y_score, time) -> float:
    return float((1.0 - np.mean(y_score)) - _km_rfs(y_true, y_score, time))


# The 5-year table's calibration gap is on the *event* scale (predicted risk minus the observed event
# rate), the survival table's on the *survival* scale (predicted minus Kaplan-Meier RFS): one
# miscalibration shows with opposite signs in the two (issue 22). Its observed rate counts only
# patients with a known 5-year status, which leaves out those censored early without an event and so
# runs high; the survival table's Kaplan-Meier is the unbiased one. The titles say so.
FIVE_YEAR_METRICS = tuple(
    replace(
        m,
        title="calibration gap, event scale (predicted 5-year risk - observed event rate, "
        "known 5-year status only)",
    )
    if m.name == "calibration_gap"
    else m
    for m in BINARY_METRICS
)

SURVIVAL_METRICS = (
    Metric("harrell_c", "Harrell's C", _c_index, ("time",), batch=_c_index_resampled),
    Metric("predicted_rfs_5y", "mean predicted 5-year RFS", _predicted_rfs),
    Metric("km_rfs_5y", "Kaplan-Meier 5-year RFS", _km_rfs, ("time",)),
    Metric(
        "rfs_calibration_gap",
        "calibration gap, survival scale (predicted - Kaplan-Meier 5-year RFS)",
        _km_calibration_gap,
        ("time",),
        absolute=True,
    ),
)


def audit_frame(
    con: duckdb.DuckDBPyConnection, clinic, threshold: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """One row per patient: predicted 5-year risk under the option received, RFS, 5-year outcome, attributes."""
    table, person_ids = clinic_training_table(con)
    rfs = clinic.model.rfs_5y(table.covariates[FEATURE_COLUMNS])
    col = {o: k for k, o in enumerate(clinic.model.options_)}
    received = np.array([col.get(t, -1) for t in table.treatment])
    if (received < 0).any():
        raise ValueError("the store has first-line options the model does not know; retrain it")
    risk = 1.0 - np.clip(rfs[np.arange(len(received)), received], 0.0, 1.0)
    attrs = (
        con.execute(
            """
        SELECT p.person_id, p.site, p.menopausal_status, p.sex, c.stage,
               CASE WHEN c.er_positive THEN 'ER+' ELSE 'ER-' END AS er_status,
               CASE WHEN c.her2_positive THEN 'HER2+' ELSE 'HER2-' END AS her2_status
        FROM (SELECT unnest(?::BIGINT[]) AS person_id) q
        JOIN person p USING (person_id)
        LEFT JOIN (SELECT * FROM condition_occurrence
                   QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY diagnosis_date, condition_id) = 1)
             c USING (person_id)
        """,
            [person_ids.tolist()],
        )
        .df()
        .set_index("person_id")
        .loc[person_ids]
        .reset_index()
    )
    time, event = table.time_days, table.event.astype(bool)
    known = event & (time <= HORIZON_5Y_DAYS) | (time >= HORIZON_5Y_DAYS)
    outcome = np.where(known, (event & (time <= HORIZON_5Y_DAYS)).astype(float), np.nan)
    return attrs.assign(
        age_band=age_band(table.covariates["age"].to_numpy()),
        treatment=table.treatment,
        time=time,
        event=event,
        score=risk,
        decision=(risk >= threshold).astype(int),
        outcome=outcome,
    )


def audit_treatment(
    frame: pd.DataFrame,
    *,
    attributes: tuple[str, ...] = ATTRIBUTES,
    min_n: int = DEFAULT_MIN_N,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 20_261_125,
) -> tuple[SubgroupAudit, SubgroupAudit]:
    """(survival audit on every patient, 5-year binary audit on patients with known 5-year status)."""
    survival = audit_subgroups(
        frame,
        list(attributes),
        y_true="event",
        y_score="score",
        metrics=SURVIVAL_METRICS,
        gap_metrics=("harrell_c", "rfs_calibration_gap"),
        min_n=min_n,
        bootstrap=bootstrap,
        seed=seed,
    )
    known = frame[frame["outcome"].notna()].assign(outcome=lambda d: d["outcome"].astype(int))
    binary = audit_subgroups(
        known,
        list(attributes),
        y_true="outcome",
        y_score="score",
        metrics=FIVE_YEAR_METRICS,
        gap_metrics=("auc", "tpr", "fpr", "calibration_gap"),
        min_n=min_n,
        bootstrap=bootstrap,
        seed=seed + 1,
    )
    return survival, binary


def treatment_subgroup_report(
    con: duckdb.DuckDBPyConnection,
    clinic,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_n: int = DEFAULT_MIN_N,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 20_261_125,
) -> dict:
    """The JSON of ``oncolens validate subgroups`` (treatment part) and of the Governance page."""
    frame = audit_frame(con, clinic, threshold)
    survival, binary = audit_treatment(frame, min_n=min_n, bootstrap=bootstrap, seed=seed)
    return {
        "model": "treatment",
        "model_version": clinic.version,
        "data": (
            f"{len(frame)} patients of this store with a first-line option (the model's training patients: "
            "in-sample, optimistic; compare groups, not absolute values)"
        ),
        "patients": int(len(frame)),
        "known_5y_status": int(frame["outcome"].notna().sum()),
        "censored_before_5y": int(frame["outcome"].isna().sum()),
        "threshold": threshold,
        "decision": f"high risk: predicted 5-year risk of recurrence or death >= {threshold:.2f}",
        "survival": survival.as_dict(),
        "five_year": binary.as_dict(),
    }
