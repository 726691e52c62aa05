"""Recurrence-free survival forecasts per treatment option, conditional on the time already survived.

Source: the clinic's treatment model (``analytics.treatment.model.outcome_model``),
an S-learner of gradient-boosted trees on pseudo-values that predicts S(t | x,
a) at every half year up to five years, plus its bootstrap refits. No new
model is fitted here, so the survival panel and the Treatment options section
show the same model, whose card the ethics board has read.

Why conditional: a patient reviewed three years after diagnosis without a
recurrence is no longer the patient she was at diagnosis. Her forecast is
S(t | T > t0) = S(t) / S(t0), with t0 the days from diagnosis to "today" (the
store's data cut-off, or the end of her follow-up). The band is the point
estimate +/- 1.96 bootstrap standard errors of that ratio (each refit's own
ratio), as for the 5-year figures of the Treatment options section, clipped to
[0, 1]. Between the half-year horizons curves are linear (the model's own
interpolation, ``XGBPseudoLearner.predict_survival``).

The model stops at five years after diagnosis: beyond that it says nothing,
and a patient already past five years gets a note instead of a curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.survival.constants import DAYS_PER_YEAR, Z_95
from analytics.treatment.model.outcome_model import SMALL_BATCH_ROWS, OutcomeModel

HALF_YEAR_DAYS = DAYS_PER_YEAR / 2  # 182.625 days: the six-month risk window


@dataclass(frozen=True, eq=False)
class SurvivalCurves:
    """S(t) under every option at the model's horizons, t = 0 included.

    ``days`` (h + 1,) from diagnosis; ``point`` (n, options, h + 1) from the full-data model;
    ``replicates`` (refits, n, options, h + 1); curves clipped to [0, 1], non-increasing.
    """

    options: tuple[str, ...]
    days: np.ndarray
    point: np.ndarray
    replicates: np.ndarray

    def at(self, day: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(point, replicates) linearly interpolated at ``day`` (scalar, or one per patient (n,))."""
        day = np.broadcast_to(np.asarray(day, dtype=float), (self.point.shape[0],))
        j = np.clip(np.searchsorted(self.days, day, side="right") - 1, 0, len(self.days) - 2)
        span = self.days[j + 1] - self.days[j]
        w = np.clip((day - self.days[j]) / span, 0.0, 1.0)

        def interp(
            curves: np.ndarray,
        ) -> np.ndarray:  # (..., n, options, h + 1) -> (..., n, options)
            shape = (1,) * (curves.ndim - 3) + (len(day), 1, 1)
            lo = np.take_along_axis(curves, j.reshape(shape), axis=-1)[..., 0]
            hi = np.take_along_axis(curves, (j + 1).reshape(shape), axis=-1)[..., 0]
            return lo + (hi - lo) * w[:, None]

        return interp(self.point), interp(self.replicates)


def _monotone(raw: np.ndarray) -> np.ndarray:
    curve = np.minimum.accumulate(np.clip(raw, 0.0, 1.0), axis=-1)
    return np.concatenate([np.ones((*curve.shape[:-1], 1)), curve], axis=-1)


def survival_curves(model: OutcomeModel, covariates: pd.DataFrame) -> SurvivalCurves:
    """Every option's curve for every patient, from the full-data model and each bootstrap refit."""
    learner = model.main_
    if not hasattr(learner, "survival_grid"):
        raise ValueError(f"survival forecasts need the pseudo-value model, not {model.learner}")
    inputs = model._inputs(covariates)  # feature order, one array (as the model does)
    n, k, h = len(inputs), len(model.options_), len(learner.horizons_days)
    point = learner.survival_grid(inputs)
    stacked = getattr(model, "stacked_members_", None)
    if stacked is not None and n * k * h <= SMALL_BATCH_ROWS:
        reps = stacked.predict(learner.design_grid(inputs)).T.reshape(len(model.members_), n, k, h)
    else:
        reps = np.stack([m.survival_grid(inputs) for m in model.members_])
    days = np.concatenate([[0.0], np.asarray(learner.horizons_days, dtype=float)])
    return SurvivalCurves(tuple(model.options_), days, _monotone(point), _monotone(reps))


