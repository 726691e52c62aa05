"""analytics.treatment.similar: who counts as similar, grouping by first-line option, curves by hand."""

from __future__ import annotations

from analytics.treatment.similar import similar_patients


def _patient(
    tiny, pid, *, stage="II", er=True, regimen="endocrine", event_day=None, diagnosis="2020-01-01"
):
    tiny.person(pid, diagnosis=diagnosis, end="2025-01-01")
    tiny.con.execute(
        "UPDATE condition_occurrence SET stage = ?, er_positive = ? WHERE person_id = ?",
        [stage, er, pid],
    )
    if regimen is not None:
        tiny.treatment(pid, 1, "endocrine", regimen, "2020-02-01", None)
    if event_day is not None:
        tiny.event(pid, "recurrence", event_day)


def test_same_stage_and_er_status_by_first_line_option_without_herself(tiny):
    _patient(tiny, 1)  # the patient
    _patient(tiny, 2, event_day="2021-01-01")  # similar, endocrine, 366 days
    _patient(tiny, 3)  # similar, endocrine, censored 1827 days
    _patient(tiny, 4, regimen="chemotherapy", event_day="2020-07-01")  # similar, chemotherapy
    _patient(tiny, 5, stage="III")  # other stage
    _patient(tiny, 6, er=False)  # other ER status
    _patient(tiny, 7, regimen=None)  # no first-line option recorded
    s = similar_patients(tiny.con, 1)
    assert s.criteria == "stage II, ER-positive"
    assert s.matched == s.used == 3 and not s.sampled
    counts = s.counts.set_index("group")
    assert counts.loc["endocrine", "patients"] == 2 and counts.loc["endocrine", "events"] == 1
    assert counts.loc["chemotherapy", "patients"] == 1 and counts.loc["chemotherapy", "events"] == 1
    endocrine = s.km[s.km["group"] == "endocrine"]
    # by hand: 2 at risk, one recurrence at day 366 -> 1/2 from then on
    assert endocrine[endocrine["time_days"] < 366]["survival"].eq(1.0).all()
    assert endocrine[endocrine["time_days"] >= 366]["survival"].eq(0.5).all()


def test_er_negative_patient_is_matched_to_er_negative_patients(tiny):
    _patient(tiny, 1, stage="III", er=False)
    _patient(tiny, 2, stage="III", er=False, regimen="chemotherapy")
    _patient(tiny, 3, stage="III", er=True)
    s = similar_patients(tiny.con, 1)
    assert s.criteria == "stage III, ER-negative"
    assert s.counts["group"].tolist() == ["chemotherapy"] and s.used == 1


def test_large_matches_are_sampled_deterministically(tiny):
    for pid in range(1, 12):
        _patient(tiny, pid)
    a, b = (
        similar_patients(tiny.con, 1, max_patients=4),
        similar_patients(tiny.con, 1, max_patients=4),
    )
    assert a.matched == 10 and a.used == 4 and a.sampled
    assert a.km.equals(b.km)


def test_no_diagnosis_no_similar_patients(tiny):
    tiny.person(1, diagnosis=None)
    s = similar_patients(tiny.con, 1)
    assert s.criteria is None and s.km.empty and s.used == 0


def test_on_the_demo_clinic_every_curve_says_its_size(demo_con):
    s = similar_patients(demo_con, 42)
    assert s.used > 10 and set(s.km["group"]) == set(s.counts["group"])
    assert s.counts["patients"].sum() == s.used
    assert s.km["survival"].between(0, 1).all()
    assert not s.counts["group"].isin(["none recorded"]).any()
