"""The outcome model: one learner fitted on all patients, plus bootstrap refits for its uncertainty.

Why this split: the point estimate (5-year RFS under each option, and the
benefit between options) comes from the model fitted on every patient, so the
SHAP explanation (``analytics.treatment.model.shap_values``) decomposes exactly the number
the clinician is shown. Its uncertainty comes from ``bootstrap`` refits on
resampled patients (the whole fitting procedure, pseudo-values included,
repeated): the interval is the point estimate +/- 1.96 bootstrap standard
errors. Twenty-five replicates estimate a standard error well; they are far
too few for percentile intervals (Efron & Tibshirani 1993, ch. 6 and 13).
The normal interval always contains its point estimate by construction.

Seeded everywhere: the same table, learner, ``bootstrap`` and ``seed`` give the
same model, bit for bit (xgboost with one thread).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.survival.constants import HORIZON_5Y_DAYS
from analytics.survival.pseudo_values import pseudo_values
from analytics.treatment.data import Feature, SurvivalTable
from analytics.treatment.model.effects import DoublyRobustForest
from analytics.treatment.model.forest import ForestMismatchError, StackedForest
from analytics.treatment.model.learners import XGBPseudoLearner, make_learner

# Up to this many design rows (patients x options x horizons: three patients) go through the
# stacked trees (``compile``), measured faster only there; larger batches go through xgboost,
# one refit at a time (bench/bench_treatment.py).
SMALL_BATCH_ROWS = 90
RMST_GRID_POINTS = 121  # 0 .. 5 years in 120 steps (every half-year pseudo-value horizon is on it)


def _untracked(iterable: Iterable, description: str = "", total: int | None = None) -> Iterable:
    return iterable


@dataclass
class OutcomeModel:
    """``fit(table) -> self``; then 5-year RFS and RMST per option, point and bootstrap replicates."""

    learner: str = "xgb_pseudo"
    bootstrap: int = 25
    seed: int = 20_261_125
    background_size: int = 100
    horizon_days: float = HORIZON_5Y_DAYS

    def fit(
        self, table: SurvivalTable, track: Callable[..., Iterable] | None = None
    ) -> OutcomeModel:
        """Fit the main learner and the bootstrap refits; ``track(iterable, description, total)`` may wrap the
        refits' loop to report progress (the CLI passes a progress bar)."""
        if self.bootstrap < 2:
            raise ValueError("at least two bootstrap refits are needed for a standard error")
        rng = np.random.default_rng(self.seed)
        self.options_: tuple[str, ...] = table.options
        self.features_: tuple[Feature, ...] = table.features
        self.main_ = make_learner(self.learner, self.seed, self.horizon_days).fit(table)
        self.members_ = [
            make_learner(self.learner, self.seed + 1 + b, self.horizon_days).fit(
                table.subset(rng.integers(0, table.n, table.n))
            )
            for b in (track or _untracked)(
                range(self.bootstrap), "bootstrap refits", self.bootstrap
            )
        ]
        pick = np.sort(rng.choice(table.n, size=min(self.background_size, table.n), replace=False))
        # SHAP's reference patients: the base value is the average over them
        self.background_ = table.covariates.iloc[pick].reset_index(drop=True)
        self.n_train_ = table.n
        self.events_train_ = int(table.event.sum())
        self.effects_: DoublyRobustForest | None = None
        return self

    def fit_effects(
        self, table: SurvivalTable, mu: np.ndarray, propensity: np.ndarray
    ) -> OutcomeModel:
        """Fit the benefit intervals' doubly robust forest (``analytics.treatment.model.effects``).

        ``mu``: S(horizon | x, a) of every training patient under every option and ``propensity``:
        P(a | x), both (n, options) and cross-fitted (from models that did not see the patient).
        """
        outcome = pseudo_values(table.time_days, table.event, np.array([self.horizon_days]))[:, 0]
        received = np.array([self.options_.index(o) for o in table.treatment])
        self.effects_ = DoublyRobustForest(seed=self.seed).fit(
            table.covariates[self.feature_columns].to_numpy(dtype=float),
            received,
            outcome,
            mu,
            propensity,
        )
        return self

    def benefit_interval(
        self, covariates: pd.DataFrame, a: np.ndarray, b: np.ndarray, level: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Doubly robust (estimate, lower, upper) of S(horizon | a) - S(horizon | b); None without the forest."""
        effects = getattr(self, "effects_", None)
        if effects is None:
            return None
        X = covariates[self.feature_columns].to_numpy(dtype=float)
        return effects.interval(X, a, b, level)

    @property
    def feature_columns(self) -> list[str]:
        return [f.column for f in self.features_]

    # --- predictions ---------------------------------------------------------------

    def _predict(self, learner, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(5-year RFS, RMST to 5 years in days), each (n, options).

        For pseudo-value trees the RFS is the raw (unclipped) output at the horizon, which
        SHAP decomposes, and the RMST integrates the clipped, non-increasing curve (linear
        between the half-year horizons, so the trapezoid rule is exact), all from one call.
        """
        if isinstance(learner, XGBPseudoLearner) and self._horizon_index(learner) is not None:
            return self._from_grid(learner, learner.survival_grid(covariates))
        rfs = np.stack(
            [
                learner.predict_survival(covariates, o, [self.horizon_days])[:, 0]
                for o in self.options_
            ],
            axis=1,
        )
        # lazy: SciPy is imported by the first prediction, not by the app's sign-in page (issue 23)
        from scipy.integrate import trapezoid

        grid = np.linspace(0.0, self.horizon_days, RMST_GRID_POINTS)
        rmst = np.stack(
            [
                trapezoid(learner.predict_survival(covariates, o, grid), grid, axis=1)
                for o in self.options_
            ],
            axis=1,
        )
        return rfs, rmst

    def _horizon_index(self, learner: XGBPseudoLearner) -> int | None:
        at = np.flatnonzero(
            np.isclose(np.asarray(learner.horizons_days, dtype=float), self.horizon_days)
        )
        return int(at[0]) if at.size else None

    def _from_grid(
        self, learner: XGBPseudoLearner, raw_grid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(5-year RFS, RMST) from raw S(t) on the learner's horizons, shape (..., n, options, horizons)."""
        # lazy: SciPy is imported by the first prediction, not by the app's sign-in page (issue 23)
        from scipy.integrate import trapezoid

        grid = np.asarray(learner.horizons_days, dtype=float)
        j = self._horizon_index(learner)
        assert j is not None  # callers use the grid only when the horizon is on it
        raw = raw_grid[..., : j + 1]
        curve = np.minimum.accumulate(np.clip(raw, 0.0, 1.0), axis=-1)
        curve = np.concatenate([np.ones((*curve.shape[:-1], 1)), curve], axis=-1)
        return raw[..., j], trapezoid(curve, np.concatenate([[0.0], grid[: j + 1]]), axis=-1)

    def compile(self) -> OutcomeModel:
        """Stack the bootstrap refits' trees for one-call small-batch predictions (the app does this once).

        The stacked trees are checked against xgboost on the reference patients; if they
        disagree (an xgboost whose model format this code does not know), the model keeps
        predicting through xgboost, only slower, and warns.
        """

        self.stacked_members_ = None
        if isinstance(self.main_, XGBPseudoLearner) and self._horizon_index(self.main_) is not None:
            try:
                self.stacked_members_ = StackedForest.from_boosters(
                    [m.model_.get_booster() for m in self.members_],
                    check_rows=self.main_.design_grid(self._inputs(self.background_)),
                )
            except ForestMismatchError as exc:
                warnings.warn(
                    f"bootstrap refits predicted one by one: {exc}", RuntimeWarning, stacklevel=2
                )
        return self

    def _inputs(self, covariates: pd.DataFrame):
        """Trees take one array in feature order (selected once, not once per bootstrap refit)."""
        if isinstance(self.main_, XGBPseudoLearner):
            if (
                list(covariates.columns) != self.feature_columns
            ):  # selecting costs ~1 ms: only if needed
                covariates = covariates[self.feature_columns]
            return covariates.to_numpy(dtype=float)
        return covariates

    def predict(self, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Point estimates from the full-data model: (5-year RFS, RMST days), each (n, options)."""
        return self._predict(self.main_, self._inputs(covariates))

    def predict_replicates(self, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap replicates: (5-year RFS, RMST days), each (bootstrap, n, options)."""
        inputs = self._inputs(covariates)
        stacked = getattr(self, "stacked_members_", None)
        n, k = len(inputs), len(self.options_)
        h = len(getattr(self.main_, "horizons_days", ()))
        if stacked is not None and n * k * h <= SMALL_BATCH_ROWS:
            raw = stacked.predict(self.main_.design_grid(inputs)).T.reshape(
                len(self.members_), n, k, h
            )
            return self._from_grid(self.main_, raw)
        pairs = [self._predict(m, inputs) for m in self.members_]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def rfs_5y(self, covariates: pd.DataFrame) -> np.ndarray:
        return self.predict(covariates)[0]

    def rfs_5y_replicates(self, covariates: pd.DataFrame) -> np.ndarray:
        """(bootstrap, n, options)."""
        return self.predict_replicates(covariates)[0]

    def rmst(self, covariates: pd.DataFrame) -> np.ndarray:
        return self.predict(covariates)[1]

    def rmst_replicates(self, covariates: pd.DataFrame) -> np.ndarray:
        return self.predict_replicates(covariates)[1]
