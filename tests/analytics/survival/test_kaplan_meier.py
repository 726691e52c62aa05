"""analytics.survival.kaplan_meier: the one Kaplan-Meier, by hand and against lifelines and scikit-survival.

Tolerances, from the float64 arithmetic (unit roundoff u = 2**-53, about 1.1e-16):

- S: a product of at most m correctly rounded factors 1 - d/n, each within 2u; lifelines instead
  exponentiates a sum of m log differences. With m <= 60 distinct times both are within ~4 m u
  of the exact value: abs 1e-13 covers it with room.
- band: exp(-exp(log(-log S) -/+ z sqrt(V) / log S)). An absolute error e in S is a relative
  error e / |log S| in log S, and |log S| >= 1/n at the first event (n <= 500 patients here), so
  log(-log S) and the half-width carry ~n e = 5e-11 at worst; the outer exp(-exp(.)) has slope
  at most 1/e. abs 1e-10.
- scikit-survival multiplies the same factors in the same order: S to the last bit, and the
  band within a few u (abs 1e-14).
- medians are times, compared exactly, after checking that no S lies within 1e-12 of 1/2
  (where rounding could move the crossing).
"""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from analytics.survival.kaplan_meier import KaplanMeier, event_counts, kaplan_meier_at

# times 1 2 2 3 4 5; events at 1, 2, 3 and 5, censored at 2 (tied with an event) and at 4
SIX_TIMES = np.array([1.0, 2, 2, 3, 4, 5])
SIX_EVENTS = np.array([True, True, False, True, False, True])


def test_six_patients_by_hand():
    km = KaplanMeier.fit(SIX_TIMES, SIX_EVENTS)
    assert km.time.tolist() == [1, 2, 3, 4, 5]
    assert km.at_risk.tolist() == [6, 5, 3, 2, 1]  # the censored 2 is at risk at 2
    assert km.events.tolist() == [1, 1, 1, 0, 1]
    assert km.removed.tolist() == [1, 2, 1, 1, 1]
    # S(1) = 5/6; S(2) = 5/6 * 4/5 = 4/6; S(3) = 4/6 * 2/3 = 4/9; S(4) unchanged; S(5) = 0.
    # At most three correctly rounded factors: rel 1e-15 is several units in the last place.
    assert km.survival.tolist() == pytest.approx([5 / 6, 4 / 6, 4 / 9, 4 / 9, 0.0], rel=1e-15)
    # Greenwood: 1/(6*5), + 1/(5*4), + 1/(3*2); the time where S reaches 0 (n = d) adds nothing
    v3 = 1 / 30 + 1 / 20 + 1 / 6
    assert km.greenwood.tolist() == pytest.approx([1 / 30, 1 / 30 + 1 / 20, v3, v3, v3], rel=1e-15)
    assert km.median() == 3.0  # S(2) = 2/3 > 1/2 >= S(3) = 4/9
    # between, at and beyond the observed times; 1 before the first, the last value after the last
    at = [0.0, 0.5, 1, 2.5, 4.5, 5, 100]
    assert km.survival_at(at).tolist() == pytest.approx(
        [1, 1, 5 / 6, 4 / 6, 4 / 9, 0, 0], rel=1e-15
    )
    assert km.at_risk_at([0, 2, 2.5, 5, 6]).tolist() == [6, 5, 3, 1, 0]
    lo, hi = km.band_at(at)
    assert (lo[:2] == 1).all() and (hi[:2] == 1).all()  # S = 1: no uncertainty yet
    assert (lo[-2:] == 0).all() and (hi[-2:] == 0).all()  # S = 0: everyone has had the event
    assert ((lo <= km.survival_at(at)) & (km.survival_at(at) <= hi)).all()
    # the log(-log) band at t = 3 from its formula, written out with the hand values
    s3, z = 4 / 9, 1.959963984540054
    half = z * np.sqrt(v3) / np.log(s3)
    expected = sorted(np.exp(-np.exp(np.log(-np.log(s3)) + sign * half)) for sign in (-1, 1))
    # S enters through log(-log S) and 1 / log S, each a few u from the exact value: rel 1e-13
    assert [float(b) for b in km.band_at(3)] == pytest.approx(expected, rel=1e-13)
    steps = km.steps()
    assert steps["time"].tolist() == [0, 1, 2, 3, 5]
    assert steps["at_risk"].tolist() == [6, 6, 5, 3, 1]
    assert steps["survival"].tolist() == pytest.approx([1, 5 / 6, 4 / 6, 4 / 9, 0], rel=1e-15)


def test_counts_give_the_same_curve_as_rows():
    """The cohort builder's path (counts from SQL) and one row per patient: the same arithmetic."""
    from_rows = KaplanMeier.fit(SIX_TIMES, SIX_EVENTS)
    days, events, removed = np.array([1, 2, 3, 4, 5]), np.array([1, 1, 1, 0, 1]), [1, 2, 1, 1, 1]
    from_counts = KaplanMeier.from_counts(days, events, removed, 6)
    for name in ("at_risk", "survival", "greenwood"):
        np.testing.assert_array_equal(getattr(from_counts, name), getattr(from_rows, name))
    steps = from_counts.steps()
    assert steps["time"].dtype == np.int64  # integer days stay integers
    assert steps["time"].tolist() == [0, 1, 2, 3, 5]
    # an event at day 0 is the first row, not a second origin row
    at_zero = KaplanMeier.from_counts([0, 4], [1, 1], [1, 1]).steps()
    assert at_zero["time"].tolist() == [0, 4] and at_zero["survival"].tolist() == [0.5, 0.0]


