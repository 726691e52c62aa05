"""analytics.survival.pseudo_values: jackknife pseudo-values of the Kaplan-Meier curve, by hand and by definition."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.survival.kaplan_meier import kaplan_meier_at
from analytics.survival.pseudo_values import pseudo_values, pseudo_values_naive


def test_pseudo_values_by_hand_on_three_patients():
    # times 1 (event), 2 (censored), 3 (event); S(2.5) = 2/3.
    # Without patient 1: S = 1 on [0, 3) -> 1; without 2: S(2.5) = 1/2; without 3: S(2.5) = 1/2.
    pv = pseudo_values(np.array([1.0, 2.0, 3.0]), np.array([True, False, True]), np.array([2.5]))
    assert pv[:, 0] == pytest.approx(
        [3 * 2 / 3 - 2 * 1.0, 3 * 2 / 3 - 2 * 0.5, 3 * 2 / 3 - 2 * 0.5]
    )


@pytest.mark.parametrize("seed", range(6))
def test_fast_pseudo_values_equal_the_leave_one_out_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 50))
    time = rng.integers(1, 12, n).astype(float)  # many ties, events and censorings at one time
    event = rng.random(n) < rng.uniform(0.2, 1.0)
    horizons = np.array([0.5, 1, 3, 6, 11, 11.5, 20])  # before, at and after the observed times
    assert pseudo_values(time, event, horizons) == pytest.approx(
        pseudo_values_naive(time, event, horizons)
    )


def test_pseudo_values_average_to_the_kaplan_meier_estimate():
    rng = np.random.default_rng(1)
    time = rng.exponential(1000, 400)
    event = rng.random(400) < 0.5
    h = np.array([365.0, 1826.0])
    assert pseudo_values(time, event, h).mean(axis=0) == pytest.approx(
        kaplan_meier_at(time, event, h)
    )


def test_everyone_had_the_event_before_the_horizon():
    pv = pseudo_values(np.array([1.0, 2.0]), np.array([True, True]), np.array([5.0]))
    assert pv[:, 0] == pytest.approx([0.0, 0.0])
