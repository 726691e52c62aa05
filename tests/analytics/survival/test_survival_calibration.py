"""Calibration of predicted survival against Kaplan-Meier by groups: groups, observed side, sign, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from analytics.survival.calibration import survival_calibration


def _cohort(seed: int, n: int = 2000, horizon: float = 5.0):
    """Exponential event times with a known rate per patient, uniform censoring: S(h) is known."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.02, 0.4, n)
    event_time = rng.exponential(1 / rate)
    censor = rng.uniform(2.0, 12.0, n)
    time = np.minimum(event_time, censor)
    event = event_time <= censor
    return np.exp(-rate * horizon), time, event


def test_true_survival_is_calibrated_and_an_optimistic_model_has_a_positive_gap():
    truth, time, event = _cohort(7)
    good = survival_calibration(truth, time, event, 5.0)
    assert abs(good["overall"]["gap"]) < 0.03
    assert good["max_abs_gap"] < 0.1
    optimistic = survival_calibration(np.clip(truth + 0.15, 0, 1), time, event, 5.0)
    # survival scale: predicting more survivors than there were is a positive gap
    assert optimistic["overall"]["gap"] > 0.1
    assert all(b["gap"] > 0 for b in optimistic["bins"])
    assert "survival scale" in optimistic["sign"]


def test_each_group_observed_is_lifelines_kaplan_meier_with_its_band():
    truth, time, event = _cohort(11, n=500)
    result = survival_calibration(truth, time, event, 5.0, groups=5)
    order = np.argsort(truth, kind="stable")
    assert [b["n"] for b in result["bins"]] == [100] * 5
    for b, idx in zip(result["bins"], np.array_split(order, 5), strict=True):
        kmf = KaplanMeierFitter().fit(time[idx], event[idx])
        assert b["observed"] == pytest.approx(
            float(kmf.survival_function_at_times(5.0).iloc[0]), abs=1e-4
        )
        assert b["ci_low"] <= b["observed"] <= b["ci_high"]
        assert b["mean_predicted"] == pytest.approx(truth[idx].mean(), abs=1e-4)
    # groups are in order of predicted survival
    means = [b["mean_predicted"] for b in result["bins"]]
    assert means == sorted(means)


def test_refuses_mismatched_or_too_few_inputs():
    with pytest.raises(ValueError, match="equal length"):
        survival_calibration([0.5, 0.6], [1.0], [True], 5.0)
    with pytest.raises(ValueError, match="at least 20"):
        survival_calibration(np.full(10, 0.5), np.ones(10), np.ones(10, bool), 5.0)
