"""analytics.survival.cox: Efron's closed form against its definition, the fit against lifelines
and scikit-survival.

Tolerances: lifelines stops Newton-Raphson when the step is below ``precision`` (1e-7 by
default, which leaves its estimate ~1e-6 from the optimum; hence the looser 1e-5 of the cohort
builder's test on the demo store). Asked for 1e-10, the last step bounds its remaining error,
so the estimates agree within ~1e-10 plus rounding (~1e-13: log-likelihoods of a few hundred
terms of size log n): abs 1e-9 on log HR and its standard error. scikit-survival at tol 1e-12
likewise: abs 1e-9.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.survival.cox import _efron_sums, cox_group_hazard_ratios
from analytics.survival.kaplan_meier import event_counts
from analytics.survival.logrank import event_matrices


def test_efron_closed_form_equals_the_term_by_term_sum_with_heavy_ties():
    """A million-patient cohort ties hundreds of events on a day; the digamma form must hold there."""
    rng = np.random.default_rng(5)
    events = rng.integers(0, 400, size=(3, 40)).astype(float)
    events[:, ::7] = 0.0
    events[0, ::7] = 1.0  # some days with a single event
    at_risk = 200_000 - np.cumsum(events + 300, axis=1) + events + 300
    beta = np.array([0.0, 0.4, -1.3])

    def term_by_term(b):
        w = np.exp(b)
        total = 0.0
        for t in range(events.shape[1]):
            d = int(events[:, t].sum())
            big_a, c = at_risk[:, t] @ w, events[:, t] @ w
            total += sum(np.log(big_a - k / d * c) for k in range(d))
        return total

    value, grad, hess = _efron_sums(beta, events, at_risk)
    assert value == pytest.approx(term_by_term(beta), rel=1e-11)
    h = 1e-5
    for k in range(3):
        step = np.eye(3)[k] * h
        numeric = (term_by_term(beta + step) - term_by_term(beta - step)) / (2 * h)
        assert grad[k] == pytest.approx(numeric, rel=1e-6)
        g_plus = _efron_sums(beta + step, events, at_risk)[1]
        g_minus = _efron_sums(beta - step, events, at_risk)[1]
        np.testing.assert_allclose(hess[k], (g_plus - g_minus) / (2 * h), rtol=1e-5, atol=1e-6)


def _three_groups(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    hazard = np.array([1.0, 1.6, 0.6])[group] / 500
    t = np.ceil(rng.exponential(1 / hazard) / 10)  # whole 10-day units: heavy ties
    c = np.ceil(rng.uniform(5, 30, n))
    return np.minimum(t, c), t <= c, group


def _fit(time, event, group) -> np.ndarray:
    _, events, at_risk = event_matrices(
        [event_counts(time[group == g], event[group == g]) for g in range(3)]
    )
    return cox_group_hazard_ratios(events, at_risk)


@pytest.mark.parametrize("seed", range(3))
def test_equals_lifelines_and_scikit_survival_with_ties(seed):
    from lifelines import CoxPHFitter
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    time, event, group = _three_groups(seed, 600)
    fit = _fit(time, event, group)
    design = pd.DataFrame({"g1": (group == 1) * 1.0, "g2": (group == 2) * 1.0})
    cph = CoxPHFitter().fit(
        design.assign(t=time, e=event.astype(int)), "t", "e", fit_options={"precision": 1e-10}
    )
    np.testing.assert_allclose(fit[:, 0], cph.params_.to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(fit[:, 1], cph.standard_errors_.to_numpy(), rtol=0, atol=1e-9)
    sk = CoxPHSurvivalAnalysis(ties="efron", tol=1e-12).fit(
        design.to_numpy(), Surv.from_arrays(event, time)
    )
    np.testing.assert_allclose(fit[:, 0], sk.coef_, rtol=0, atol=1e-9)


def test_a_group_without_a_finite_estimate_is_nan():
    """Group 1's only event falls where group 0 is at risk, group 0's where group 1 is not: the
    likelihood keeps rising as group 1's log HR runs off to infinity. Not estimable: NaN."""
    events = np.array([[0.0, 1.0], [1.0, 0.0]])
    at_risk = np.array([[2.0, 2.0], [1.0, 0.0]])
    assert np.isnan(cox_group_hazard_ratios(events, at_risk)).all()


def test_equal_groups_have_a_hazard_ratio_of_one():
    events = np.array([[2.0, 1.0, 3.0], [2.0, 1.0, 3.0]])
    at_risk = np.array([[50.0, 40.0, 30.0], [50.0, 40.0, 30.0]])
    log_hr, se = cox_group_hazard_ratios(events, at_risk)[0]
    assert log_hr == pytest.approx(0.0, abs=1e-12) and 0 < se < 1
