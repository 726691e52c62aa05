"""analytics.cohorts.summary: SQL aggregates, the RFS definition, Kaplan-Meier against a hand computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.cohorts import summary as cohort_summary


def test_kaplan_meier_matches_hand_computation_on_six_patients():
    # times 1 2 2 3 4 5, events at 1, 2, 3, 5 (one censoring at 2, one at 4):
    # S(1) = 5/6; S(2) = 5/6 * 4/5 = 4/6 (the censored 2 is still at risk at 2);
    # S(3) = 4/6 * 2/3 = 4/9; S(4) unchanged (censoring); S(5) = 0.
    rfs = pd.DataFrame(
        {"rfs_days": [1, 2, 2, 3, 4, 5], "event": [True, True, False, True, False, True]}
    )
    curves, medians = cohort_summary.kaplan_meier(rfs, grid_points=11)  # grid 0, 0.5, ..., 5
    s = curves.set_index("time_days")["survival"]
    expected = {
        0.0: 1,
        0.5: 1,
        1.0: 5 / 6,
        1.5: 5 / 6,
        2.0: 4 / 6,
        2.5: 4 / 6,
        3.0: 4 / 9,
        4.0: 4 / 9,
        4.5: 4 / 9,
        5.0: 0.0,
    }
    for t, value in expected.items():
        assert s.loc[t] == pytest.approx(value), t
    at_risk = curves.set_index("time_days")["at_risk"]
    assert (at_risk.loc[0.0], at_risk.loc[2.0], at_risk.loc[2.5], at_risk.loc[5.0]) == (6, 5, 3, 1)
    assert (curves["ci_lower"] <= curves["survival"] + 1e-12).all()
    assert (curves["ci_upper"] >= curves["survival"] - 1e-12).all()
    assert medians.loc[0, "median_rfs_days"] == 3.0
    assert (medians.loc[0, "patients"], medians.loc[0, "events"]) == (6, 4)


def test_kaplan_meier_by_group_and_unreached_median():
    rfs = pd.DataFrame(
        {
            "rfs_days": [10, 20, 30, 10, 20, 30],
            "event": [True, True, True, False, False, True],
            "regimen": ["a", "a", "a", "b", "b", "b"],
        }
    )
    curves, medians = cohort_summary.kaplan_meier(rfs, "regimen")
    assert set(curves["group"]) == {"a", "b"}
    med = medians.set_index("group")["median_rfs_days"]
    assert med["a"] == 20.0
    assert np.isnan(med["b"]) or med["b"] == 30.0  # S_b(30) = 0, so 30 is the first time <= 0.5
    empty_curves, empty_medians = cohort_summary.kaplan_meier(rfs.iloc[0:0])
    assert empty_curves.empty and empty_medians.empty


def test_rfs_is_first_of_recurrence_or_death_censored_at_end_of_follow_up(tiny):
    tiny.person(1, diagnosis="2020-01-01", end="2025-01-01")
    tiny.event(1, "recurrence", "2020-04-10")  # day 100
    tiny.event(1, "death", "2021-01-01")
    tiny.person(2, diagnosis="2020-01-01", end="2020-12-31")  # censored at day 365
    tiny.person(3, diagnosis="2020-01-01", end="2020-02-20", end_reason="death")
    tiny.event(3, "death", "2020-02-20")  # day 50
    tiny.treatment(1, 1, "chemotherapy", "chemotherapy", "2020-01-10", "2020-03-01")
    tiny.treatment(1, 1, "anti_her2", "chemotherapy", "2020-01-10", "2020-06-01")
    tiny.treatment(2, 1, "endocrine", "endocrine", "2020-01-10", None)
    rfs = cohort_summary.rfs_sample(tiny.con).set_index("person_id")
    assert rfs.loc[1, "rfs_days"] == 100 and rfs.loc[1, "event"]
    assert rfs.loc[2, "rfs_days"] == 365 and not rfs.loc[2, "event"]
    assert rfs.loc[3, "rfs_days"] == 50 and rfs.loc[3, "event"]
    assert rfs["regimen"].to_dict() == {1: "chemotherapy", 2: "endocrine", 3: "none recorded"}


def test_overview_counts_agree_with_the_tables(demo_con):
    overview = cohort_summary.cohort_overview(demo_con)
    n = demo_con.execute("SELECT count(*) FROM person").fetchone()[0]
    assert overview.patients == n == 300
    for frame in (
        overview.age_distribution,
        overview.grade_counts,
        overview.stage_counts,
        overview.regimen_counts,
    ):
        assert frame["patients"].sum() == n
    er, pr, her2 = demo_con.execute(
        "SELECT count(*) FILTER (er_positive), count(*) FILTER (pr_positive), "
        "count(*) FILTER (her2_positive) FROM condition_occurrence"
    ).fetchone()
    assert overview.receptor_counts.set_index("receptor")["positive"].to_dict() == {
        "ER+": er,
        "PR+": pr,
        "HER2+": her2,
    }
    events = overview.event_counts.set_index("event_type")["patients"]
    assert events.get("recurrence", 0) == overview.recurrences
    assert events.get("death", 0) == overview.deaths
    assert overview.km_patients == n and not overview.km_sampled
    assert set(overview.km["group"]) >= {"all patients", "endocrine", "chemotherapy"}
    first = overview.km.groupby("group")["survival"].first()
    assert (first <= 1.0).all()
    assert overview.km.groupby("group")["survival"].apply(lambda s: s.is_monotonic_decreasing).all()
    assert overview.age_distribution["age_band"].iloc[0].count("-") == 1


def test_km_sample_is_deterministic_and_capped(demo_con):
    a = cohort_summary.rfs_sample(demo_con, max_patients=100)
    b = cohort_summary.rfs_sample(demo_con, max_patients=100)
    assert len(a) == 100
    pd.testing.assert_frame_equal(a, b)
    assert a["person_id"].max() > 200  # spread over the cohort, not its first 100 ids
    overview = cohort_summary.cohort_overview(demo_con, km_max_patients=100)
    assert overview.km_patients == 100 and overview.km_sampled
    assert overview.km_medians.set_index("group").loc["all patients", "patients"] == 100