def _random(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer times (many ties between events and censorings), censoring at the last time."""
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 40, n).astype(float)
    event = rng.random(n) < rng.uniform(0.3, 0.9)
    time[:2], event[:2] = time.max(), [True, False]  # an event and a censoring at the last time
    return time, event


@pytest.mark.parametrize(("seed", "n"), [(0, 60), (1, 200), (2, 500), (3, 25)])
def test_equals_lifelines_with_ties_and_censoring_at_the_last_time(seed, n):
    time, event = _random(seed, n)
    km = KaplanMeier.fit(time, event)
    ref = KaplanMeierFitter().fit(time, event)
    at = np.concatenate([np.arange(0, 45, 0.5), [1e6]])  # between, at and beyond observed times
    np.testing.assert_allclose(
        km.survival_at(at), ref.survival_function_at_times(at).to_numpy(), rtol=0, atol=1e-13
    )
    ci = ref.confidence_interval_survival_function_
    lifelines_at = np.searchsorted(ci.index.to_numpy(), at, side="right") - 1
    lo, hi = km.band_at(at)
    np.testing.assert_allclose(lo, ci.iloc[lifelines_at, 0].to_numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(hi, ci.iloc[lifelines_at, 1].to_numpy(), rtol=0, atol=1e-10)
    assert km.survival[-1] > 0  # a censoring at the last time: the curve stops above 0
    assert np.abs(km.survival - 0.5).min() > 1e-12
    median = km.median()
    expected = ref.median_survival_time_
    assert (median is None) == (not np.isfinite(expected))
    if median is not None:
        assert median == expected


def test_the_curve_reaches_zero_when_the_last_time_is_events_only():
    time, event = _random(4, 80)
    event[time == time.max()] = True
    km = KaplanMeier.fit(time, event)
    ref = KaplanMeierFitter().fit(time, event)
    assert km.survival[-1] == 0.0 == ref.survival_function_.iloc[-1, 0]
    lo, hi = km.band()
    assert lo[-1] == hi[-1] == 0.0
    np.testing.assert_allclose(
        km.survival_at(km.time), ref.survival_function_at_times(km.time).to_numpy(), atol=1e-13
    )


@pytest.mark.parametrize("seed", range(3))
def test_equals_scikit_survival(seed):
    from sksurv.nonparametric import kaplan_meier_estimator

    time, event = _random(seed + 10, 150)
    x, s, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
    km = KaplanMeier.fit(time, event)
    np.testing.assert_array_equal(km.time, x)
    np.testing.assert_array_equal(km.survival, s)
    lo, hi = km.band()
    np.testing.assert_allclose(lo, ci[0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(hi, ci[1], rtol=0, atol=1e-14)


def test_integer_weights_equal_repeated_rows():
    rng = np.random.default_rng(5)
    time, event = _random(5, 40)
    weight = rng.integers(1, 5, time.size)
    weighted = KaplanMeier.fit(time, event, weight)
    repeated = KaplanMeier.fit(np.repeat(time, weight), np.repeat(event, weight))
    # sums of whole numbers are exact in float64: the same factors, the same results
    for name in ("time", "events", "at_risk", "survival", "greenwood"):
        np.testing.assert_array_equal(getattr(weighted, name), getattr(repeated, name))
    assert weighted.median() == repeated.median()


def test_event_counts_and_the_evaluation_helper():
    t, d, r = event_counts(SIX_TIMES, SIX_EVENTS)
    assert (t.tolist(), d.tolist(), r.tolist()) == (
        [1, 2, 3, 4, 5],
        [1, 1, 1, 0, 1],
        [1, 2, 1, 1, 1],
    )
    assert kaplan_meier_at(SIX_TIMES, SIX_EVENTS, [2.5, 10]).tolist() == pytest.approx([4 / 6, 0])


def test_a_curve_that_stays_above_one_half_has_no_median_and_nobody_gives_ones():
    km = KaplanMeier.fit([10, 20, 30], [True, False, False])
    assert km.median() is None
    empty = KaplanMeier.fit(np.array([]), np.array([], dtype=bool))
    assert empty.median() is None and empty.survival_at([0, 5]).tolist() == [1.0, 1.0]
    assert empty.steps()["at_risk"].tolist() == [0]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="finite"):
        KaplanMeier.fit([1.0, np.nan], [True, False])
    with pytest.raises(ValueError, match="event flags"):
        KaplanMeier.fit([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="ascending"):
        KaplanMeier.from_counts([2, 1], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="between 0 and the number removed"):
        KaplanMeier.from_counts([1, 2], [2, 1], [1, 1])
    with pytest.raises(ValueError, match="smaller"):
        KaplanMeier.from_counts([1, 2], [1, 1], [1, 1], n=1)
    with pytest.raises(ValueError, match="weights"):
        KaplanMeier.fit([1.0, 2.0], [True, False], [1.0, -1.0])
