"""How good the forecasts are: ``oncolens validate forecast --db STORE --json``.

Tumour sizes (held-out later measurements), one series per line of therapy
(``forecast.data.lesion_segments``: a line's readings from its baseline scan to
before the next line's start, the progression that ended it included). Each
line with at least ``MIN_READINGS`` lesion measurements is forecast from each
origin (its first j >= 2 readings known) to its next reading
(``forecast.tumour.held_out_split``, which says why the next reading only). Patients are split into two halves by
a seeded shuffle (all lines of a patient on one side): the population prior is
estimated on one half's full series and the other half is forecast from its
early readings, then the other way round, so no patient's hidden readings
shape her own prior. Why per line and not her current line only: a current
line has, by construction, not progressed yet (a progression ends it), so a
validation on current lines scored the model on the survivors only, with a
prior that had seen no line end; on the 300-patient demo it then lost to both
baselines (docs/validation.md). Reported against two naive
baselines a clinician would use without a model: the last value carried
forward, and the linear trend of the last three observed readings (floored at
0 mm). Coverage is the share of hidden readings inside the 80 % and 95 %
bands (nominal 0.80 and 0.95).

The bands are read at levels recalibrated on held-out readings
(``forecast_tumour.calibrate_bands``); here that recalibration is fitted inside
each training half only, on its own patient split (``CALIBRATION_SEED``, not
this validation's seed), so the coverage reported is out of sample. The raw
bands' coverage and the share of readings below and above each band are
reported beside it.

Survival (held-out patients): five-fold cross-validation, stratified on event
and option, of the clinic's outcome learner (``xgb_pseudo``, the model that
draws the survival panel), predicting each held-out patient's curve under the
option she received. Metrics from scikit-survival: the integrated Brier score
over the evaluation grid of the treatment validation, beside the Kaplan-Meier
curve of the training folds (the model-free reference); calibration at 1, 3
and 5 years: held-out patients grouped in quintiles of predicted S(t), the
mean predicted S(t) of each group against its Kaplan-Meier estimate
(``analytics.survival``). A landmark check tests the conditional forecasts:
among held-out patients still recurrence-free at one year, predicted
S(t | T > 1 y) against their Kaplan-Meier curve from the landmark.

The worklist's six-month risk: ``analytics.forecast.validation_risk``.
"""

from __future__ import annotations

from dataclasses import replace

import duckdb
import numpy as np
import pandas as pd

from analytics.forecast.data import clean_segments, data_cutoff, lesion_segments
from analytics.forecast.tumour import (
    CALIBRATION_SEED,
    LesionSeries,
    calibrate_bands,
    fit_map,
    fit_prior,
    held_out_mask,
    held_out_split,
    patient_halves,
)
from analytics.survival.constants import DAYS_PER_YEAR
from analytics.survival.kaplan_meier import kaplan_meier_at
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.learners import make_learner
from analytics.treatment.model.metrics import evaluation_grid, integrated_brier, stratified_folds

MIN_READINGS = 3  # two known readings and the next one
DEFAULT_SEED = 20_261_125
HORIZON_BINS_DAYS = (0, 183, 365, 730, 100_000)
CALIBRATION_YEARS = (1, 3, 5)
LANDMARK_DAYS = 365.0
TREND_POINTS = 3


