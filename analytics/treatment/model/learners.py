"""Outcome learners: recurrence-free survival under each treatment option, from censored data.

All learners are S-learners: one model over the covariates plus the option
(one indicator column per option), asked "what if she received option a?" by
setting the indicators. They share one estimator shape (``fit(table) ->
self``, fitted attributes end with ``_``, nothing happens in ``__init__``) and
one prediction: ``predict_survival(covariates, option, times_days)`` returns
S(t | x, a), shape (patients, times).

- ``XGBPseudoLearner`` (the clinic's model, see docs/validation.md for why):
  gradient-boosted trees fitted to Kaplan-Meier pseudo-values at half-year
  horizons (``analytics.survival.pseudo_values``), with the horizon as an input
  constrained to be non-increasing. Its raw output *is* a survival
  probability, so TreeSHAP explains differences in percentage points exactly.
- ``XGBCoxLearner``: xgboost ``survival:cox`` (log-hazard trees) with a
  Breslow baseline hazard; explainable exactly only on the log-hazard scale.
- ``CoxPHLearner``: lifelines' Cox proportional-hazards model, the classic
  baseline (no treatment-covariate interactions: the same hazard ratio for
  everyone, so it recommends the same option for all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.survival.constants import DAYS_PER_YEAR
from analytics.survival.pseudo_values import pseudo_values
from analytics.treatment.data import SurvivalTable
from analytics.treatment.horizon import pseudo_value_grid

# Pseudo-value horizons: every half year up to five years (5 y is one of them, so
# the 5-year prediction is a raw model output, which SHAP needs).
PSEUDO_HORIZONS_DAYS = tuple(round(DAYS_PER_YEAR * k / 2, 3) for k in range(1, 11))
TIME_COLUMN = "horizon_days"


def option_columns(options: tuple[str, ...]) -> list[str]:
    return [f"option={o}" for o in options]


def design_matrix(
    covariates: pd.DataFrame, options: tuple[str, ...], option: str | np.ndarray
) -> pd.DataFrame:
    """Covariates plus one 0/1 column per option; ``option`` is one name for all rows or one per row."""
    received = np.broadcast_to(np.asarray(option, dtype=object), (len(covariates),))
    unknown = set(received) - set(options)
    if unknown:
        raise ValueError(f"unknown treatment option(s) {sorted(unknown)}; known: {list(options)}")
    ind = {
        c: (received == o).astype(float)
        for c, o in zip(option_columns(options), options, strict=True)
    }
    return pd.concat([covariates.reset_index(drop=True), pd.DataFrame(ind)], axis=1)


def _step_interpolate(grid: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Linear interpolation of curves on ``grid`` (with S(0) = 1) at ``times``; flat after the grid."""
    grid0 = np.concatenate([[0.0], grid])
    vals0 = np.concatenate([np.ones((values.shape[0], 1)), values], axis=1)
    return np.stack([np.interp(times, grid0, row) for row in vals0])


