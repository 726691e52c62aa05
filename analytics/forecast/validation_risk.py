"""Is the worklist's six-month risk right? The store cut six months early, checked against what followed.

The worklist ranks patients by ``forecast.cohort_risk``: P(RECIST progression or
recurrence within six months). To check it without waiting six months, the
store is cut at ``cutoff - 6 months``: the tumour prior (with its band
recalibration) is estimated and the clinic's outcome learner refitted on what
was known then (recurrence-free survival censored at the cut), every patient
on the worklist at the cut is given her risk as of that day, and the hidden
six months say what happened (``window_outcomes``).

Who is checked: patients on the worklist at the cut (diagnosed, no recurrence
or death recorded, still followed) and in active imaging follow-up (a lesion
reading in the six months before the cut), since progression can only be seen
at a reading. The event: a reading in the window that meets RECIST 1.1
progression against the nadir of her readings before it, or a recurrence or
death in the window. A patient lost to follow-up inside the window without an
event, or with no reading in it, cannot be scored and is counted, not guessed.

Reported: calibration in five bins of predicted risk (mean predicted against
the observed share, with its Wilson 95 % interval), the logistic calibration
line (intercept 0 and slope 1 when calibrated), the Brier score and the AUC;
each part on its own (progression; recurrence or death); the same with the
raw (not recalibrated) bands; and two baselines a clinic has without a model:
the event rate of the six months before the cut as everyone's risk (Brier),
and the regrowth ratio latest / nadir (the worklist's RECIST tie-breaker) as a
ranking (AUC).

One diagnostic separates the model from the question: the risk is about her
last reading *expected* in the window (``forecast.expected_reading_day``), the
event about any reading actually taken. ``progression_at_next_reading`` scores
the same fit's probability that her *first* reading in the window meets
progression, against that reading. (Until worklist method version 3 the risk
asked about a reading exactly six months from today, and ran high in the middle
of the scale: a clinic's readings come sooner, when a growing lesion is smaller.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics.forecast.data import clean, data_cutoff, day_numbers, lesion_frame
from analytics.forecast.survival import HALF_YEAR_DAYS
from analytics.forecast.tumour import (
    LesionSeries,
    TGIPrior,
    fit_map,
    progression_threshold,
    recist_marks,
)
from analytics.survival.constants import Z_95
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.learners import make_learner

RISK_BIN_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
NADIR_FLOOR_MM = 1.0  # as the worklist's regrowth ratio
RISK_DRAWS = 400  # as forecast.RISK_DRAWS
_EPOCH = np.datetime64("1970-01-01", "D")


def _day(d: dt.date) -> float:
    return float((np.datetime64(d, "D") - _EPOCH).astype(np.int64))


def patient_dates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """person_id, diagnosis, first_event (recurrence or death), follow_up_end: days since 1970 (NaN if none)."""
    df = con.execute(
        """
        SELECT p.person_id, c.diagnosis, e.first_event, op.end_date AS follow_up_end
        FROM person AS p
        LEFT JOIN (SELECT person_id, min(diagnosis_date) AS diagnosis FROM condition_occurrence GROUP BY ALL) AS c
            USING (person_id)
        LEFT JOIN (SELECT person_id, min(event_date) AS first_event FROM outcome_event GROUP BY ALL) AS e
            USING (person_id)
        LEFT JOIN observation_period AS op USING (person_id)
        ORDER BY p.person_id
        """
    ).df()
    for col in ("diagnosis", "first_event", "follow_up_end"):
        df[col] = day_numbers(pd.to_datetime(df[col]).to_numpy(dtype="datetime64[D]"))
    return df


def window_outcomes(
    readings: pd.DataFrame, dates: pd.DataFrame, start: dt.date, days: float
) -> pd.DataFrame:
    """Who was on the worklist at ``start`` in active imaging follow-up, and what happened in the next ``days``.

    ``readings``: ``forecast_data.clean`` output of every patient (all readings); ``dates``:
    ``patient_dates``. Columns: person_id, progression, recurrence (or death), event (either),
    assessable, regrowth_ratio (latest / nadir up to ``start``, floor 1 mm), first_in_window
    (days since 1970 of her first reading in the window, NaN if none), first_in_window_mm.
    """
    t0, t1 = _day(start), _day(start) + days
    pid = readings["person_id"].to_numpy(dtype=np.int64)
    day = day_numbers(readings["measurement_date"].to_numpy(dtype="datetime64[D]"))
    mm = readings["mm"].to_numpy(dtype=float)
    order = np.lexsort((day, pid))
    pid, day, mm = pid[order], day[order], mm[order]
    starts = (
        np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
        if pid.size
        else np.zeros(0, dtype=np.int64)
    )
    rows = []
    for a, b in zip(
        starts, np.r_[starts[1:], pid.size], strict=True
    ):  # a few thousand short series
        d, y = day[a:b], mm[a:b]
        before = d <= t0
        if not before.any() or d[before].max() <= t0 - days:  # not in active imaging follow-up
            continue
        progression, _ = recist_marks(y)
        inside = (d > t0) & (d <= t1)
        first = np.flatnonzero(inside)[:1]
        past = y[before]
        rows.append(
            (
                pid[a],
                bool((progression & inside).any()),
                bool(inside.any()),
                past[-1] / max(past.min(), NADIR_FLOOR_MM),
                d[first[0]] if first.size else np.nan,
                y[first[0]] if first.size else np.nan,
            )
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "person_id",
            "progression",
            "imaged",
            "regrowth_ratio",
            "first_in_window",
            "first_in_window_mm",
        ],
    )
    out = out.merge(dates, on="person_id", how="inner")
    at_risk = (out["diagnosis"] <= t0) & ~(out["first_event"] <= t0) & (out["follow_up_end"] > t0)
    out = out[at_risk].reset_index(drop=True)
    out["recurrence"] = (out["first_event"] > t0) & (out["first_event"] <= t1)
    out["event"] = out["progression"] | out["recurrence"]
    # progression is seen only at a reading: without one in the window its status is unknown
    out["assessable"] = (
        out["recurrence"] | out["progression"] | (out["imaged"] & (out["follow_up_end"] >= t1))
    )
    return out[
        [
            "person_id",
            "progression",
            "recurrence",
            "event",
            "assessable",
            "regrowth_ratio",
            "first_in_window",
            "first_in_window_mm",
        ]
    ]


# --- scores -----------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def calibration_bins(pred: np.ndarray, observed: np.ndarray, edges=RISK_BIN_EDGES) -> list[dict]:
    """Mean predicted against observed share in fixed bins of predicted risk (empty bins left out)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (pred >= lo) & ((pred < hi) if hi < edges[-1] else (pred <= hi))
        if m.any():
            k, n = int(observed[m].sum()), int(m.sum())
            lo_ci, hi_ci = wilson(k, n)
            rows.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "patients": n,
                    "mean_predicted": round(float(pred[m].mean()), 4),
                    "observed": round(k / n, 4),
                    "observed_95ci": [round(lo_ci, 4), round(hi_ci, 4)],
                }
            )
    return rows


