"""SHAP values of the predicted benefit, in percentage points of 5-year RFS, exact (TreeSHAP).

What is explained: benefit(x) = S_5y(x, better) - S_5y(x, worse), the
difference between the recommended (best predicted) option and the next best,
as predicted by the full-data pseudo-value trees (whose output is a survival
probability, so the units are those a clinician reads).

How, exactly: Shapley values are linear in the function explained, so
phi(benefit) = phi(f_better) - phi(f_worse), where f_a(x) = f(x, option=a,
horizon=5 y). Each phi(f_a) is interventional TreeSHAP (exact for trees)
with a background of reference patients whose option
indicators and horizon are set to the explicand's: those inputs then never
differ between explicand and background and get exactly zero attribution, and
all of the benefit is shared among the clinical covariates. The base value is
the average benefit of ``better`` over ``worse`` across the reference
patients; base value + contributions = the patient's predicted benefit
(``BenefitShap.additivity_error`` checks it; float32 trees: about 1e-6).

Two engines compute the same numbers: ``"tables"`` (the default,
``analytics.treatment.model.tree_shap``: per-tree lookup tables for the depth-2
trees, microseconds per patient) and ``"shap"`` (shap's ``TreeExplainer``,
about 3 ms per patient; used for deeper trees, and by the tests and the bench
as the reference). KernelSHAP would be approximate and hundreds of times
slower; it is used only by the bench, for comparison (../shared/CLINICAL.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytics.treatment.data import Feature
from analytics.treatment.model.learners import XGBPseudoLearner
from analytics.treatment.model.outcome_model import OutcomeModel
from analytics.treatment.model.tree_shap import ShallowTreeShap, UnsupportedTreesError


@dataclass(frozen=True)
class Contribution:
    """One feature's share of a patient's predicted benefit."""

    feature: str  # its label, unit included: "Tumour size (mm)"
    value: float  # the patient's value, in that unit
    shap: float  # contribution, RFS probability at the horizon (0.01 = 1 percentage point)

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "shap": self.shap}


@dataclass(frozen=True)
class BenefitWaterfall:
    """One patient's SHAP waterfall of the benefit of ``better`` over ``worse``.

    ``base_value`` (the reference patients' average benefit of the same pair) plus every
    contribution equals her predicted benefit, to ``additivity_error``; all in RFS
    probability at the horizon (0.01 = 1 percentage point). ``contributions``: largest
    |SHAP| first.
    """

    better: str
    worse: str
    base_value: float
    contributions: tuple[Contribution, ...]
    additivity_error: float

    @property
    def explains(self) -> str:
        return f"benefit of {self.better} over {self.worse}"

    def to_json(self) -> dict[str, Any]:
        """``shap`` in ``oncolens recommend --json``."""
        return {
            "base_value": self.base_value,
            "contributions": [c.to_json() for c in self.contributions],
            "explains": self.explains,
            "additivity_error": self.additivity_error,
        }


@dataclass(frozen=True, eq=False)
class BenefitShap:
    """SHAP values of the benefit of ``better`` over ``worse`` for n patients (d features).

    ``base_value`` (n,) is the reference patients' average benefit of the same
    pair; ``values`` (n, d) the contributions; ``benefit`` (n,) the model's
    predicted benefit; all in 5-year RFS probability (0.01 = 1 percentage point).
    """

    features: tuple[Feature, ...]
    covariates: pd.DataFrame
    better: tuple[str, ...]
    worse: tuple[str, ...]
    base_value: np.ndarray
    values: np.ndarray
    benefit: np.ndarray

    def _additivity_errors(self) -> np.ndarray:
        """|base value + sum of contributions - predicted benefit| per patient."""
        return np.abs(self.base_value + self.values.sum(axis=1) - self.benefit)

    @property
    def additivity_error(self) -> float:
        """Largest |base value + sum of contributions - predicted benefit| over the patients."""
        return float(np.max(self._additivity_errors(), initial=0.0))

    def patient(self, i: int) -> BenefitWaterfall:
        """One patient's waterfall: base value and contributions, largest |SHAP| first."""
        order = np.argsort(-np.abs(self.values[i]), kind="stable")
        return BenefitWaterfall(
            better=str(self.better[i]),
            worse=str(self.worse[i]),
            base_value=float(self.base_value[i]),
            contributions=tuple(
                Contribution(
                    feature=self.features[j].label,
                    value=float(self.covariates.iat[i, j]),
                    shap=float(self.values[i, j]),
                )
                for j in order
            ),
            additivity_error=float(self._additivity_errors()[i]),
        )

    def importance(self) -> pd.DataFrame:
        """Cohort bar chart: mean |SHAP| per feature (percentage points), largest first."""
        return (
            pd.DataFrame(
                {
                    "feature": [f.label for f in self.features],
                    "mean_abs_shap": np.abs(self.values).mean(axis=0),
                    "mean_shap": self.values.mean(axis=0),
                }
            )
            .sort_values("mean_abs_shap", ascending=False, kind="stable")
            .reset_index(drop=True)
        )


class BenefitExplainer:
    """TreeSHAP explainers of one outcome model, built once per option and reused.

    ``engine``: ``"tables"`` (exact lookup tables for trees of depth <= 2, else shap) or ``"shap"``.
    """

    def __init__(self, model: OutcomeModel, engine: str = "tables") -> None:
        if not isinstance(model.main_, XGBPseudoLearner):
            raise TypeError(
                f"exact SHAP of the benefit needs the pseudo-value trees (xgb_pseudo); "
                f"this model is {model.learner!r}"
            )
        if engine not in ("tables", "shap"):
            raise ValueError(f"engine must be 'tables' or 'shap', not {engine!r}")
        self.model = model
        self.engine = engine
        self._explainers: dict[str, object] = {}

    def _explainer(self, option: str):
        if option not in self._explainers:
            learner: XGBPseudoLearner = self.model.main_
            if self.engine == "tables":
                d = len(self.model.features_)
                bg = self.model.background_.to_numpy(dtype=float)
                tail = learner.design_array(bg[:1], option, self.model.horizon_days)[0, d:]
                try:
                    self._explainers[option] = ShallowTreeShap(
                        learner.model_.get_booster(), d, tail, bg
                    )
                    return self._explainers[option]
                except UnsupportedTreesError:
                    pass  # deeper trees: shap's TreeSHAP
            # lazy: shap is imported only when this is used (start-up time)
            import shap

            background = learner._design(self.model.background_, option, self.model.horizon_days)
            self._explainers[option] = shap.TreeExplainer(
                learner.model_,
                data=background,
                feature_perturbation="interventional",
                model_output="raw",
            )
        return self._explainers[option]

    def warm(self) -> BenefitExplainer:
        """Build every option's explainer now (before sharing this object between threads)."""
        for option in self.model.options_:
            self._explainer(option)
        return self

    def _phi(self, covariates: pd.DataFrame, option: str) -> tuple[float, np.ndarray]:
        learner: XGBPseudoLearner = self.model.main_
        explainer = self._explainer(option)
        # a plain array in design-column order: building a DataFrame cost more than the SHAP itself
        if isinstance(explainer, ShallowTreeShap):
            return explainer.expected_value, explainer.shap_values(covariates.to_numpy(dtype=float))
        X = learner.design_array(covariates.to_numpy(dtype=float), option, self.model.horizon_days)
        values = np.asarray(explainer.shap_values(X, check_additivity=False))
        d = len(self.model.features_)
        return float(np.ravel(explainer.expected_value)[0]), values[:, :d]

    def explain(self, covariates: pd.DataFrame, better, worse) -> BenefitShap:
        """SHAP of S_5y(better) - S_5y(worse); ``better``/``worse``: one option name or one per row."""
        if list(covariates.columns) != self.model.feature_columns:
            covariates = covariates[self.model.feature_columns]
        covariates = covariates.reset_index(drop=True)
        n, d = len(covariates), len(self.model.features_)
        better = np.broadcast_to(np.asarray(better, dtype=object), (n,))
        worse = np.broadcast_to(np.asarray(worse, dtype=object), (n,))
        base = np.zeros(n)
        values = np.zeros((n, d))
        for option in self.model.options_:
            for rows, sign in ((better == option, 1.0), (worse == option, -1.0)):
                if rows.any():
                    expected, phi = self._phi(covariates[rows], option)
                    base[rows] += sign * expected
                    values[rows] += sign * phi
        raw = self.model.rfs_5y(covariates)
        idx = {o: j for j, o in enumerate(self.model.options_)}
        rows = np.arange(n)
        benefit = raw[rows, [idx[o] for o in better]] - raw[rows, [idx[o] for o in worse]]
        return BenefitShap(
            self.model.features_, covariates, tuple(better), tuple(worse), base, values, benefit
        )