@dataclass
class XGBPseudoLearner:
    """Boosted trees on stacked Kaplan-Meier pseudo-values; output = S(t | x, a) directly.

    Defaults chosen among seven settings by repeated 5-fold cross-validation on
    GBSG2 (fold seeds 100-102; docs/validation.md); depth 2 is the least that
    lets an S-learner's trees split on option x covariate interactions.
    """

    n_estimators: int = 250
    max_depth: int = 2
    learning_rate: float = 0.03
    min_child_weight: float = 40.0
    subsample: float = 0.8
    reg_lambda: float = 5.0
    seed: int = 0
    horizons_days: tuple[float, ...] = PSEUDO_HORIZONS_DAYS
    name: str = "xgb_pseudo"

    def _design(
        self, covariates: pd.DataFrame, option, horizon: float | np.ndarray
    ) -> pd.DataFrame:
        X = design_matrix(covariates, self.options_, option)
        X[TIME_COLUMN] = np.broadcast_to(np.asarray(horizon, dtype=float), (len(X),))
        return X

    def fit(self, table: SurvivalTable) -> XGBPseudoLearner:
        # lazy: xgboost is imported only when this is used (start-up time)
        import xgboost as xgb

        self.options_ = table.options
        self.feature_columns_ = list(table.covariates.columns)
        horizons = np.asarray(self.horizons_days, dtype=float)
        pv = pseudo_values(table.time_days, table.event, horizons)  # (n, k)
        n, k = pv.shape
        rows = np.repeat(np.arange(n), k)
        X = self._design(table.covariates.iloc[rows], table.treatment[rows], np.tile(horizons, n))
        constraints = tuple([0] * (X.shape[1] - 1) + [-1])  # S falls with the horizon
        self.model_ = xgb.XGBRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            min_child_weight=self.min_child_weight,
            subsample=self.subsample,
            reg_lambda=self.reg_lambda,
            monotone_constraints=constraints,
            objective="reg:squarederror",
            tree_method="hist",
            n_jobs=1,
            random_state=self.seed,
        )
        self.model_.fit(X, pv.reshape(-1))
        self.design_columns_ = list(X.columns)
        return self

    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Raw tree output for a design array in ``design_columns_`` order (no pandas, no DMatrix)."""
        return self.model_.get_booster().inplace_predict(np.ascontiguousarray(X, dtype=np.float32))

    def raw_output(self, covariates: pd.DataFrame, option: str, horizon_days: float) -> np.ndarray:
        """The trees' output at one horizon: the predicted S(horizon), not clipped to [0, 1]."""
        return self._predict(self._design(covariates, option, horizon_days).to_numpy())

    def design_array(self, covariates: np.ndarray, option: str, horizon_days: float) -> np.ndarray:
        """``_design`` as a plain array (``design_columns_`` order) for covariates already in feature order."""
        cov = np.asarray(covariates, dtype=float)
        k = len(self.options_)
        X = np.empty((len(cov), cov.shape[1] + k + 1))
        X[:, : cov.shape[1]] = cov
        X[:, cov.shape[1] : cov.shape[1] + k] = np.asarray(self.options_, dtype=object) == option
        X[:, -1] = horizon_days
        return X

    def design_grid(self, covariates: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Design rows of every patient x option x grid horizon, in that order: (n * options * horizons, columns).

        ``covariates``: a DataFrame, or an array already in ``feature_columns_`` order.
        """
        if isinstance(covariates, pd.DataFrame):
            covariates = covariates[self.feature_columns_].to_numpy(dtype=float)
        cov = np.asarray(covariates, dtype=float)
        n, k, h = len(cov), len(self.options_), len(self.horizons_days)
        X = np.empty((n, k, h, cov.shape[1] + k + 1))
        X[..., : cov.shape[1]] = cov[:, None, None, :]
        X[..., cov.shape[1] : cov.shape[1] + k] = np.eye(k)[None, :, None, :]
        X[..., -1] = np.asarray(self.horizons_days, dtype=float)[None, None, :]
        return X.reshape(n * k * h, -1)

    def survival_grid(self, covariates: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw S(t | x, a) at every horizon of the grid under every option: (n, options, horizons).

        One prediction call for everything (the per-patient latency is mostly call overhead).
        """
        X = self.design_grid(covariates)
        n = X.shape[0] // (len(self.options_) * len(self.horizons_days))
        return self._predict(X).reshape(n, len(self.options_), len(self.horizons_days))

    def predict_survival(self, covariates: pd.DataFrame, option: str, times_days) -> np.ndarray:
        grid = np.asarray(self.horizons_days, dtype=float)
        at_grid = self.survival_grid(covariates)[:, self.options_.index(option), :]
        at_grid = np.minimum.accumulate(np.clip(at_grid, 0.0, 1.0), axis=1)
        return _step_interpolate(grid, at_grid, np.atleast_1d(np.asarray(times_days, dtype=float)))


def breslow_cumulative_hazard(time: np.ndarray, event: np.ndarray, log_hazard: np.ndarray):
    """Breslow baseline cumulative hazard H0 at the unique event times: (times, H0)."""
    order = np.argsort(time, kind="stable")
    t, e, r = time[order], event[order], np.exp(log_hazard[order])
    uniq, first = np.unique(t, return_index=True)
    risk_sum = np.cumsum(r[::-1])[::-1][first]  # sum over T_j >= t
    deaths = np.add.reduceat(e.astype(float), first)
    keep = deaths > 0
    return uniq[keep], np.cumsum(deaths[keep] / risk_sum[keep])


@dataclass
class XGBCoxLearner:
    """xgboost ``survival:cox`` (trees on the log-hazard) with a Breslow baseline hazard."""

    n_estimators: int = 300
    max_depth: int = 2
    learning_rate: float = 0.03
    min_child_weight: float = 5.0
    subsample: float = 0.8
    reg_lambda: float = 5.0
    seed: int = 0
    name: str = "xgb_cox"

    def fit(self, table: SurvivalTable) -> XGBCoxLearner:
        # lazy: xgboost is imported only when this is used (start-up time)
        import xgboost as xgb

        self.options_ = table.options
        X = design_matrix(table.covariates, self.options_, table.treatment)
        label = np.where(table.event, table.time_days, -table.time_days)  # negative = censored
        self.model_ = xgb.XGBRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            min_child_weight=self.min_child_weight,
            subsample=self.subsample,
            reg_lambda=self.reg_lambda,
            objective="survival:cox",
            tree_method="hist",
            n_jobs=1,
            random_state=self.seed,
        )
        self.model_.fit(X, label)
        log_hazard = self.model_.predict(X, output_margin=True)
        self.baseline_times_, self.baseline_hazard_ = breslow_cumulative_hazard(
            table.time_days, table.event, log_hazard
        )
        return self

    def log_hazard(self, covariates: pd.DataFrame, option: str) -> np.ndarray:
        return self.model_.predict(
            design_matrix(covariates, self.options_, option), output_margin=True
        )

    def predict_survival(self, covariates: pd.DataFrame, option: str, times_days) -> np.ndarray:
        times = np.atleast_1d(np.asarray(times_days, dtype=float))
        idx = np.searchsorted(self.baseline_times_, times, side="right") - 1
        h0 = np.where(idx >= 0, self.baseline_hazard_[np.clip(idx, 0, None)], 0.0)
        return np.exp(-np.outer(np.exp(self.log_hazard(covariates, option)), h0))