@dataclass(frozen=True, eq=False)
class SurvivalForecast:
    """One patient's conditional curves: per option, rows of day (from diagnosis), s, lo, hi."""

    from_day: float  # conditioned on being recurrence-free at this day
    curves: dict[str, pd.DataFrame]

    def to_json(self) -> dict[str, list[dict]]:
        return {
            option: [
                {
                    "day": round(float(r.day), 1),
                    "s": round(float(r.s), 4),
                    "lo": round(float(r.lo), 4),
                    "hi": round(float(r.hi), 4),
                }
                for r in frame.itertuples()
            ]
            for option, frame in self.curves.items()
        }

    def risk_within(self, option: str, days: float) -> float:
        """1 - S(from_day + days | survived to from_day) under ``option`` (NaN past the model's horizon)."""
        frame = self.curves[option]
        end = self.from_day + days
        if end > float(frame["day"].max()) + 1e-9:
            return float("nan")
        return float(1.0 - np.interp(end, frame["day"], frame["s"]))


def conditional_forecast(
    curves: SurvivalCurves, from_day: float, patient: int = 0
) -> SurvivalForecast | None:
    """Curves of one patient conditional on T > ``from_day``; None when past the model's horizon."""
    if from_day >= curves.days[-1]:
        return None
    from_day = max(float(from_day), 0.0)
    days = np.concatenate([[from_day], curves.days[curves.days > from_day]])
    s0, s0_reps = curves.at(from_day)
    out: dict[str, pd.DataFrame] = {}
    for j, option in enumerate(curves.options):
        point = np.interp(days, curves.days, curves.point[patient, j]) / max(s0[patient, j], 1e-9)
        reps = np.stack(
            [np.interp(days, curves.days, rep[patient, j]) for rep in curves.replicates]
        )
        reps = reps / np.maximum(s0_reps[:, patient, j][:, None], 1e-9)
        se = reps.std(axis=0, ddof=1) if len(reps) > 1 else np.zeros_like(point)
        point = np.clip(point, 0.0, 1.0)
        out[option] = pd.DataFrame(
            {
                "day": days,
                "s": point,
                "lo": np.clip(point - Z_95 * se, 0.0, 1.0),
                "hi": np.clip(point + Z_95 * se, 0.0, 1.0),
            }
        )
    return SurvivalForecast(from_day, out)


def recurrence_risk(
    curves: SurvivalCurves,
    from_day: np.ndarray,
    option_index: np.ndarray,
    within_days: float = HALF_YEAR_DAYS,
) -> np.ndarray:
    """1 - S(t0 + within | T > t0) per patient under one option each (point estimate; NaN past 5 years)."""
    from_day = np.asarray(from_day, dtype=float)
    rows = np.arange(len(from_day))
    s0, _ = curves.at(from_day)
    s1, _ = curves.at(from_day + within_days)
    risk = 1.0 - s1[rows, option_index] / np.maximum(s0[rows, option_index], 1e-9)
    beyond = (from_day + within_days > curves.days[-1] + 1e-9) | (from_day < 0)
    return np.where(beyond, np.nan, np.clip(risk, 0.0, 1.0))


def conditional_km(km: pd.DataFrame, from_day: float) -> pd.DataFrame:
    """Kaplan-Meier curves (``cohort_summary.kaplan_meier`` columns) restarted at ``from_day``.

    Each group's survival and interval are divided by its survival at ``from_day`` (the
    step function's value there); groups with nobody left at risk are dropped.
    """
    if km.empty:
        return km
    parts = []
    for _, part in km.groupby("group", sort=False):
        part = part.sort_values("time_days")
        before = part[part["time_days"] <= from_day]
        s0 = float(before["survival"].iloc[-1]) if not before.empty else 1.0
        after = part[part["time_days"] >= from_day]
        if after.empty or s0 <= 0 or int(after["at_risk"].iloc[0]) == 0:
            continue
        scaled = after.copy()
        for col in ("survival", "ci_lower", "ci_upper"):
            scaled[col] = np.clip(scaled[col] / s0, 0.0, 1.0)
        parts.append(scaled)
    return pd.concat(parts, ignore_index=True) if parts else km.iloc[0:0]
