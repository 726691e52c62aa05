"""Horizons and time units from the data: conversion, plausibility, the default rule, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.survival.constants import DAYS_PER_YEAR
from analytics.treatment.data import TreatmentDataError, table_from_frame
from analytics.treatment.horizon import (
    MIN_AT_RISK,
    choose_horizon,
    horizon_label,
    pseudo_value_grid,
    table_in_days,
    to_days,
    unit_warnings,
)
from tests.analytics.treatment.trials import trial_frame


def test_units_convert_to_days():
    np.testing.assert_allclose(to_days(np.array([1.0, 2.0]), "weeks"), [7.0, 14.0])
    np.testing.assert_allclose(to_days(np.array([12.0]), "months"), [DAYS_PER_YEAR])
    np.testing.assert_allclose(to_days(np.array([1.0]), "years"), [DAYS_PER_YEAR])
    with pytest.raises(TreatmentDataError, match="unknown time unit 'fortnights'"):
        to_days(np.array([1.0]), "fortnights")


def test_labels_name_the_horizon():
    assert horizon_label(5 * DAYS_PER_YEAR) == "5-year"
    assert horizon_label(DAYS_PER_YEAR / 2) == "6-month"
    assert horizon_label(120.0) == "120-day"


def test_default_is_the_largest_standard_horizon_with_enough_patients_at_risk():
    time = np.concatenate([np.full(60, 400.0), np.full(40, 4 * DAYS_PER_YEAR)])
    h = choose_horizon(time)  # 40 of 100 followed 4 years: 3 years qualifies, 5 does not
    assert h.days == pytest.approx(3 * DAYS_PER_YEAR) and h.label == "3-year"
    assert h.at_risk == 40 and h.chosen_by == "data"
    assert h.to_json()["horizon_days"] == pytest.approx(3 * DAYS_PER_YEAR)
    few = np.concatenate([np.full(200, 400.0), np.full(MIN_AT_RISK - 1, 4 * DAYS_PER_YEAR)])
    assert choose_horizon(few).label == "1-year"  # 29 at risk at 3 years: too few


def test_a_horizon_beyond_follow_up_is_refused_with_the_reason():
    time = np.linspace(30, 365, 300)
    with pytest.raises(
        TreatmentDataError, match="5-year horizon is beyond the follow-up: the longest is 365 days"
    ):
        choose_horizon(time, 5 * DAYS_PER_YEAR)
    with pytest.raises(
        TreatmentDataError, match="too short for a 1-year horizon.*longest horizon with 30"
    ):
        choose_horizon(np.linspace(10, 300, 300))
    assert choose_horizon(time, 180.0).days == 180.0


def test_one_year_of_follow_up_gives_a_one_year_horizon():
    """A trial stopped at one year (visits a few days early count) gets 1-year RFS, not 5-year."""
    frame = trial_frame(400, follow_up_days=365.0, seed=3)
    frame.loc[frame.index[:80], "time"] = 362.0  # the one-year visit, three days early
    table = table_from_frame(frame, treatment="arm", time="time", event="event")
    h = choose_horizon(table.time_days)
    assert h.label == "1-year" and h.days == pytest.approx(DAYS_PER_YEAR)


def test_weeks_read_as_days_are_flagged_and_weeks_give_the_right_horizon():
    weeks = trial_frame(300, follow_up_days=4 * DAYS_PER_YEAR, seed=1)
    weeks["time"] = np.round(weeks["time"] / 7.0, 1) + 0.1
    table = table_from_frame(weeks, treatment="arm", time="time", event="event")
    as_days, warned = table_in_days(table, "days")
    assert [w["check"] for w in warned] == ["time_unit"] and "--time-unit" in warned[0]["message"]
    with pytest.raises(TreatmentDataError, match="too short for a 1-year horizon"):
        choose_horizon(as_days.time_days)
    in_weeks, quiet = table_in_days(table, "weeks")
    assert quiet == []
    assert choose_horizon(in_weeks.time_days).label == "3-year"


def test_impossible_follow_up_for_the_unit_is_refused():
    with pytest.raises(TreatmentDataError, match="cannot be right"):
        unit_warnings(np.array([100.0, 2000.0]) * DAYS_PER_YEAR, "years")


def test_pseudo_value_grid_starts_early_and_ends_at_the_horizon():
    grid = pseudo_value_grid(3 * DAYS_PER_YEAR)
    assert grid[0] < 31 and grid[1] < 92  # one and three months: curves bend early
    assert grid[-1] == pytest.approx(3 * DAYS_PER_YEAR) and list(grid) == sorted(grid)
    assert pseudo_value_grid(120.0) == (30.438, 91.312, 120.0)
