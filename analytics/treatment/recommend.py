"""From predicted outcomes under each option to a recommendation, or "no clear difference".

The rule, stated once: the option with the highest predicted 5-year
recurrence-free survival is recommended when its benefit over the next best
option (difference in 5-year RFS probability) has a 95 % interval above zero.
When the interval includes zero, the statement is "no clear difference"
between the two, and ``recommended`` is None: the model does not pick one.
The interval is the benefit +/- 1.96 bootstrap standard errors of the same
difference (paired: each bootstrap refit predicts both options).

Pure functions of arrays, so every rule here is tested with numbers chosen by
hand (tests/analytics/treatment/test_recommend.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.survival.constants import Z_95
from analytics.treatment.model.outcome_model import OutcomeModel

NO_CLEAR_DIFFERENCE = "no clear difference"


@dataclass(frozen=True)
class OptionOutcome:
    """Predicted outcome of one patient under one option (probabilities 0-1, times in days)."""

    treatment: str
    rfs_5y: float
    rfs_5y_ci: tuple[float, float]
    rmst_days: float
    rmst_ci_days: tuple[float, float]


@dataclass(frozen=True)
class Recommendation:
    """One patient's options, the best predicted option, and whether it is clearly better."""

    options: tuple[OptionOutcome, ...]
    best: str  # highest predicted 5-year RFS
    next_best: str
    benefit: float  # 5-year RFS of best minus next best (probability difference)
    benefit_ci: tuple[float, float]
    clear: bool  # the interval lies above zero

    @property
    def recommended(self) -> str | None:
        return self.best if self.clear else None

    @property
    def statement(self) -> str:
        pp = f"{100 * self.benefit:+.1f} percentage points, 95% CI {100 * self.benefit_ci[0]:+.1f} to {100 * self.benefit_ci[1]:+.1f}"
        if self.clear:
            return f"{self.best}: 5-year RFS {pp} over {self.next_best}"
        return f"{NO_CLEAR_DIFFERENCE} between {self.best} and {self.next_best} ({pp})"


def _interval(
    point: np.ndarray, se: np.ndarray, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    ci = np.stack([point - Z_95 * se, point + Z_95 * se], axis=-1)
    if lo is not None or hi is not None:
        ci = np.clip(ci, lo, hi)
    return ci


@dataclass(frozen=True, eq=False)
class CohortRecommendations:
    """Recommendations of many patients as arrays (n patients, k options)."""

    options: tuple[str, ...]
    rfs_5y: np.ndarray  # (n, k) point estimate (raw model output, may stray past 0-1 slightly)
    rfs_5y_se: np.ndarray  # (n, k) bootstrap standard error
    rmst_days: np.ndarray  # (n, k)
    rmst_se_days: np.ndarray  # (n, k)
    best: np.ndarray  # (n,) option index
    next_best: np.ndarray  # (n,) option index
    benefit: np.ndarray  # (n,) rfs_5y[best] - rfs_5y[next_best]
    benefit_se: np.ndarray  # (n,)

    @property
    def n(self) -> int:
        return self.rfs_5y.shape[0]

    @property
    def benefit_ci(self) -> np.ndarray:
        return _interval(self.benefit, self.benefit_se)

    @property
    def clear(self) -> np.ndarray:
        return self.benefit_ci[:, 0] > 0

    def recommended_names(self) -> np.ndarray:
        """Option name per patient, or ``NO_CLEAR_DIFFERENCE``."""
        names = np.asarray(self.options, dtype=object)[self.best]
        return np.where(self.clear, names, NO_CLEAR_DIFFERENCE)

    def patient(self, i: int) -> Recommendation:
        rfs_ci = _interval(self.rfs_5y[i], self.rfs_5y_se[i], 0.0, 1.0)
        rmst_ci = _interval(self.rmst_days[i], self.rmst_se_days[i], 0.0, None)
        options = tuple(
            OptionOutcome(
                o,
                float(np.clip(self.rfs_5y[i, j], 0.0, 1.0)),
                (float(rfs_ci[j, 0]), float(rfs_ci[j, 1])),
                float(self.rmst_days[i, j]),
                (float(rmst_ci[j, 0]), float(rmst_ci[j, 1])),
            )
            for j, o in enumerate(self.options)
        )
        ci = self.benefit_ci[i]
        return Recommendation(
            options,
            self.options[int(self.best[i])],
            self.options[int(self.next_best[i])],
            float(self.benefit[i]),
            (float(ci[0]), float(ci[1])),
            bool(self.clear[i]),
        )


def summarise(
    options: tuple[str, ...],
    rfs_5y: np.ndarray,
    rfs_5y_replicates: np.ndarray,
    rmst_days: np.ndarray,
    rmst_replicates: np.ndarray,
) -> CohortRecommendations:
    """Rank the options per patient and attach bootstrap standard errors.

    ``rfs_5y``, ``rmst_days``: (n, k); ``*_replicates``: (bootstrap, n, k).
    Ties in the point estimate go to the earlier option (and have zero benefit,
    so they are never "clear").
    """
    if len(options) < 2:
        raise ValueError("a recommendation needs at least two options")
    n = rfs_5y.shape[0]
    order = np.argsort(-rfs_5y, axis=1, kind="stable")
    best, nxt = order[:, 0], order[:, 1]
    rows = np.arange(n)
    benefit = rfs_5y[rows, best] - rfs_5y[rows, nxt]
    diff_reps = rfs_5y_replicates[:, rows, best] - rfs_5y_replicates[:, rows, nxt]
    return CohortRecommendations(
        tuple(options),
        rfs_5y,
        rfs_5y_replicates.std(axis=0, ddof=1),
        rmst_days,
        rmst_replicates.std(axis=0, ddof=1),
        best,
        nxt,
        benefit,
        diff_reps.std(axis=0, ddof=1),
    )


def recommend(model: OutcomeModel, covariates) -> CohortRecommendations:
    """Predict every option for every row of ``covariates`` and summarise."""
    rfs, rmst = model.predict(covariates)
    rfs_reps, rmst_reps = model.predict_replicates(covariates)
    return summarise(model.options_, rfs, rfs_reps, rmst, rmst_reps)
