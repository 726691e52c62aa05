"""analytics.treatment.recommend: the decision rule on numbers chosen by hand."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.survival.constants import Z_95
from analytics.treatment.recommend import NO_CLEAR_DIFFERENCE, summarise

OPTIONS = ("a", "b", "c")


def _reps(point: np.ndarray, offsets: list[float]) -> np.ndarray:
    """Bootstrap replicates: the point shifted by one offset per replicate for option 'a' only."""
    reps = np.repeat(point[None], len(offsets), axis=0).astype(float)
    reps[:, :, 0] += np.asarray(offsets)[:, None]
    return reps


def test_clear_benefit_recommends_and_the_interval_is_point_plus_minus_z_se():
    point = np.array([[0.70, 0.60, 0.50]])  # a beats b by 10 points
    offsets = [-0.01, 0.01, -0.01, 0.01]  # sd (ddof=1) of the a-b difference
    r = summarise(OPTIONS, point, _reps(point, offsets), point * 1000, _reps(point * 1000, offsets))
    se = np.std(offsets, ddof=1)
    p = r.patient(0)
    assert (p.best, p.next_best, p.clear, p.recommended) == ("a", "b", True, "a")
    assert p.benefit == pytest.approx(0.10)
    assert p.benefit_ci == pytest.approx((0.10 - Z_95 * se, 0.10 + Z_95 * se))
    assert p.options[0].rfs_5y_ci[0] <= p.options[0].rfs_5y <= p.options[0].rfs_5y_ci[1]
    assert "a: 5-year RFS +10.0 percentage points" in p.statement


def test_interval_including_zero_says_no_clear_difference_and_picks_nothing():
    point = np.array([[0.62, 0.60, 0.30]])  # a beats b by 2 points, but noisily
    offsets = [-0.05, 0.05, -0.04, 0.04]
    r = summarise(OPTIONS, point, _reps(point, offsets), point, _reps(point, offsets))
    p = r.patient(0)
    assert p.benefit_ci[0] < 0 < p.benefit_ci[1]
    assert not p.clear and p.recommended is None
    assert p.statement.startswith(f"{NO_CLEAR_DIFFERENCE} between a and b")
    assert r.recommended_names()[0] == NO_CLEAR_DIFFERENCE


def test_exact_tie_is_never_clear_and_goes_to_the_earlier_option():
    point = np.array([[0.5, 0.7, 0.7]])
    r = summarise(
        OPTIONS, point, np.repeat(point[None], 3, axis=0), point, np.repeat(point[None], 3, axis=0)
    )
    assert (r.best[0], r.next_best[0], r.benefit[0], bool(r.clear[0])) == (1, 2, 0.0, False)


def test_the_benefit_interval_uses_paired_replicates():
    # a and b move together in every replicate: their difference is certain although each is not
    point = np.array([[0.70, 0.65, 0.1]])
    reps = np.repeat(point[None], 4, axis=0) + np.array([-0.1, 0.1, -0.2, 0.2])[:, None, None]
    r = summarise(OPTIONS, point, reps, point, reps)
    assert r.rfs_5y_se[0, 0] > 0.1 and r.benefit_se[0] == pytest.approx(0.0, abs=1e-12)
    assert bool(r.clear[0])


def test_probabilities_shown_are_clipped_but_the_benefit_is_the_raw_difference():
    point = np.array([[1.02, 0.95, 0.5]])
    reps = np.repeat(point[None], 3, axis=0) + np.array([0.0, 0.01, -0.01])[:, None, None]
    p = summarise(OPTIONS, point, reps, point, reps).patient(0)
    assert p.options[0].rfs_5y == 1.0 and p.options[0].rfs_5y_ci[1] <= 1.0
    assert p.benefit == pytest.approx(0.07)


def test_needs_two_options():
    with pytest.raises(ValueError, match="two options"):
        summarise(
            ("a",), np.zeros((1, 1)), np.zeros((2, 1, 1)), np.zeros((1, 1)), np.zeros((2, 1, 1))
        )
