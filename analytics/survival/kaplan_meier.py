"""The Kaplan-Meier estimator, once: counts, product-limit curve, Greenwood variance, log(-log) band.

Why one kernel: the cohort builder (from DuckDB's per-day counts), the Cohorts page's curves, the
treatment policy report, the forecast validation, the subgroup audit and the pseudo-values each
had their own Kaplan-Meier (three of them through lifelines, ~2 s to import). Two copies of an
estimator can disagree on ties or on censoring at the last time; one cannot.

Shape (after scikit-survival's ``_compute_counts``): the estimator depends on the data only
through, per distinct time, the number of events and the number leaving the risk set (events
plus censorings). ``event_counts`` gets them from one row per patient (one sort and two
bincounts, O(n log n)); the cohort builder gets them from a GROUP BY in DuckDB, because at a
million patients moving one row per patient into Python costs more than the whole query. Both
go through ``KaplanMeier.from_counts``.

Conventions (lifelines', the reference in the tests):

- the curve is a right-continuous step function: S(t) includes the events at t, S = 1 before
  the first time, and past the last observed time S stays at its last value;
- a censoring tied with an event is still at risk at that event;
- Greenwood's variance of log S sums d / (n (n - d)) over event times with n > d (the time at
  which S reaches 0 adds nothing, as in lifelines);
- the 95 % band is the log(-log) ("exponential Greenwood") interval, which stays inside
  [0, 1]: 1 where S = 1 and 0 where S = 0;
- the median is the first time with S <= 1/2 (None when the curve stays above one half).

Arithmetic: S is the running product of 1 - d/n in float64 (lifelines exponentiates the running
sum of log(n - d) - log(n); the two agree to a few units in the last place per factor), and
Greenwood's sum is accumulated in time order exactly as lifelines does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from analytics.survival.constants import Z_95

__all__ = ["KaplanMeier", "event_counts", "kaplan_meier_at"]

FloatArray = NDArray[np.float64]


def _times(time: ArrayLike) -> NDArray[Any]:
    """Survival times as a 1-D numeric array (integers kept: the builder's days stay whole)."""
    t = np.asarray(time)
    if t.ndim != 1:
        raise ValueError(f"survival times must be one-dimensional, not of shape {t.shape}")
    if t.dtype.kind not in "iuf":
        t = t.astype(np.float64)
    if not np.isfinite(t).all():
        raise ValueError("survival times must be finite numbers")
    return t


def event_counts(
    time: ArrayLike, event: ArrayLike, weight: ArrayLike | None = None
) -> tuple[NDArray[Any], FloatArray, FloatArray]:
    """Per distinct time, ascending: (times, events, removed), removed = events + censorings.

    ``event`` is true for an observed event, false for a censoring. ``weight``: one per patient
    (frequency weights, default 1); events and removed are then weighted sums.
    """
    t = _times(time)
    e = np.asarray(event, dtype=bool)
    if e.shape != t.shape:
        raise ValueError(f"{t.size} times but {e.size} event flags")
    uniq, inverse = np.unique(t, return_inverse=True)
    if weight is None:
        w = None
    else:
        w = np.asarray(weight, dtype=np.float64)
        if w.shape != t.shape or not (np.isfinite(w) & (w >= 0)).all():
            raise ValueError("weights must be one finite, non-negative number per patient")
    # bincount with weights sums in float64 (its stubs say integers, hence the no-copy casts)
    events = np.bincount(inverse, e if w is None else np.where(e, w, 0.0), uniq.size)
    removed = np.bincount(inverse, w, uniq.size)
    return uniq, events.astype(np.float64, copy=False), removed.astype(np.float64, copy=False)


@dataclass(frozen=True, eq=False)
class KaplanMeier:
    """The product-limit estimate at every distinct time (see the module docstring for conventions).

    Arrays, one entry per distinct time in ascending ``time``: ``events``, ``removed`` (events plus
    censorings), ``at_risk`` (just before the time), ``survival`` (S just after it) and
    ``greenwood`` (Greenwood's variance of log S there). ``n``: at risk at the start.
    """

    time: NDArray[Any]
    events: FloatArray
    removed: FloatArray
    at_risk: FloatArray
    survival: FloatArray
    greenwood: FloatArray
    n: float

    @classmethod
    def fit(cls, time: ArrayLike, event: ArrayLike, weight: ArrayLike | None = None) -> KaplanMeier:
        """From one row per patient: time, event flag and optional frequency weight.

        Whole-number weights are repeated rows (tested); with other weights the curve is the
        weighted product-limit, but Greenwood's variance is only the naive plug-in.
        """
        uniq, events, removed = event_counts(time, event, weight)
        return cls.from_counts(uniq, events, removed)

    @classmethod
    def from_counts(
        cls, time: ArrayLike, events: ArrayLike, removed: ArrayLike, n: float | None = None
    ) -> KaplanMeier:
        """From counts per distinct time (ascending): events, and patients leaving the risk set.

        ``n``: at risk at the start; default the sum of ``removed`` (everyone leaves at some time).
        """
        t = _times(time)
        d = np.asarray(events, dtype=np.float64)
        r = np.asarray(removed, dtype=np.float64)
        if not t.shape == d.shape == r.shape:
            raise ValueError("time, events and removed must have one entry per distinct time")
        if t.size > 1 and not (np.diff(t) > 0).all():
            raise ValueError("times must be distinct and ascending")
        if not ((d >= 0) & (d <= r)).all():
            raise ValueError("events must be between 0 and the number removed at each time")
        total = float(r.sum()) if n is None else float(n)
        if total < r.sum():
            raise ValueError(f"n = {n} is smaller than the {r.sum():g} patients removed")
        at_risk = total - np.concatenate([[0.0], np.cumsum(r)[:-1]])[: r.size]
        with np.errstate(divide="ignore", invalid="ignore"):
            survival = np.cumprod(np.where(at_risk > 0, 1.0 - d / at_risk, 1.0), dtype=np.float64)
            greenwood = np.cumsum(np.where(at_risk > d, d / (at_risk * (at_risk - d)), 0.0))
        return cls(t, d, r, at_risk, survival, greenwood, total)

    def _step(self, values: FloatArray, times: ArrayLike, before: float) -> FloatArray:
        """``values`` read off as a right-continuous step function at ``times``; ``before`` earlier."""
        at = np.asarray(times)
        if self.time.size == 0:
            return np.full(at.shape, before)
        idx = np.searchsorted(self.time, at, side="right") - 1
        return np.where(idx >= 0, values[np.maximum(idx, 0)], before)

    def survival_at(self, times: ArrayLike) -> FloatArray:
        """S(t) at each of ``times``: 1 before the first time, the last value after the last."""
        return self._step(self.survival, times, 1.0)

    def band(self, z: float = Z_95) -> tuple[FloatArray, FloatArray]:
        """(lower, upper) pointwise band at every distinct time: log(-log) Greenwood, z = ``z``.

        exp(-exp(log(-log S) -/+ z sqrt(V) / log S)), V Greenwood's variance of log S: the
        delta method on log(-log S), which keeps the band inside [0, 1].
        """
        s = self.survival
        with np.errstate(divide="ignore", invalid="ignore"):
            log_s = np.log(s)
            half = z * np.sqrt(self.greenwood) / log_s
            lo = np.exp(-np.exp(np.log(-log_s) - half))
            hi = np.exp(-np.exp(np.log(-log_s) + half))
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        lo = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, lo))
        hi = np.where(s >= 1.0, 1.0, np.where(s <= 0.0, 0.0, hi))
        return lo, hi

    def band_at(self, times: ArrayLike, z: float = Z_95) -> tuple[FloatArray, FloatArray]:
        """The band read off at ``times`` as a step function (1 before the first time)."""
        lo, hi = self.band(z)
        return self._step(lo, times, 1.0), self._step(hi, times, 1.0)

    def at_risk_at(self, times: ArrayLike) -> FloatArray:
        """Patients at risk at each of ``times``: those whose time is at least t."""
        left_before = np.concatenate([[0.0], np.cumsum(self.removed)])
        return self.n - left_before[np.searchsorted(self.time, np.asarray(times), side="left")]

    def median(self) -> float | None:
        """The first time with S <= 1/2; None when the curve never falls that far."""
        below = np.flatnonzero(self.survival <= 0.5)
        return float(self.time[below[0]]) if below.size else None

    def steps(self, z: float = Z_95) -> pd.DataFrame:
        """The curve as drawn: a row at the origin (S = 1) and one per event time.

        Columns time, survival, lower, upper (``band``), at_risk (just before the time). The
        origin is time 0 (or the first time, if earlier); an event at the origin replaces its row.
        """
        keep = self.events > 0
        lo, hi = self.band(z)
        frame = pd.DataFrame(
            {
                "time": self.time[keep],
                "survival": self.survival[keep],
                "lower": lo[keep],
                "upper": hi[keep],
                "at_risk": self.at_risk[keep],
            }
        )
        origin = min(self.time[0], 0) if self.time.size else 0
        if not frame.empty and frame["time"].iloc[0] == origin:
            return frame
        start = pd.DataFrame(
            {
                "time": np.array([origin], dtype=self.time.dtype),
                "survival": [1.0],
                "lower": [1.0],
                "upper": [1.0],
                "at_risk": [self.n],
            }
        )
        return start if frame.empty else pd.concat([start, frame], ignore_index=True)


def kaplan_meier_at(time: ArrayLike, event: ArrayLike, at: ArrayLike) -> FloatArray:
    """Kaplan-Meier S(t) of one row per patient, at each time in ``at`` (a step function)."""
    return KaplanMeier.fit(time, event).survival_at(at)