def _auc(score: np.ndarray, label: np.ndarray) -> float | None:
    # lazy: sklearn is imported only when this is used (start-up time)
    from sklearn.metrics import roc_auc_score

    return None if label.all() or not label.any() else round(float(roc_auc_score(label, score)), 4)


def calibration_line(pred: np.ndarray, observed: np.ndarray) -> dict:
    """Logistic recalibration observed ~ a + b logit(predicted) (Cox 1958): a = 0, b = 1 when calibrated."""
    # lazy: sklearn is imported only when this is used (start-up time)
    from sklearn.linear_model import LogisticRegression

    if observed.all() or not observed.any():
        return {"intercept": None, "slope": None}
    p = np.clip(pred, 1e-4, 1 - 1e-4)
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(np.log(p / (1 - p))[:, None], observed)
    return {
        "intercept": round(float(fit.intercept_[0]), 3),
        "slope": round(float(fit.coef_[0, 0]), 3),
    }


def score(pred: np.ndarray, observed: np.ndarray) -> dict:
    """Patients, events, mean predicted, observed share, Brier score, AUC, calibration bins and line."""
    return {
        "patients": int(pred.size),
        "events": int(observed.sum()),
        "mean_predicted": round(float(pred.mean()), 4),
        "observed_rate": round(float(observed.mean()), 4),
        "brier": round(float(np.mean((pred - observed) ** 2)), 4),
        "auc": _auc(pred, observed),
        "calibration_line": calibration_line(pred, observed),
        "bins": calibration_bins(pred, observed),
    }


# --- the check --------------------------------------------------------------------------------


def _model_at(con: duckdb.DuckDBPyConnection, cut: dt.date, dates: pd.DataFrame, seed: int):
    """The clinic's outcome learner refitted on what was known at ``cut`` (RFS censored there), point only."""
    # lazy: at the top, importing analytics.forecast.validation_risk took 1444 ms instead of 640 ms
    from analytics.treatment.clinic import ClinicModel

    # lazy: at the top, importing analytics.forecast.validation_risk took 1444 ms instead of 640 ms
    from analytics.treatment.model.outcome_model import OutcomeModel

    table, ids = clinic_training_table(con)
    known_for = _day(cut) - dates.set_index("person_id").loc[ids, "diagnosis"].to_numpy()
    rows = np.flatnonzero(known_for > 0)  # diagnosed before the cut
    time = np.minimum(table.time_days, known_for)
    event = table.event & (table.time_days <= known_for)
    table = replace(table.subset(rows), time_days=time[rows], event=event[rows])
    model = OutcomeModel(seed=seed)  # the worklist ranks on point curves only,
    model.options_, model.features_ = table.options, table.features  # so no bootstrap refits
    model.main_ = make_learner(model.learner, seed).fit(table)
    return ClinicModel(
        model, {"version": f"refit at {cut.isoformat()}"}, explainer=None, folder=Path(".")
    )


