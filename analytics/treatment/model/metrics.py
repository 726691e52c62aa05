"""How well an outcome learner predicts RFS: concordance and Brier score, cross-validated.

Every learner is scored on the same folds (stratified on the event flag,
seeded), so differences between learners are not differences between splits.
Metrics are scikit-survival's, an implementation independent of ours:

- Harrell's C (``concordance_index_censored``) and Uno's C
  (``concordance_index_ipcw``, truncated at ``tau``, inverse-probability-of-
  censoring weighted, so less dependent on the censoring pattern), both on the
  risk score 1 - S(5 y | x, a received);
- the integrated Brier score (``integrated_brier_score``) of the whole
  predicted curve over an evaluation grid inside every test fold's follow-up.

The out-of-fold predictions are kept: the recommendation analysis uses them,
so no patient is judged by a model that saw her.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from analytics.survival.constants import HORIZON_5Y_DAYS
from analytics.treatment.data import SurvivalTable

if TYPE_CHECKING:
    import pandas as pd


class Learner(Protocol):
    """What cross-validation needs of a learner (those of ``learners.LEARNERS``)."""

    def fit(self, table: SurvivalTable) -> Learner: ...

    def predict_survival(self, covariates: pd.DataFrame, option: str, times_days) -> np.ndarray: ...


def _surv(time: np.ndarray, event: np.ndarray):
    # lazy: sksurv is imported only when this is used (start-up time)
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event, dtype=bool), time=np.asarray(time, dtype=float))


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    # lazy: sksurv is imported only when this is used (start-up time)
    from sksurv.metrics import concordance_index_censored

    return float(
        concordance_index_censored(np.asarray(event, bool), np.asarray(time, float), risk)[0]
    )


def uno_c(train: SurvivalTable, test: SurvivalTable, risk: np.ndarray, tau_days: float) -> float:
    # lazy: sksurv is imported only when this is used (start-up time)
    from sksurv.metrics import concordance_index_ipcw

    tau = min(tau_days, float(test.time_days.max()) - 1e-6, float(train.time_days.max()) - 1e-6)
    keep = _within_training_follow_up(train, test)
    return float(
        concordance_index_ipcw(
            _surv(train.time_days, train.event),
            _surv(test.time_days[keep], test.event[keep]),
            risk[keep],
            tau=tau,
        )[0]
    )


def _within_training_follow_up(train: SurvivalTable, test: SurvivalTable) -> np.ndarray:
    """Test patients whose time is inside the training split's follow-up.

    The censoring weights (IPCW) come from the training split's Kaplan-Meier curve of
    censoring, which is undefined past its last time: when the longest follow-up of a
    trial ends in an event and that patient falls in a test fold, scikit-survival
    raises "time must be smaller than largest observed time point". Such patients are
    left out of the weighted metrics of that fold (they are one or two per fold).
    """
    return test.time_days < float(train.time_days.max())


def integrated_brier(
    train: SurvivalTable, test: SurvivalTable, surv: np.ndarray, grid: np.ndarray
) -> float:
    # lazy: sksurv is imported only when this is used (start-up time)
    from sksurv.metrics import integrated_brier_score

    keep = _within_training_follow_up(train, test)
    return float(
        integrated_brier_score(
            _surv(train.time_days, train.event),
            _surv(test.time_days[keep], test.event[keep]),
            surv[keep],
            grid,
        )
    )


def evaluation_grid(
    table: SurvivalTable, points: int = 40, horizon_days: float = HORIZON_5Y_DAYS
) -> np.ndarray:
    """Times for the Brier score: from the 10th percentile of follow-up to 5 years or the 80th percentile."""
    lo = float(np.percentile(table.time_days, 10))
    hi = min(horizon_days, float(np.percentile(table.time_days, 80)))
    if hi <= lo:
        hi = float(np.percentile(table.time_days, 90))
    return np.linspace(lo, hi, points)


def stratified_folds(table: SurvivalTable, folds: int, seed: int) -> list[np.ndarray]:
    """Test-row indices of each fold, stratified on event and option (so every fold has every option)."""
    # lazy: sklearn is imported only when this is used (start-up time)
    from sklearn.model_selection import StratifiedKFold

    strata = np.char.add(table.event.astype(int).astype(str), table.treatment.astype(str))
    # rare strata (fewer patients than folds) are merged by event alone
    values, counts = np.unique(strata, return_counts=True)
    rare = np.isin(strata, values[counts < folds])
    strata = np.where(rare, table.event.astype(int).astype(str), strata)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in skf.split(np.zeros(table.n), strata)]


@dataclass(frozen=True, eq=False)
class CrossValidation:
    """Per-fold metrics of one learner and its out-of-fold predictions.

    ``oof_survival``: (n, len(options)) predicted S(5 y) under every option, out of fold;
    ``oof_survival_curve``: (n, len(grid)) predicted S(t) under the option received.
    """

    learner: str
    harrell: np.ndarray
    uno: np.ndarray
    ibs: np.ndarray
    oof_rfs_5y: np.ndarray
    oof_survival_curve: np.ndarray
    grid_days: np.ndarray

    def summary(self) -> dict:
        def stat(x: np.ndarray) -> dict:
            return {
                "mean": round(float(np.mean(x)), 4),
                "sd": round(float(np.std(x, ddof=1)), 4),
                "folds": [round(float(v), 4) for v in x],
            }

        return {
            "harrell_c": stat(self.harrell),
            "uno_c": stat(self.uno),
            "integrated_brier": stat(self.ibs),
        }


def cross_validate(
    table: SurvivalTable,
    make: Callable[[int], Learner],
    name: str,
    folds: list[np.ndarray],
    grid: np.ndarray,
    seed: int = 0,
    horizon_days: float = HORIZON_5Y_DAYS,
) -> CrossValidation:
    """Fit ``make(seed)`` on each training split, score on its test split (the same ``folds`` for all)."""
    n, k = table.n, len(table.options)
    oof = np.full((n, k), np.nan)
    curves = np.full((n, grid.size), np.nan)
    harrell, uno, ibs = [], [], []
    for f, test_idx in enumerate(folds):
        train_idx = np.setdiff1d(np.arange(n), test_idx)
        train, test = table.subset(train_idx), table.subset(test_idx)
        learner = make(seed + f).fit(train)
        for j, option in enumerate(table.options):
            oof[test_idx, j] = learner.predict_survival(test.covariates, option, [horizon_days])[
                :, 0
            ]
        curve = np.empty((test.n, grid.size))
        for option in table.options:
            rows = test.treatment == option
            if rows.any():
                curve[rows] = learner.predict_survival(test.covariates[rows], option, grid)
        curves[test_idx] = curve
        received = np.array([table.options.index(o) for o in test.treatment])
        risk = 1.0 - oof[test_idx, received]
        harrell.append(harrell_c(test.time_days, test.event, risk))
        uno.append(uno_c(train, test, risk, horizon_days))
        # sksurv scores only times inside the test fold's follow-up (a small fold may start late)
        kept = test.time_days[_within_training_follow_up(train, test)]
        inside = (grid >= kept.min()) & (grid < kept.max())
        ibs.append(
            integrated_brier(train, test, curve[:, inside], grid[inside])
            if inside.sum() >= 2
            else np.nan
        )
    return CrossValidation(name, np.array(harrell), np.array(uno), np.array(ibs), oof, curves, grid)
