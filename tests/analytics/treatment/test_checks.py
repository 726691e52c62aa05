"""Data checks before fitting: leakage refused (unless kept), overlap, events, redundant and coded columns."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.treatment.checks import check_table
from analytics.treatment.data import TreatmentDataError, gbsg2_table, table_from_frame
from analytics.treatment.model.metrics import stratified_folds
from tests.analytics.treatment.trials import trial_frame


def _checked(frame, keep=()):
    table = table_from_frame(frame, treatment="arm", time="time", event="event")
    return check_table(table, stratified_folds(table, 3, 0), keep=keep)


def test_a_column_that_recodes_the_treatment_is_refused_by_name():
    frame = trial_frame(300, seed=2)
    frame["arm_code"] = np.where(frame["arm"] == "B", 2, 1)  # a second coding of the arm
    with pytest.raises(
        TreatmentDataError, match=r"'arm_code' predicts the treatment almost perfectly \(AUC 1.00"
    ):
        _checked(frame)
    table, warnings, _ = _checked(frame, keep=["arm_code"])
    assert "arm_code" in table.covariates.columns
    assert [w["column"] for w in warnings if w["check"] == "leakage"] == ["arm_code"]


def test_constant_and_duplicated_columns_are_left_out_and_named():
    frame = trial_frame(300, seed=4)
    frame["site"] = 1.0
    frame["marker_copy"] = frame["marker"]
    table, warnings, _ = _checked(frame)
    assert list(table.covariates.columns) == ["marker", "age"]
    assert {(w["check"], w["column"]) for w in warnings} >= {
        ("constant_column", "site"),
        ("duplicated_column", "marker_copy"),
    }


def test_whole_number_codes_and_few_events_are_flagged():
    frame = trial_frame(120, seed=5, follow_up_days=200)
    frame["stage"] = np.random.default_rng(0).integers(1, 5, len(frame))
    _, warnings, _ = _checked(frame)
    checks = {w["check"] for w in warnings}
    assert "coded_categories" in checks and "events" in checks


def test_overlap_reports_propensities_and_common_support():
    frame = trial_frame(600, seed=6)
    rng = np.random.default_rng(1)
    # treatment follows the marker strongly (but not perfectly): poor overlap in the tails
    frame["arm"] = np.where(frame["marker"] + rng.normal(0, 0.6, len(frame)) > 0, "B", "A")
    _, warnings, report = _checked(frame)
    b = report["options"]["B"]
    assert b["propensity_received"][2] > b["propensity_not_received"][2]
    assert 0 < b["share_outside_common_support"] < 1
    assert any(w["check"] == "overlap" for w in warnings)


def test_gbsg2_passes_with_only_the_grade_note():
    table = gbsg2_table()
    checked, warnings, _ = check_table(table, stratified_folds(table, 5, 0))
    assert checked.covariates.shape == table.covariates.shape
    assert {w["check"] for w in warnings} == {"coded_categories"}
    assert [w["column"] for w in warnings] == ["tgrade"]