def _next_reading(
    readings: pd.DataFrame, d: pd.DataFrame, prior: TGIPrior, cut: dt.date, seed: int
) -> dict:
    """P(her first reading in the window meets progression against her nadir at the cut), against that reading."""
    d = d[d["first_in_window"].notna()]
    early = readings[
        readings["person_id"].isin(d["person_id"])
        & (readings["measurement_date"] <= pd.Timestamp(cut))
    ]
    series = LesionSeries.from_long(early)
    fit = fit_map(series, prior)
    origin = (
        (early["measurement_date"] - pd.to_timedelta(early["t_days"], unit="D"))
        .groupby(early["person_id"])
        .first()
        .loc[series.person_id]
    )
    at = d.set_index("person_id").loc[series.person_id]
    t = at["first_in_window"].to_numpy() - day_numbers(
        pd.to_datetime(origin).to_numpy(dtype="datetime64[D]")
    )
    nadir = np.min(np.where(series.mask, series.mm, np.inf), axis=1)
    threshold = progression_threshold(nadir)
    pred = fit.exceedance(t[:, None], threshold, RISK_DRAWS, seed)[:, 0]
    return score(pred, at["first_in_window_mm"].to_numpy() >= threshold)


def validate_risk(con: duckdb.DuckDBPyConnection, seed: int, with_model: bool = True) -> dict:
    """The worklist's six-month risk forecast six months before the store's cut-off, against what followed."""
    from analytics.forecast.patient import (  # lazy: at the top, importing analytics.forecast.validation_risk took 1444 ms instead of 640 ms
        cohort_risk,
        estimate_prior,
    )

    cutoff = data_cutoff(con)
    if cutoff is None:
        raise ValueError("the store records no data cut-off: the six-month risk check needs one")
    half_year = dt.timedelta(days=round(HALF_YEAR_DAYS))
    cut, earlier = cutoff - half_year, cutoff - 2 * half_year
    readings, _ = clean(lesion_frame(con, "all"), cutoff)
    dates = patient_dates(con)
    now = window_outcomes(readings, dates, cut, HALF_YEAR_DAYS)
    before = window_outcomes(readings, dates, earlier, HALF_YEAR_DAYS)
    lost = int((~now["assessable"]).sum())
    now, before = now[now["assessable"]].reset_index(drop=True), before[before["assessable"]]
    if len(now) < 50 or now["event"].sum() < 5 or before.empty:
        raise ValueError(
            f"too few patients to check the six-month risk ({len(now)} assessable, "
            f"{int(now['event'].sum())} events; at least 50 and 5 are needed)"
        )
    prior = estimate_prior(con, as_of=cut)
    clinic = _model_at(con, cut, dates, seed) if with_model else None
    ids = now["person_id"].to_numpy()
    risk = cohort_risk(con, ids, prior, clinic, as_of=cut, seed=seed)
    raw = cohort_risk(con, ids, replace(prior, calibration=None), clinic, as_of=cut, seed=seed)
    d = now.merge(risk, on="person_id").merge(
        raw[["person_id", "risk_6m"]], on="person_id", suffixes=("", "_raw")
    )
    unscored = int(d["risk_6m"].isna().sum())
    d = d[d["risk_6m"].notna()].reset_index(drop=True)
    pred, observed = d["risk_6m"].to_numpy(dtype=float), d["event"].to_numpy(dtype=bool)
    base_rate = float(before["event"].mean())
    model = score(pred, observed)
    base_brier = float(np.mean((base_rate - observed) ** 2))
    parts = {}
    for part, column, outcome in (
        ("progression", "p_progression_6m", "progression"),
        ("recurrence_or_death", "p_recurrence_6m", "recurrence"),
    ):
        has = d[column].notna().to_numpy()
        if has.sum() >= 20:
            parts[part] = score(
                d.loc[has, column].to_numpy(dtype=float), d.loc[has, outcome].to_numpy(dtype=bool)
            )
    return {
        "design": (
            f"store cut at {cut.isoformat()}, six months before its cut-off {cutoff.isoformat()}; tumour "
            "prior (with its band recalibration) and outcome learner refitted on what was known then; "
            "patients on the worklist then and in active imaging follow-up (a reading in the six months "
            "before the cut); event: a reading in the next six months meeting RECIST 1.1 progression, or "
            "a recurrence or death"
        ),
        "cut": cut.isoformat(),
        "not_scored": {"lost_to_follow_up_or_no_reading_in_window": lost, "no_risk_part": unscored},
        "risk_parts": {k: int(v) for k, v in d["risk_parts"].value_counts().items()},
        "model": {**model, "brier_skill_vs_base_rate": round(1 - model["brier"] / base_brier, 4)},
        "uncalibrated_bands": score(d["risk_6m_raw"].to_numpy(dtype=float), observed),
        "baselines": {
            "base_rate": {
                "value": round(base_rate, 4),
                "from": f"events in the six months before {cut.isoformat()}",
                "brier": round(base_brier, 4),
                "auc": 0.5,
            },
            "regrowth_ratio": {"auc": _auc(d["regrowth_ratio"].to_numpy(dtype=float), observed)},
        },
        "components": parts,
        "progression_at_next_reading": _next_reading(readings, d, prior, cut, seed),
    }
