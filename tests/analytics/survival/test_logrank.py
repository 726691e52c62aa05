"""analytics.survival.logrank: the log-rank test by hand and against lifelines.

Tolerance against lifelines: the same statistic summed in another order (pandas over its
timeline) and solved with its own pseudo-inverse, so chi2 agrees to a few hundred units of
float64 roundoff relative (~1e-13; a few hundred event times, a well-conditioned 1x1 or 2x2
covariance). The p-value's relative error is that of chi2 times chi2 / 2 at most (the
chi-square tail's logarithmic slope), under 1e-11 for chi2 < 100: rel 1e-9 leaves room.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lifelines.statistics import logrank_test, multivariate_logrank_test

from analytics.survival.kaplan_meier import event_counts
from analytics.survival.logrank import event_matrices, log_rank, log_rank_test


def test_two_groups_by_hand():
    # A: events at 1 and 3; B: an event at 2, censored at 4. Event times 1, 2, 3:
    #   t=1: n_A=2, N=4, d=1 (A): E_A = 1/2, V = 1 * 1/2 * 1/2 * (4-1)/(4-1) = 1/4
    #   t=2: n_A=1, N=3, d=1 (B): E_A = 1/3, V = 1/3 * 2/3 * (3-1)/(3-1)   = 2/9
    #   t=3: n_A=1, N=2, d=1 (A): E_A = 1/2, V = 1/2 * 1/2                 = 1/4
    # O_A - E_A = 2 - 4/3 = 2/3; V = 13/18; chi2 = (4/9) / (13/18) = 8/13, one degree of freedom.
    time = np.array([1.0, 3, 2, 4])
    event = np.array([True, True, True, False])
    group = np.array(["A", "A", "B", "B"])
    chi2, p = log_rank_test(time, event, group)
    assert chi2 == pytest.approx(8 / 13, rel=1e-14)
    assert p == pytest.approx(math.erfc(math.sqrt(chi2 / 2)), rel=1e-14)  # chi-square(1) tail
    days, events, at_risk = event_matrices(
        [event_counts(time[group == g], event[group == g]) for g in ("A", "B")]
    )
    assert days.tolist() == [1, 2, 3]
    assert events.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert at_risk.tolist() == [[2, 1, 1], [2, 2, 1]]


def _three_groups(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    hazard = np.array([1.0, 1.5, 0.7])[group] / 400
    t = np.ceil(rng.exponential(1 / hazard) / 20)  # whole 20-day units: many tied events
    c = np.ceil(rng.uniform(5, 60, n))
    return np.minimum(t, c), t <= c, group


@pytest.mark.parametrize("seed", range(3))
def test_equals_lifelines_with_ties(seed):
    time, event, group = _three_groups(seed, 400)
    chi2, p = log_rank_test(time, event, group)
    ref = multivariate_logrank_test(time, group, event)
    assert chi2 == pytest.approx(ref.test_statistic, rel=1e-9)
    assert p == pytest.approx(ref.p_value, rel=1e-9)
    two = group < 2
    _, p2 = log_rank_test(time[two], event[two], group[two])
    a, b = two & (group == 0), two & (group == 1)
    assert p2 == pytest.approx(logrank_test(time[a], time[b], event[a], event[b]).p_value, rel=1e-9)


def test_a_group_never_at_risk_at_an_event_adds_no_variance():
    """As lifelines: the pseudo-inverse, not an error, when a row of the covariance is zero."""
    events = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    at_risk = np.array([[0.0, 0.0], [2.0, 1.0], [2.0, 2.0]])  # group 0: nobody at risk
    chi2, p = log_rank(events, at_risk)
    # the same as the test of the other two groups alone (chi-square with 2 instead of 1 df)
    assert chi2 == pytest.approx(log_rank(events[1:], at_risk[1:])[0], rel=1e-12)
    assert 0.0 < p < 1.0


def test_one_group_is_refused():
    with pytest.raises(ValueError, match="two groups"):
        log_rank_test([1.0, 2.0], [True, True], ["a", "a"])
