"""From predicted outcomes under each option to a recommendation, or "no clear difference".

The rule, stated once: the option with the highest predicted recurrence-free
survival at the model's horizon (5 years in the demo clinic; chosen from the
follow-up, ``analytics.treatment.horizon``) is recommended when its benefit over
the next best option (difference in RFS probability) has a 90 % interval above
zero. When the interval includes zero, the statement is "no clear difference"
between the two, and ``recommended`` is None: the model does not pick one.

The benefit interval accounts for model error: it spans the doubly robust forest's
90 % interval of the same difference (``analytics.treatment.model.effects``) and the
outcome model's own point estimate, so it always contains the number SHAP explains.
Models without that forest (saved before it existed) fall back to the point +/- z
bootstrap standard errors, which measure resampling noise only. Each option's own RFS
keeps its 95 % bootstrap interval.

Pure functions of arrays, so every rule here is tested with numbers chosen by
hand (tests/analytics/treatment/test_recommend.py).

What callers read are typed results, never dicts: ``OptionRanking`` (one
patient's options, each an ``OptionOutcome`` with ``Interval``s, the best, the
benefit and the verdict) and ``Recommendation`` (that, plus the patient, the
model version, the horizon, the SHAP waterfall and the caveat), whose
``to_json()`` is the ``oncolens recommend --json`` contract. Attribute names are
horizon-neutral (``rfs`` at ``horizon_days``); the JSON keeps its ``rfs_5y`` keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from analytics.survival.constants import HORIZON_5Y_DAYS, Z_95
from analytics.treatment.horizon import horizon_label
from analytics.treatment.model.outcome_model import OutcomeModel
from analytics.treatment.model.shap_values import BenefitWaterfall

CLEAR: Final = "clear"
NO_CLEAR_DIFFERENCE: Final = "no clear difference"
Verdict = Literal["clear", "no clear difference"]
BENEFIT_UNITS = (
    "RFS probability at horizon_days, best predicted minus next best (0.01 = 1 percentage point)"
)
BENEFIT_LEVEL: Final = 0.90
Z_BENEFIT: Final = 1.6448536269514722  # scipy.stats.norm.ppf(0.95): two-sided 90 %


@dataclass(frozen=True)
class Interval:
    """An interval (95 % for an option's RFS, 90 % for a benefit), in the unit of the value it bounds; ``lo, hi = interval`` unpacks it."""

    lo: float
    hi: float

    def __iter__(self) -> Iterator[float]:
        return iter((self.lo, self.hi))

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def to_json(self) -> list[float]:
        return [self.lo, self.hi]


@dataclass(frozen=True)
class OptionOutcome:
    """Predicted outcome of one patient under one option, at the model's horizon (``horizon_days``).

    ``rfs``: recurrence-free survival probability (0-1) at the horizon; ``rmst_days``: restricted
    mean recurrence-free time up to the horizon, days; each with its 95 % interval, same units.
    """

    treatment: str
    rfs: float
    rfs_ci: Interval
    rmst_days: float
    rmst_ci_days: Interval

    def to_json(self) -> dict[str, Any]:
        """One entry of ``options`` in ``oncolens recommend --json`` (its keys name the 5-year horizon)."""
        return {
            "treatment": self.treatment,
            "rfs_5y": self.rfs,
            "rfs_5y_ci": self.rfs_ci.to_json(),
            "rmst_days": self.rmst_days,
            "rmst_days_ci": self.rmst_ci_days.to_json(),
        }


@dataclass(frozen=True)
class OptionRanking:
    """One patient's options ranked by predicted RFS at the horizon, and whether the best is clearly better.

    ``benefit``: RFS probability of ``best`` minus ``next_best`` at the horizon (0.01 = 1
    percentage point), with its 90 % interval ``benefit_ci``; ``clear``: that interval lies
    above zero.
    """

    options: tuple[OptionOutcome, ...]
    best: str  # highest predicted RFS at the horizon
    next_best: str
    benefit: float
    benefit_ci: Interval
    clear: bool

    @property
    def recommended(self) -> str | None:
        """The best option when it is clearly better; None: "no clear difference"."""
        return self.best if self.clear else None

    @property
    def verdict(self) -> Verdict:
        return CLEAR if self.clear else NO_CLEAR_DIFFERENCE

    def option(self, treatment: str) -> OptionOutcome:
        """The outcome under one option; ``KeyError`` when the model has no such option."""
        for o in self.options:
            if o.treatment == treatment:
                return o
        raise KeyError(treatment)

    @property
    def benefit_ci_widened(self) -> bool:
        """The doubly robust interval did not hold the outcome model's point, so ``benefit_ci`` was
        stretched to it (``CohortRecommendations.benefit_ci``: the point is then one of its ends).

        The two estimators disagree for this patient; the page and the statement say so, since a
        range with its point at one end otherwise reads like a mistake.
        """
        return self.benefit in (self.benefit_ci.lo, self.benefit_ci.hi)

    @property
    def statement(self) -> str:
        """One sentence naming the horizon ("3-year RFS") and the interval ("90% interval")."""
        lo, hi = self.benefit_ci
        label = horizon_label(float(getattr(self, "horizon_days", HORIZON_5Y_DAYS)))
        pp = (
            f"{100 * self.benefit:+.1f} percentage points, {BENEFIT_LEVEL:.0%} interval "
            f"{100 * lo:+.1f} to {100 * hi:+.1f}"
            + (", widened to hold the point estimate" if self.benefit_ci_widened else "")
        )
        if self.clear:
            return f"{self.best}: {label} RFS {pp} over {self.next_best}"
        return (
            f"{NO_CLEAR_DIFFERENCE} between {self.best} and {self.next_best} in {label} RFS ({pp})"
        )


@dataclass(frozen=True)
class Recommendation(OptionRanking):
    """One patient's recommendation from the clinic's model: what the CLI, the Patient page and the
    tumour-board report show (``analytics.treatment.clinic.recommendation_for``).

    Adds to the ranking the patient, the model version, the horizon (days from diagnosis),
    the SHAP waterfall of the benefit (``shap``) and the caveat shown with it.
    ``to_json()`` is the contract of ``oncolens recommend --json``.
    """

    person_id: int
    model_version: str
    horizon_days: float
    shap: BenefitWaterfall
    caveat: str

    def to_json(self) -> dict[str, Any]:
        """``oncolens recommend --json``: these keys, in this order (docs/architecture.md)."""
        return {
            "patient_id": self.person_id,
            "in_scope": True,  # a Recommendation exists only inside the model's scope (clinic.recommendation_scope)
            "model_version": self.model_version,
            "horizon_days": self.horizon_days,
            "options": [o.to_json() for o in self.options],
            "recommended": self.recommended,
            "statement": self.statement,
            "best_predicted": self.best,
            "compared_with": self.next_best,
            "benefit": self.benefit,
            "benefit_ci": self.benefit_ci.to_json(),
            "benefit_ci_widened": self.benefit_ci_widened,
            "benefit_units": BENEFIT_UNITS,
            "shap": self.shap.to_json(),
            "caveat": self.caveat,
        }


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
    # (n, 2) doubly robust 90 % interval of the same difference; None: bootstrap only
    benefit_dr: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.rfs_5y.shape[0]

    @property
    def benefit_ci(self) -> np.ndarray:
        """(n, 2) 90 % interval of the benefit: the doubly robust interval widened to hold the point."""
        if self.benefit_dr is None:
            return np.stack(
                [
                    self.benefit - Z_BENEFIT * self.benefit_se,
                    self.benefit + Z_BENEFIT * self.benefit_se,
                ],
                axis=-1,
            )
        return np.stack(
            [
                np.minimum(self.benefit_dr[:, 0], self.benefit),
                np.maximum(self.benefit_dr[:, 1], self.benefit),
            ],
            axis=-1,
        )

    @property
    def clear(self) -> np.ndarray:
        return self.benefit_ci[:, 0] > 0

    def recommended_names(self) -> np.ndarray:
        """Option name per patient, or ``NO_CLEAR_DIFFERENCE``."""
        names = np.asarray(self.options, dtype=object)[self.best]
        return np.where(self.clear, names, NO_CLEAR_DIFFERENCE)

    def patient(self, i: int) -> OptionRanking:
        """Row ``i`` as one patient's ranking (RFS clipped to 0-1, intervals to their range)."""
        rfs_ci = _interval(self.rfs_5y[i], self.rfs_5y_se[i], 0.0, 1.0)
        rmst_ci = _interval(self.rmst_days[i], self.rmst_se_days[i], 0.0, None)
        options = tuple(
            OptionOutcome(
                treatment=o,
                rfs=float(np.clip(self.rfs_5y[i, j], 0.0, 1.0)),
                rfs_ci=Interval(float(rfs_ci[j, 0]), float(rfs_ci[j, 1])),
                rmst_days=float(self.rmst_days[i, j]),
                rmst_ci_days=Interval(float(rmst_ci[j, 0]), float(rmst_ci[j, 1])),
            )
            for j, o in enumerate(self.options)
        )
        ci = self.benefit_ci[i]
        return OptionRanking(
            options=options,
            best=self.options[int(self.best[i])],
            next_best=self.options[int(self.next_best[i])],
            benefit=float(self.benefit[i]),
            benefit_ci=Interval(float(ci[0]), float(ci[1])),
            clear=bool(self.clear[i]),
        )


def summarise(
    options: tuple[str, ...],
    rfs_5y: np.ndarray,
    rfs_5y_replicates: np.ndarray,
    rmst_days: np.ndarray,
    rmst_replicates: np.ndarray,
    benefit_dr: np.ndarray | None = None,
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
        benefit_dr,
    )


def recommend(model: OutcomeModel, covariates: pd.DataFrame) -> CohortRecommendations:
    """Predict every option for every row of ``covariates`` and summarise, with the doubly robust
    interval of the benefit when the model has its forest."""
    rfs, rmst = model.predict(covariates)
    rfs_reps, rmst_reps = model.predict_replicates(covariates)
    recs = summarise(model.options_, rfs, rfs_reps, rmst, rmst_reps)
    dr = model.benefit_interval(covariates, recs.best, recs.next_best, BENEFIT_LEVEL)
    if dr is None:
        return recs
    return replace(recs, benefit_dr=np.stack([dr[1], dr[2]], axis=-1))
