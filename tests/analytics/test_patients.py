"""analytics.patients: search by id / MRN prefix, the patient summary, unknown ids."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from analytics import patients
from analytics.patients import UnknownPatientError


def test_search_by_exact_id(demo_con):
    found = patients.search_patients(demo_con, "42")
    assert found.iloc[0]["person_id"] == 42
    assert found.iloc[0]["mrn"] == "MRN00000042"
    assert list(found.columns) == list(patients.SEARCH_COLUMNS)


@pytest.mark.parametrize("text", ["MRN00000042", "mrn00000042", "  MRN00000042 ", "00000042"])
def test_search_by_mrn_in_several_spellings(demo_con, text):
    found = patients.search_patients(demo_con, text)
    assert found["person_id"].tolist() == [42]


def test_search_by_mrn_prefix_lists_in_mrn_order(demo_con):
    found = patients.search_patients(demo_con, "MRN0000001")
    assert found["person_id"].tolist() == list(range(10, 20))


def test_search_respects_limit(demo_con):
    assert len(patients.search_patients(demo_con, "MRN")) == 20
    assert len(patients.search_patients(demo_con, "MRN", limit=5)) == 5


@pytest.mark.parametrize("text", ["", "   ", "%", "MRN%", "_", "' OR 1=1 --", "999999", "x" * 500])
def test_search_finds_nothing_for_empty_wildcards_or_unknown(demo_con, text):
    found = patients.search_patients(demo_con, text)
    assert found.empty
    assert list(found.columns) == list(patients.SEARCH_COLUMNS)


def test_search_by_name_in_any_order_and_case_and_by_birth_date(demo_con):
    given, family, born = demo_con.execute(
        "SELECT given_name, family_name, birth_date FROM person WHERE person_id = 42"
    ).fetchone()
    expected = set(
        demo_con.execute(
            "SELECT person_id FROM person WHERE lower(given_name) = lower(?) AND lower(family_name) = lower(?)",
            [given, family],
        ).df()["person_id"]
    )
    for text in (
        f"{family}, {given}",
        f"{given.lower()} {family.upper()}",
        f"{family[:3]} {given[:2]}",
    ):
        found = patients.search_patients(demo_con, text)
        assert 42 in set(found["person_id"]), text
        assert expected <= set(found["person_id"])
        assert found["name"].str.lower().str.contains(family.lower()).all()
    by_birth = patients.search_patients(demo_con, born.isoformat())
    assert 42 in set(by_birth["person_id"])
    assert (by_birth["birth_date"].dt.date == born).all()
    assert patients.search_patients(demo_con, "1950-02-30").empty  # not a date, not a name


def test_namesakes_are_told_apart_by_birth_date_and_mrn(demo_con):
    """Two patients with the same name: the results carry what tells them apart."""
    pair = demo_con.execute(
        "SELECT given_name, family_name FROM person GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    assert pair, "the demo clinic has namesakes (synthetic names drawn from short lists)"
    found = patients.search_patients(demo_con, f"{pair[1]} {pair[0]}")
    same = found[found["name"] == f"{pair[1]}, {pair[0]}"]
    assert len(same) >= 2
    assert same[["mrn"]].drop_duplicates().shape[0] == len(same)


def test_summary_matches_the_store(demo_con):
    summary = patients.patient_summary(demo_con, 7)
    assert summary.person_id == 7 and summary.mrn == "MRN00000007"
    birth, diagnosis = demo_con.execute(
        "SELECT p.birth_date, c.diagnosis_date FROM person p JOIN condition_occurrence c "
        "USING (person_id) WHERE person_id = 7"
    ).fetchone()
    expected_age = (
        diagnosis.year - birth.year - ((diagnosis.month, diagnosis.day) < (birth.month, birth.day))
    )
    assert summary.demographics.age_at_diagnosis_years == expected_age
    assert summary.diagnosis is not None and summary.diagnosis.diagnosis_date == diagnosis
    assert isinstance(summary.diagnosis.tumour_size_mm, float)
    for table, frame in [
        ("measurement", summary.measurements),
        ("treatment_exposure", summary.treatments),
        ("imaging_study", summary.imaging_studies),
        ("outcome_event", summary.outcome_events),
    ]:
        n = demo_con.execute(f"SELECT count(*) FROM {table} WHERE person_id = 7").fetchone()[0]
        assert len(frame) == n, table
    assert summary.measurements["measurement_date"].is_monotonic_increasing
    studies = summary.imaging_studies
    lesion = studies["lesion_longest_diameter_mm"]
    # restaging CT carries the target lesion read from it; mammograms after surgery have none
    assert lesion[studies["modality"] == "CT"].notna().all()
    assert lesion[studies["modality"] == "MG"].isna().all()


def test_summary_never_loads_names(demo_con):
    summary = patients.patient_summary(demo_con, 1)
    fields = {f.name for f in dataclasses.fields(summary.demographics)}
    assert not fields & {"given_name", "family_name", "birth_date"}
    given, family = demo_con.execute(
        "SELECT given_name, family_name FROM person WHERE person_id = 1"
    ).fetchone()
    assert given not in repr(summary) and family not in repr(summary)


@pytest.mark.parametrize("bad", [999_999, -1, 2**70, True, "7", 7.0])
def test_unknown_or_malformed_ids_raise_unknown_patient(demo_con, bad):
    with pytest.raises(UnknownPatientError, match="no patient with id"):
        patients.patient_summary(demo_con, bad)


def test_summary_of_patient_without_diagnosis_or_events(tiny):
    tiny.person(5, diagnosis=None)
    summary = patients.patient_summary(tiny.con, 5)
    assert summary.diagnosis is None
    assert summary.demographics.age_at_diagnosis_years is None
    assert summary.observation_period is not None
    assert summary.treatments.empty and summary.measurements.empty and summary.outcome_events.empty


def test_outcome_events_carry_days_from_diagnosis(tiny):
    tiny.person(3, diagnosis="2021-03-01", birth="1961-03-02")
    tiny.event(3, "recurrence", "2022-03-01")
    summary = patients.patient_summary(tiny.con, 3)
    assert summary.demographics.age_at_diagnosis_years == 59  # one day short of 60
    assert summary.outcome_events["days_from_diagnosis"].tolist() == [365]
    assert summary.outcome_events["event_type"].tolist() == ["recurrence"]


def test_ongoing_treatment_is_flagged(tiny):
    tiny.person(4)
    tiny.treatment(4, 1, "endocrine", "endocrine", "2020-02-01", None)
    tiny.treatment(4, 1, "radiotherapy", None, "2020-01-15", "2020-01-30")
    treatments = patients.patient_summary(tiny.con, 4).treatments
    assert treatments["treatment_class"].tolist() == ["radiotherapy", "endocrine"]  # by start date
    assert treatments["ongoing"].tolist() == [False, True]


def test_recent_imaging_studies_newest_first(demo_con):
    recent = patients.recent_imaging_studies(demo_con, limit=10)
    assert len(recent) == 10
    assert recent["study_date"].is_monotonic_decreasing
    newest = demo_con.execute("SELECT max(study_date) FROM imaging_study").fetchone()[0]
    assert recent["study_date"].iloc[0].date() == newest
    assert recent["mrn"].str.startswith("MRN").all()
    assert isinstance(newest, dt.date)
