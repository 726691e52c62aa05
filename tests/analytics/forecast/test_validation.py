"""analytics.forecast.validation and forecast_validation_risk: recalibrated band coverage on the seeded demo
(one series per line of therapy), the six-month risk check (who is scored and what counts as an event,
line by line, by hand; the report's schema and bounds)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.forecast.data import (
    clean,
    clean_segments,
    data_cutoff,
    lesion_frame,
    lesion_segments,
)
from analytics.forecast.validation import validate_tumour
from analytics.forecast.validation_risk import (
    calibration_bins,
    patient_dates,
    validate_risk,
    wilson,
    window_outcomes,
)


@pytest.fixture(scope="module")
def tumour_report(demo_db):
    from analytics import store

    with store.open_store(demo_db, read_only=True) as con:
        cutoff = data_cutoff(con)
        frame = clean_segments(lesion_segments(con, "all", as_of=cutoff), cutoff)
    return validate_tumour(frame)


def test_recalibrated_bands_cover_near_nominal_on_the_seeded_demo(tumour_report):
    """The raw bands of the demo are lopsided (readings fall below more often than above); the recalibrated
    ones, fitted inside each training half only, cover close to nominal with balanced tails."""
    overall = tumour_report["overall"]
    assert abs(overall["coverage_80"] - 0.80) < 0.04
    assert abs(overall["coverage_95"] - 0.95) < 0.025
    raw = overall["uncalibrated"]
    assert abs(overall["coverage_80"] - 0.80) < abs(raw["coverage_80"] - 0.80)
    assert abs(overall["coverage_95"] - 0.95) < abs(raw["coverage_95"] - 0.95)
    below, above = overall["below_above_80"]
    raw_below, raw_above = raw["below_above_80"]
    assert raw_below > raw_above + 0.04  # the raw predictive sits too high
    assert abs(below - above) < abs(raw_below - raw_above)
    # the model beats both baselines (their order between them is not a claim of the model's)
    assert overall["mae_mm"]["tgi"] < min(overall["mae_mm"]["trend"], overall["mae_mm"]["locf"])
    assert overall["lines"] > overall["patients"]  # one series per line of therapy
    for calibration in tumour_report["band_calibration"]:
        levels = calibration["levels_read_for_2.5_10_50_90_97.5"]
        assert levels == sorted(levels) and 0 <= levels[0] and levels[-1] <= 1


def _dates_tiny(tiny):
    """Ten patients whose six months after 2021-01-01 are known by construction."""
    tiny.person(1, end="2022-01-01")
    tiny.lesion(
        1, ("2020-01-01", 30.0), ("2020-09-01", 20.0), ("2021-03-01", 25.0)
    )  # 25 >= max(24, 25)
    tiny.person(2, end="2022-01-01")
    tiny.lesion(2, ("2020-10-01", 30.0), ("2021-02-01", 31.0))  # under 36: no progression
    tiny.person(3, end="2022-01-01")
    tiny.lesion(3, ("2020-10-01", 30.0))
    tiny.event(3, "recurrence", "2021-05-01")  # first recurrence in the window
    tiny.person(4, end="2021-03-01", end_reason="lost_to_follow_up")
    tiny.lesion(4, ("2020-10-01", 30.0), ("2021-02-01", 31.0))  # lost inside the window
    tiny.person(5, end="2022-01-01")
    tiny.lesion(5, ("2020-05-01", 30.0), ("2021-02-01", 31.0))  # no reading in the 6 months before
    tiny.person(6, end="2022-01-01")
    tiny.lesion(6, ("2020-10-01", 30.0), ("2021-02-01", 31.0))
    tiny.event(6, "recurrence", "2020-12-01")  # recurred before the cut: checked all the same
    tiny.person(7, diagnosis="2021-02-01", end="2022-01-01")
    tiny.lesion(7, ("2020-12-15", 30.0), ("2021-03-01", 40.0))  # diagnosed after the cut
    tiny.person(8, end="2022-01-01")
    tiny.lesion(8, ("2020-11-01", 30.0), ("2021-09-01", 50.0))  # no reading in the window
    tiny.person(9, end="2021-04-01", end_reason="death")
    tiny.lesion(9, ("2020-10-01", 30.0))
    tiny.event(9, "recurrence", "2020-09-01")
    tiny.event(9, "death", "2021-04-01")  # died in the window: an event, with no reading
    tiny.person(10, end="2022-01-01")
    # line by line: 20 mm progressed over the nadir 10 and opened a line; 23 is under 25 (1.2 x 20,
    # 20 + 5), so no progression, though it is 2.3 x the nadir of her whole history
    tiny.lesion(
        10, ("2020-03-01", 30.0), ("2020-06-01", 10.0), ("2020-09-01", 20.0), ("2021-03-01", 23.0)
    )
    readings, _ = clean(
        lesion_frame(tiny.con, "all", as_of=dt.date(2021, 1, 1)), dt.date(2022, 1, 1)
    )
    return window_outcomes(
        readings, patient_dates(tiny.con), dt.date(2021, 1, 1), 182.625
    ).set_index("person_id")


def test_window_outcomes_by_hand(tiny):
    out = _dates_tiny(tiny)
    # 5: not imaged lately; 7: diagnosed after the cut; recurred patients (6, 9) included
    assert sorted(out.index) == [1, 2, 3, 4, 6, 8, 9, 10]
    assert out.loc[1, "progression"] and out.loc[1, "event"] and out.loc[1, "assessable"]
    assert out.loc[1, "first_in_window_mm"] == 25.0 and out.loc[1, "regrowth_ratio"] == 1.0
    assert not out.loc[2, "event"] and out.loc[2, "assessable"]
    assert out.loc[3, "recurrence_or_death"] and out.loc[3, "event"] and out.loc[3, "assessable"]
    assert np.isnan(out.loc[3, "first_in_window"]) and not out.loc[3, "recurred"]
    assert not out.loc[4, "assessable"]  # lost without an event: not guessed
    assert out.loc[6, "recurred"] and not out.loc[6, "event"] and out.loc[6, "assessable"]
    assert not out.loc[8, "assessable"]  # progression unseen without a reading
    assert out.loc[9, "recurrence_or_death"] and out.loc[9, "event"] and out.loc[9, "assessable"]
    assert not out.loc[10, "progression"] and out.loc[10, "assessable"]
    assert out.loc[10, "nadir_mm"] == 20.0 and out.loc[10, "line_start"] == pd.Timestamp(
        "2020-09-01"
    )
    assert pd.isna(out.loc[2, "line_start"])  # no progression yet: her line is the whole series


def test_wilson_interval_and_bins_by_hand():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.959963984540054**2 / (10 + 1.959963984540054**2))
    rows = calibration_bins(
        np.array([0.1, 0.1, 0.5, 0.9, 1.0]), np.array([False, True, True, True, True])
    )
    assert [r["bin"] for r in rows] == ["0.0-0.2", "0.4-0.6", "0.8-1.0"]  # empty bins left out
    assert [r["patients"] for r in rows] == [2, 1, 2]
    assert rows[0]["mean_predicted"] == pytest.approx(0.1) and rows[0]["observed"] == 0.5
    assert rows[2]["mean_predicted"] == pytest.approx(0.95) and rows[2]["observed"] == 1.0


def test_risk_check_schema_and_bounds(demo_con):
    report = validate_risk(demo_con, seed=3)
    model = report["model"]
    assert model["patients"] >= 50 and 0 < model["events"] < model["patients"]
    assert sum(b["patients"] for b in model["bins"]) == model["patients"]
    for part in (
        model,
        report["uncalibrated_bands"],
        report["progression_at_next_reading"],
        *report["components"].values(),
    ):
        assert 0 <= part["mean_predicted"] <= 1 and 0 <= part["observed_rate"] <= 1
        assert 0 <= part["brier"] <= 1 and (part["auc"] is None or 0 <= part["auc"] <= 1)
        for b in part["bins"]:
            lo, hi = b["observed_95ci"]
            assert 0 <= lo <= b["observed"] <= hi <= 1 and 0 <= b["mean_predicted"] <= 1
    base = report["baselines"]["base_rate"]
    assert 0 < base["value"] < 1 and model["brier"] < base["brier"]  # better than a constant
    assert model["auc"] > 0.7
    assert set(report["components"]) <= {"progression", "recurrence_or_death"}
    assert dt.date.fromisoformat(report["cut"]) < data_cutoff(demo_con)
    # recurred patients are checked (in this demo every patient with lesion readings has recurred)
    assert report["recurred_at_cut"] > 0
    assert sum(report["patients_per_cut"].values()) == model["patients"]


def test_risk_check_says_why_it_cannot_run(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2024-10-01", 30.0), ("2025-03-01", 31.0))
    with pytest.raises(ValueError, match="no data cut-off"):
        validate_risk(tiny.con, seed=1)
    tiny.con.execute("INSERT INTO clinic_metadata VALUES ('data_cutoff', '2025-06-30')")
    with pytest.raises(ValueError, match="too few patients"):
        validate_risk(tiny.con, seed=1)