def _baselines(
    series: LesionSeries, keep: np.ndarray, hidden_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Last value carried forward and the linear trend of the last ``TREND_POINTS`` kept readings."""
    rows = np.arange(series.n)
    last = series.mm[rows, keep - 1]
    locf = np.broadcast_to(last[:, None], hidden_t.shape)
    trend = np.empty(hidden_t.shape)
    for i in range(series.n):  # a few thousand tiny fits: plain is clear enough
        lo = max(0, keep[i] - TREND_POINTS)
        t, y = series.t_days[i, lo : keep[i]], series.mm[i, lo : keep[i]]
        slope, intercept = np.polyfit(t, y, 1) if np.ptp(t) > 0 else (0.0, y.mean())
        trend[i] = np.maximum(intercept + slope * hidden_t[i], 0.0)
    return locf, trend


def validate_tumour(frame: pd.DataFrame, seed: int = DEFAULT_SEED) -> dict:
    """Held-out forecast of each line's later lesion readings.

    ``frame``: ``forecast.data.clean_segments`` output (one series per line), or ``clean`` output
    (one series per patient, as a store without lines gives).
    """
    by = "series_id" if "series_id" in frame.columns else "person_id"
    series = LesionSeries.from_long(frame, by=by)
    counts = series.counts
    evaluable = np.flatnonzero(counts >= MIN_READINGS)
    origins, kept = held_out_split(series, MIN_READINGS)
    if evaluable.size < 20:
        raise ValueError(
            f"too few lines of therapy with {MIN_READINGS}+ lesion measurements to validate "
            f"({evaluable.size}; at least 20 are needed)"
        )
    half = patient_halves(series, seed)  # prior fold of every patient, all her lines together
    pieces = []
    calibrations = []
    for fold in (0, 1):
        train = series.subset(np.flatnonzero(half != fold))
        prior = fit_prior(train)
        # the recalibration is fitted inside the training half, on its own split (CALIBRATION_SEED):
        # the patients validated here never shape the bands they are scored against
        calibration = calibrate_bands(train, start=prior) if prior.n_patients else None
        calibrations.append(calibration)
        mine = half[origins] == fold
        sub, keep = series.subset(origins[mine]), kept[mine]
        fit = fit_map(sub.first(keep), replace(prior, calibration=calibration))
        hidden = held_out_mask(sub, keep)
        t = np.where(hidden, sub.t_days, 0.0)
        point = fit.curve(t)
        levels = (0.025, 0.10, 0.90, 0.975)
        q = fit.predictive(t, seed=seed + fold, quantiles=levels)
        raw = fit.predictive(t, seed=seed + fold, quantiles=levels, calibrated=False)
        locf, trend = _baselines(sub, keep, t)
        last_t = sub.t_days[np.arange(sub.n), keep - 1]
        pieces.append(
            pd.DataFrame(
                {
                    "person_id": np.broadcast_to(sub.patients[:, None], t.shape)[hidden],
                    "series": np.broadcast_to(sub.person_id[:, None], t.shape)[hidden],
                    "observed_points": np.broadcast_to(keep[:, None], t.shape)[hidden],
                    "ahead_days": (t - last_t[:, None])[hidden],
                    "mm": sub.mm[hidden],
                    "tgi": point[hidden],
                    "locf": locf[hidden],
                    "trend": trend[hidden],
                    "lo95": q[0][hidden],
                    "lo80": q[1][hidden],
                    "hi80": q[2][hidden],
                    "hi95": q[3][hidden],
                    "raw_lo95": raw[0][hidden],
                    "raw_lo80": raw[1][hidden],
                    "raw_hi80": raw[2][hidden],
                    "raw_hi95": raw[3][hidden],
                }
            )
        )
    d = pd.concat(pieces, ignore_index=True)

    def share(x) -> float:
        return round(float(np.mean(x)), 4)

    def summary(part: pd.DataFrame) -> dict:
        y = part["mm"]
        return {
            "readings": len(part),
            "patients": int(part["person_id"].nunique()),
            "lines": int(part["series"].nunique()),
            "mae_mm": {
                m: round(float((part[m] - y).abs().mean()), 3) for m in ("tgi", "locf", "trend")
            },
            "coverage_80": share((y >= part["lo80"]) & (y <= part["hi80"])),
            "coverage_95": share((y >= part["lo95"]) & (y <= part["hi95"])),
            "below_above_80": [share(y < part["lo80"]), share(y > part["hi80"])],
            "below_above_95": [share(y < part["lo95"]), share(y > part["hi95"])],
            "uncalibrated": {
                "coverage_80": share((y >= part["raw_lo80"]) & (y <= part["raw_hi80"])),
                "coverage_95": share((y >= part["raw_lo95"]) & (y <= part["raw_hi95"])),
                "below_above_80": [share(y < part["raw_lo80"]), share(y > part["raw_hi80"])],
            },
            "band_width_mm_80": round(float((part["hi80"] - part["lo80"]).median()), 2),
            "uncalibrated_band_width_mm_80": round(
                float((part["raw_hi80"] - part["raw_lo80"]).median()), 2
            ),
        }

    by_horizon = {}
    bins = HORIZON_BINS_DAYS
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        part = d[(d["ahead_days"] > lo) & (d["ahead_days"] <= hi)]
        if len(part):
            label = (
                f"{lo / 30.44:.0f}-{hi / 30.44:.0f} months"
                if hi < bins[-1]
                else f"over {lo / 30.44:.0f} months"
            )
            by_horizon[label] = summary(part)
    overall = summary(d)
    better = {b: overall["mae_mm"]["tgi"] < overall["mae_mm"][b] for b in ("locf", "trend")}
    return {
        "design": f"one series per line of therapy (baseline scan to before the next line's start); lines with "
        f">= {MIN_READINGS} readings forecast from each origin (first j >= 2 readings known) to the next "
        "reading (later ones exist only if the line had not progressed); prior from the other half of "
        "patients (2-fold, all lines of a patient on one side); forecast = MAP growth-inhibition curve; bands for a future "
        "measurement (parameter draws + measurement noise), read at levels recalibrated on held-out "
        f"readings of the training half only (its own split, seed {CALIBRATION_SEED}); below_above: "
        "shares of readings under / over the band (nominal 0.10 each for 80 %, 0.025 for 95 %)",
        "band_calibration": [None if c is None else c.as_dict() for c in calibrations],
        "overall": overall,
        "by_horizon": by_horizon,
        "beats_baselines": better,
        "seed": seed,
    }


def validate_survival(
    con: duckdb.DuckDBPyConnection, folds: int = 5, seed: int = DEFAULT_SEED
) -> dict:
    """Cross-validated integrated Brier score and calibration of the survival forecasts."""
    table, _ = clinic_training_table(con)
    grid = evaluation_grid(table)
    calib_days = np.array([y * DAYS_PER_YEAR for y in CALIBRATION_YEARS])
    all_days = np.concatenate([grid, calib_days, [LANDMARK_DAYS]])
    oof = np.full((table.n, all_days.size), np.nan)
    ibs_model, ibs_km = [], []
    for f, test_idx in enumerate(stratified_folds(table, folds, seed)):
        train_idx = np.setdiff1d(np.arange(table.n), test_idx)
        train, test = table.subset(train_idx), table.subset(test_idx)
        learner = make_learner("xgb_pseudo", seed + f).fit(train)
        curves = np.empty((test.n, all_days.size))
        for option in table.options:
            rows = test.treatment == option
            if rows.any():
                curves[rows] = learner.predict_survival(test.covariates[rows], option, all_days)
        oof[test_idx] = curves
        inside = (grid >= test.time_days.min()) & (grid < test.time_days.max())
        km = kaplan_meier_at(train.time_days, train.event, grid[inside])
        km_curve = np.tile(km, (test.n, 1))
        ibs_model.append(
            integrated_brier(train, test, curves[:, : grid.size][:, inside], grid[inside])
        )
        ibs_km.append(integrated_brier(train, test, km_curve, grid[inside]))
    calibration = {}
    for y, day, col in zip(
        CALIBRATION_YEARS, calib_days, range(grid.size, grid.size + 3), strict=True
    ):
        pred = oof[:, col]
        groups = pd.qcut(pred, 5, labels=False, duplicates="drop")
        rows = []
        for g in np.unique(groups):
            m = groups == g
            rows.append(
                {
                    "group": int(g) + 1,
                    "patients": int(m.sum()),
                    "predicted": round(float(pred[m].mean()), 4),
                    "observed_km": round(
                        float(kaplan_meier_at(table.time_days[m], table.event[m], day)), 4
                    ),
                }
            )
        diffs = [abs(r["predicted"] - r["observed_km"]) for r in rows]
        calibration[f"{y}y"] = {
            "mean_predicted": round(float(pred.mean()), 4),
            "observed_km": round(float(kaplan_meier_at(table.time_days, table.event, day)), 4),
            "quintiles": rows,
            "mean_abs_error": round(float(np.mean(diffs)), 4),
            "max_abs_error": round(float(np.max(diffs)), 4),
        }
    # landmark: conditional forecasts among those recurrence-free at one year
    at_risk = table.time_days > LANDMARK_DAYS
    s_landmark = np.maximum(oof[at_risk, -1], 1e-9)
    landmark = {}
    for y, col in zip(CALIBRATION_YEARS[1:], range(grid.size + 1, grid.size + 3), strict=True):
        cond = oof[at_risk, col] / s_landmark
        observed = kaplan_meier_at(
            table.time_days[at_risk], table.event[at_risk], y * DAYS_PER_YEAR
        )
        landmark[f"{y}y_given_1y"] = {
            "patients": int(at_risk.sum()),
            "mean_predicted": round(float(cond.mean()), 4),
            "observed_km": round(float(observed), 4),
        }
    return {
        "design": f"{folds}-fold cross-validation (seed {seed}) of the clinic's xgb_pseudo learner; each held-out "
        "patient's curve under the option she received",
        "patients": table.n,
        "events": int(table.event.sum()),
        "integrated_brier": {
            "model": round(float(np.nanmean(ibs_model)), 4),
            "kaplan_meier_reference": round(float(np.nanmean(ibs_km)), 4),
            "folds_model": [round(float(v), 4) for v in ibs_model],
            "grid_days": [round(float(grid[0]), 1), round(float(grid[-1]), 1)],
        },
        "calibration": calibration,
        "landmark_1y": landmark,
    }


def validate_forecast(
    con: duckdb.DuckDBPyConnection, seed: int = DEFAULT_SEED, folds: int = 5
) -> dict:
    """The three validations on one store (the report of ``oncolens validate forecast``)."""
    # lazy: at the top, importing analytics.forecast.validation took 960 ms instead of 34 ms
    from analytics.forecast.validation_risk import validate_risk

    cutoff = data_cutoff(con)
    frame = clean_segments(lesion_segments(con, "all", as_of=cutoff), cutoff)
    n_patients = con.execute("SELECT count(*) FROM person").fetchall()[0][0]
    try:
        risk = validate_risk(con, seed)
    except ValueError as exc:  # no cut-off, or too few patients: the rest still stands
        risk = {"unavailable": str(exc)}
    return {
        "store_patients": int(n_patients),
        "tumour": validate_tumour(frame, seed),
        "survival": validate_survival(con, folds, seed),
        "risk_6m": risk,
        "caveat": "Simulated clinic: the growth-inhibition model is the generator's own model, so these figures "
        "are an upper bound for real data; survival figures are cross-validated on the same clinic.",
    }
