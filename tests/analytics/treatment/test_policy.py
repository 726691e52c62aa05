"""analytics.treatment.policy: the followed-vs-not analysis and the ground-truth metrics, by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.treatment.data import Feature, SurvivalTable
from analytics.treatment.policy import followed_vs_not, policy_comparison, truth_metrics


def _table(n: int = 300, seed: int = 0) -> SurvivalTable:
    """Option 'b' halves the hazard of patients with x = 1 and doubles it for x = 0."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n).astype(float)
    arm = rng.choice(["a", "b"], n).astype(object)
    hazard = np.where(arm == "b", np.where(x == 1, 0.5, 2.0), 1.0) / 1000
    t = rng.exponential(1 / hazard)
    c = rng.uniform(500, 3000, n)
    return SurvivalTable(
        pd.DataFrame({"x": x}),
        arm,
        np.minimum(t, c),
        t <= c,
        ("a", "b"),
        (Feature("x", "marker (1 = yes)"),),
    )


def test_the_right_policy_separates_followed_from_not():
    t = _table()
    right = np.where(t.covariates["x"] == 1, "b", "a")
    r = followed_vs_not(t, right, "oracle")
    assert r["followed_patients"] == int((right == t.treatment).sum())
    assert r["hazard_ratio"] < 0.8 and r["hazard_ratio_ci"][1] < 1 and r["logrank_p"] < 0.01
    assert r["hazard_ratio_ci"][0] < r["hazard_ratio"] < r["hazard_ratio_ci"][1]
    assert r["followed"]["rfs"] > r["not_followed"]["rfs"]
    wrong = followed_vs_not(t, np.where(right == "a", "b", "a"), "anti")
    assert wrong["hazard_ratio"] > 1.25


def test_comparison_lists_the_model_and_every_treat_everyone_policy():
    t = _table()
    rows = policy_comparison(t, np.full(t.n, "a", dtype=object), "model")
    assert [r["policy"] for r in rows] == ["model", "everyone: a", "everyone: b"]
    assert rows[0]["hazard_ratio"] == rows[1]["hazard_ratio"]
    assert rows[1]["hazard_ratio"] == pytest.approx(1 / rows[2]["hazard_ratio"], rel=0.05)


def test_a_policy_everyone_followed_cannot_be_compared():
    t = _table()
    assert "error" in followed_vs_not(t, t.treatment, "as treated")


def test_truth_metrics_on_three_patients_by_hand():
    true = np.array([[0.5, 0.6], [0.7, 0.7], [0.4, 0.2]])
    est = np.array([[0.5, 0.65], [0.72, 0.70], [0.3, 0.35]])
    best, nxt = np.array([1, 0, 1]), np.array([0, 1, 0])
    ci = np.array([[0.0, 0.2], [0.01, 0.03], [0.0, 0.1]])
    m = truth_metrics(
        ("a", "b"), est, best, nxt, ci, np.array([True, True, False]), true, np.array([0, 1, 1])
    )
    assert m["fraction_recommended_truly_best"] == pytest.approx(2 / 3, abs=1e-4)  # the tie counts
    assert m["fraction_truly_best_among_clear"] == 1.0
    assert m["policy_value_rfs_5y"] == pytest.approx(0.5, abs=1e-4)
    assert (m["best_single_option"], m["best_single_option_value_rfs_5y"]) == (
        "a",
        pytest.approx(0.5333, abs=1e-4),
    )
    assert m["policy_value_gain"] == pytest.approx(-0.0333, abs=1e-4)
    assert m["best_single_option_fraction_truly_best"] == pytest.approx(
        2 / 3, abs=1e-4
    )  # a: worse for the first
    assert m["oracle_value_rfs_5y"] == pytest.approx(0.5667, abs=1e-4)
    assert m["as_treated_value_rfs_5y"] == pytest.approx(0.4667, abs=1e-4)
    assert m["pehe"] == pytest.approx(np.sqrt((0.05**2 + 0.02**2 + 0.25**2) / 3), abs=1e-4)
    assert m["benefit_interval_coverage_of_true_benefit"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["fraction_with_tied_true_best"] == pytest.approx(1 / 3, abs=1e-4)
