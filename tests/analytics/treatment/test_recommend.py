"""analytics.treatment.recommend: the decision rule on numbers chosen by hand."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analytics.survival.constants import Z_95
from analytics.treatment.recommend import (
    BENEFIT_UNITS,
    NO_CLEAR_DIFFERENCE,
    Z_BENEFIT,
    OptionRanking,
    summarise,
)
from tests.analytics.treatment.examples import CAVEAT, recommendation

OPTIONS = ("a", "b", "c")


def _reps(point: np.ndarray, offsets: list[float]) -> np.ndarray:
    """Bootstrap replicates: the point shifted by one offset per replicate for option 'a' only."""
    reps = np.repeat(point[None], len(offsets), axis=0).astype(float)
    reps[:, :, 0] += np.asarray(offsets)[:, None]
    return reps


def test_clear_benefit_recommends_and_without_a_forest_the_interval_is_point_plus_minus_z90_se():
    point = np.array([[0.70, 0.60, 0.50]])  # a beats b by 10 points
    offsets = [-0.01, 0.01, -0.01, 0.01]  # sd (ddof=1) of the a-b difference
    r = summarise(OPTIONS, point, _reps(point, offsets), point * 1000, _reps(point * 1000, offsets))
    se = np.std(offsets, ddof=1)
    p = r.patient(0)
    assert (p.best, p.next_best, p.clear, p.recommended) == ("a", "b", True, "a")
    assert p.benefit == pytest.approx(0.10)
    assert tuple(p.benefit_ci) == pytest.approx((0.10 - Z_BENEFIT * se, 0.10 + Z_BENEFIT * se))
    assert Z_BENEFIT == pytest.approx(1.6448536, abs=1e-6) and Z_BENEFIT < Z_95
    assert p.options[0].rfs_ci.contains(p.options[0].rfs)
    assert p.verdict == "clear" and p.option("a") is p.options[0]
    assert "a: 5-year RFS +10.0 percentage points, 90% interval" in p.statement


def test_the_doubly_robust_interval_decides_and_always_holds_the_point():
    point = np.array([[0.70, 0.60, 0.50], [0.62, 0.60, 0.30]])
    reps = np.repeat(point[None], 3, axis=0)  # no bootstrap spread at all
    dr = np.array([[-0.02, 0.08], [0.05, 0.09]])  # row 0: includes zero; row 1: excludes the point
    r = summarise(OPTIONS, point, reps, point, reps, dr)
    np.testing.assert_allclose(r.benefit_ci, [[-0.02, 0.10], [0.02, 0.09]])
    assert r.clear.tolist() == [False, True]


def test_interval_including_zero_says_no_clear_difference_and_picks_nothing():
    point = np.array([[0.62, 0.60, 0.30]])  # a beats b by 2 points, but noisily
    offsets = [-0.05, 0.05, -0.04, 0.04]
    r = summarise(OPTIONS, point, _reps(point, offsets), point, _reps(point, offsets))
    p = r.patient(0)
    assert p.benefit_ci.lo < 0 < p.benefit_ci.hi
    assert not p.clear and p.recommended is None and p.verdict == NO_CLEAR_DIFFERENCE
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
    assert p.options[0].rfs == 1.0 and p.options[0].rfs_ci.hi <= 1.0
    assert p.benefit == pytest.approx(0.07)


def test_needs_two_options():
    with pytest.raises(ValueError, match="two options"):
        summarise(
            ("a",), np.zeros((1, 1)), np.zeros((2, 1, 1)), np.zeros((1, 1)), np.zeros((2, 1, 1))
        )


# --- the typed result and the JSON of `oncolens recommend --json` -----------------------------

# The CLI's keys, in the order it prints them (tests/dashboard/cli/test_cli_treatment.py reads them).
CLI_KEYS = [
    "patient_id",
    "in_scope",
    "model_version",
    "horizon_days",
    "options",
    "recommended",
    "statement",
    "best_predicted",
    "compared_with",
    "benefit",
    "benefit_ci",
    "benefit_ci_widened",
    "benefit_units",
    "shap",
    "caveat",
]
CLI_OPTION_KEYS = ["treatment", "rfs_5y", "rfs_5y_ci", "rmst_days", "rmst_days_ci"]
CLI_SHAP_KEYS = ["base_value", "contributions", "explains", "additivity_error"]


def test_to_json_has_the_cli_keys_in_order_and_plain_json_values():
    rec = recommendation(clear=True)
    out = rec.to_json()
    assert list(out) == CLI_KEYS
    assert [list(o) for o in out["options"]] == [CLI_OPTION_KEYS] * 2
    assert list(out["shap"]) == CLI_SHAP_KEYS
    assert [list(c) for c in out["shap"]["contributions"]] == [["feature", "value", "shap"]] * 2
    assert json.loads(json.dumps(out)) == out  # lists, not tuples or Interval objects


def test_to_json_values_are_the_fields_under_the_cli_names():
    out = recommendation(clear=True).to_json()
    assert out["patient_id"] == 7 and out["model_version"] == "xgb_pseudo-0123456789ab"
    assert out["horizon_days"] == 1826.25
    assert out["options"][1] == {
        "treatment": "chemo_endocrine",
        "rfs_5y": 0.71,
        "rfs_5y_ci": [0.61, 0.81],
        "rmst_days": 1600.0,
        "rmst_days_ci": [1520.0, 1680.0],
    }
    assert (out["recommended"], out["best_predicted"], out["compared_with"]) == (
        "chemo_endocrine",
        "chemo_endocrine",
        "endocrine",
    )
    assert (out["benefit"], out["benefit_ci"]) == (0.07, [0.02, 0.12])
    assert out["statement"] == (
        "chemo_endocrine: 5-year RFS +7.0 percentage points, 90% interval +2.0 to +12.0 over endocrine"
    )
    assert out["benefit_units"] == BENEFIT_UNITS
    assert out["shap"] == {
        "base_value": 0.05,
        "contributions": [
            {"feature": "Tumour size (mm)", "value": 22.0, "shap": 0.03},
            {"feature": "Positive lymph nodes (count)", "value": 3.0, "shap": -0.01},
        ],
        "explains": "benefit of chemo_endocrine over endocrine",
        "additivity_error": 0.0,
    }
    assert out["caveat"] == CAVEAT


def test_no_clear_difference_in_json_is_a_null_recommendation():
    rec = recommendation(clear=False)
    out = rec.to_json()
    assert rec.verdict == NO_CLEAR_DIFFERENCE and out["recommended"] is None
    assert out["best_predicted"] == "chemo_endocrine" and out["benefit_ci"] == [-0.01, 0.15]
    assert out["statement"].startswith("no clear difference between chemo_endocrine and endocrine")


def test_results_are_frozen_values():
    rec = recommendation()
    assert rec == recommendation() and rec != recommendation(clear=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.benefit = 0.5  # type: ignore[misc]
    lo, hi = rec.benefit_ci
    assert (lo, hi) == (0.02, 0.12) and isinstance(rec, OptionRanking)