@dataclass
class CoxPHLearner:
    """lifelines' Cox proportional-hazards model over covariates and option indicators."""

    penalizer: float = 0.01
    seed: int = 0  # unused (the fit is deterministic); kept for one learner signature
    name: str = "cox_ph"

    def _design(self, covariates: pd.DataFrame, option) -> pd.DataFrame:
        # the first option is the reference level: its indicator would be collinear
        return design_matrix(covariates, self.options_, option).drop(
            columns=option_columns(self.options_)[0]
        )

    def fit(self, table: SurvivalTable) -> CoxPHLearner:
        # lazy: lifelines is imported only when this is used (start-up time)
        from lifelines import CoxPHFitter

        self.options_ = table.options
        df = self._design(table.covariates, table.treatment)
        df["_time"] = table.time_days
        df["_event"] = table.event.astype(int)
        self.model_ = CoxPHFitter(penalizer=self.penalizer).fit(df, "_time", "_event")
        return self

    def hazard_ratios(self) -> pd.Series:
        return self.model_.hazard_ratios_

    def predict_survival(self, covariates: pd.DataFrame, option: str, times_days) -> np.ndarray:
        times = np.atleast_1d(np.asarray(times_days, dtype=float))
        sf = self.model_.predict_survival_function(self._design(covariates, option), times=times)
        return sf.to_numpy().T


LEARNERS = {"xgb_pseudo": XGBPseudoLearner, "xgb_cox": XGBCoxLearner, "cox_ph": CoxPHLearner}


def make_learner(name: str, seed: int = 0, horizon_days: float | None = None):
    """A learner by name; pseudo-value trees learn the grid up to ``horizon_days`` (default: 5 years)."""
    if name not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; known: {', '.join(LEARNERS)}")
    if name == "xgb_pseudo" and horizon_days is not None:
        return XGBPseudoLearner(seed=seed, horizons_days=pseudo_value_grid(horizon_days))
    return LEARNERS[name](seed=seed)
