"""analytics.forecast.patient and forecast_survival: one patient's forecast (contract, conditional survival,
bad input), the worklist's vectorised risks, and conditional Kaplan-Meier."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics import store
from analytics.forecast.patient import (
    ForecastError,
    UnknownPatientError,
    cohort_risk,
    estimate_prior,
    patient_forecast,
)
from analytics.forecast.survival import conditional_km, survival_curves
from analytics.treatment.clinic import ClinicModel
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.outcome_model import OutcomeModel


@pytest.fixture(scope="module")
def clinic(demo_db: Path) -> ClinicModel:
    """The clinic's outcome model fitted on the demo store (three refits: enough for a band)."""
    with store.open_store(demo_db, read_only=True) as con:
        table, _ = clinic_training_table(con)
    model = OutcomeModel(bootstrap=3, seed=5).fit(table)
    return ClinicModel(model, {"version": "test-model"}, explainer=None, folder=Path("."))


@pytest.fixture(scope="module")
def prior(demo_db: Path):
    with store.open_store(demo_db, read_only=True) as con:
        return estimate_prior(con)


def _recurrence_free_patient(con) -> int:
    """Early disease, followed to the cut-off within the model's five years: her RFS forecast applies."""
    return int(
        con.execute(
            "SELECT person_id FROM person WHERE person_id NOT IN (SELECT person_id FROM outcome_event) "
            "AND person_id IN (SELECT person_id FROM observation_period WHERE end_reason = 'data_cutoff' "
            "AND end_date - start_date < 1500) ORDER BY person_id LIMIT 1"
        ).fetchall()[0][0]
    )


def _on_line_patient(con) -> int:
    """Metastatic disease on an ongoing line with four or more readings on it: a lesion to forecast.

    Since issue 17 lesions are read only in measurable (metastatic) disease, never after surgery.
    """
    return int(
        con.execute(
            """SELECT e.person_id FROM episode e
               WHERE e.kind = 'line' AND e.end_date IS NULL AND e.line_number >= 2
                 AND (SELECT count(*) FROM measurement m WHERE m.person_id = e.person_id
                        AND m.concept = 'lesion_longest_diameter'
                        AND m.measurement_date >= e.start_date - INTERVAL 42 DAY) >= 4
               ORDER BY e.person_id LIMIT 1"""
        ).fetchall()[0][0]
    )


def test_json_contract_and_bands(demo_con, prior, clinic):
    pid = _recurrence_free_patient(demo_con)
    result = patient_forecast(demo_con, pid, prior, clinic).to_json()
    assert result["patient_id"] == pid
    assert set(result["survival"]) == set(clinic.model.options_)
    for rows in result["survival"].values():
        assert rows[0]["s"] == 1.0  # conditional: she is recurrence-free today
        assert all(r["lo"] <= r["s"] <= r["hi"] for r in rows)
        s = [r["s"] for r in rows]
        assert s == sorted(s, reverse=True)
    on_line = patient_forecast(demo_con, _on_line_patient(demo_con), prior, clinic).to_json()
    assert on_line["survival"] == {}  # recurred: recurrence-free survival no longer applies
    tumour = on_line["tumour"]
    assert {"observed", "forecast", "progression_date"} <= set(tumour)
    assert all(set(r) >= {"date", "mm"} for r in tumour["observed"])
    assert all(r["lo"] <= r["lo80"] <= r["hi80"] <= r["hi"] for r in tumour["forecast"])
    assert tumour["forecast"][0]["date"] == tumour["observed"][-1]["date"]
    assert (
        "not a medical device" in result["caveat"] and "not a medical device" in on_line["caveat"]
    )
    if tumour["progression_status"] == "forecast":
        assert tumour["progression_date"] > tumour["observed"][-1]["date"]


def test_survival_is_the_models_curve_divided_by_survival_so_far(demo_con, prior, clinic):
    pid = _recurrence_free_patient(demo_con)
    forecast = patient_forecast(demo_con, pid, prior, clinic)
    from analytics.treatment.clinic_data import patient_covariates

    cov = patient_covariates(demo_con, pid)
    t0 = forecast.survival.from_day
    frame = forecast.survival.curves[clinic.model.options_[0]]
    later = frame["day"].to_numpy()[1:]
    s = clinic.model.main_.predict_survival(cov, clinic.model.options_[0], np.r_[t0, later])[0]
    assert frame["s"].to_numpy()[1:] == pytest.approx(s[1:] / s[0], abs=1e-6)
    expected_risk = (
        1
        - clinic.model.main_.predict_survival(cov, forecast.received_option, [t0 + 182.625])[0, 0]
        / clinic.model.main_.predict_survival(cov, forecast.received_option, [t0])[0, 0]
    )
    assert forecast.risk_recurrence_6m == pytest.approx(expected_risk, abs=1e-4)


def test_without_a_model_the_tumour_part_still_shows(demo_con, prior):
    forecast = patient_forecast(demo_con, _on_line_patient(demo_con), prior, clinic=None)
    assert forecast.survival is None and forecast.tumour.available
    assert any("recurrence or death recorded" in n for n in forecast.notes)
    assert forecast.to_json()["survival"] == {}
    # early disease without a model: nothing measurable after surgery and no RFS model, so nothing
    with pytest.raises(ForecastError, match="no treatment model"):
        patient_forecast(demo_con, _recurrence_free_patient(demo_con), prior, clinic=None)


def test_unknown_patient(demo_con, prior):
    with pytest.raises(UnknownPatientError, match="no patient with id 987654"):
        patient_forecast(demo_con, 987654, prior)


def test_bad_input_is_dropped_and_said(tiny):
    tiny.person(1, birth="1960-06-15")
    tiny.lesion(
        1,
        ("1950-01-01", 30.0),
        ("2020-03-01", 25.0),
        ("2020-09-01", 20.0),
        ("2021-03-01", 24.0),
        ("2021-09-01", 26.0),
    )
    tiny.con.execute("INSERT INTO clinic_metadata VALUES ('data_cutoff', '2021-06-01')")
    prior = estimate_prior(tiny.con)  # too small a cohort: the broad default
    tumour = patient_forecast(tiny.con, 1, prior).tumour
    assert [str(d) for d in tumour.observed["date"]] == ["2020-03-01", "2020-09-01", "2021-03-01"]
    assert any("before birth" in n for n in tumour.notes)
    assert any("after the data cut-off" in n for n in tumour.notes)
    assert tumour.available and tumour.nadir_mm == 20.0


def test_cleaning_drops_values_no_diameter_can_take():
    """The store refuses negative diameters; an import or another source may not: cleaning drops them."""
    from analytics.forecast.data import clean

    raw = pd.DataFrame(
        {
            "person_id": [1, 1, 1, 1, 2],
            "measurement_date": pd.to_datetime(
                ["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01", "2020-01-01"]
            ),
            "mm": [20.0, -3.0, np.nan, 900.0, 15.0],
            "birth_date": pd.to_datetime(["1960-01-01"] * 5),
            "treatment_start": pd.to_datetime(["2020-01-15"] * 4 + [None]),
        }
    )
    kept, notes = clean(raw)
    assert kept["mm"].tolist() == [20.0, 15.0]
    assert kept["t_days"].tolist() == [-14.0, 0.0]
    assert kept["timed_from"].tolist() == ["treatment", "first_measurement"]
    assert len(notes[1]) == 3 and not notes.get(2)
    assert any("negative" in n for n in notes[1]) and any("above 500 mm" in n for n in notes[1])


def test_one_measurement_forecasts_with_a_note_and_none_says_why(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2020-03-01", 25.0))
    tiny.person(2)
    tiny.person(3, diagnosis=None)
    prior = estimate_prior(tiny.con)
    one = patient_forecast(tiny.con, 1, prior, as_of=dt.date(2021, 1, 1)).tumour
    assert one.available and any("one measurement" in n for n in one.notes)
    assert (one.forecast["hi"] - one.forecast["lo"]).iloc[-1] > 10  # wide: a single reading
    with pytest.raises(ForecastError, match="no usable lesion measurement"):
        patient_forecast(tiny.con, 2, prior)  # and no model for survival
    with pytest.raises(ForecastError, match="no diagnosis"):
        patient_forecast(tiny.con, 3, prior)


def test_cohort_risk_matches_one_patient_and_is_a_probability(demo_con, prior, clinic):
    ids = (
        demo_con.execute("SELECT person_id FROM person ORDER BY person_id LIMIT 60")
        .df()["person_id"]
        .to_numpy()
    )
    risk = cohort_risk(demo_con, ids, prior, clinic).set_index("person_id")
    assert risk["risk_6m"].dropna().between(0, 1).all()
    combined = 1 - (1 - risk["p_progression_6m"].fillna(0)) * (
        1 - risk["p_recurrence_6m"].fillna(0)
    )
    assert risk["risk_6m"].dropna().to_numpy() == pytest.approx(
        combined[risk["risk_6m"].notna()].to_numpy()
    )
    early, on_line = _recurrence_free_patient(demo_con), _on_line_patient(demo_con)
    rows = cohort_risk(demo_con, np.array([early, on_line]), prior, clinic).set_index("person_id")
    one = patient_forecast(demo_con, early, prior, clinic)
    assert rows.loc[early, "p_recurrence_6m"] == pytest.approx(one.risk_recurrence_6m, abs=1e-6)
    other = patient_forecast(demo_con, on_line, prior, clinic)
    assert rows.loc[on_line, "p_progression_6m"] == pytest.approx(
        other.tumour.progression_probability_6m, abs=0.08
    )


def test_one_query_record_equals_the_separate_queries(demo_con, prior, clinic):
    """One patient's record comes in one query; it must say what the separate queries (the training SQL
    for covariates, the shared lesion query, the facts) say, and her forecast must be theirs."""
    from analytics.forecast.data import clean, data_cutoff, lesion_frame, patient_record
    from analytics.forecast.patient import tumour_forecast
    from analytics.treatment.clinic_data import MissingCovariatesError, patient_covariates

    cutoff = data_cutoff(demo_con)
    ids = [
        int(r[0])
        for r in demo_con.execute(
            "SELECT person_id FROM person ORDER BY person_id LIMIT 40"
        ).fetchall()
    ]
    for pid in ids:
        record = patient_record(demo_con, pid)
        facts = demo_con.execute(
            "SELECT (SELECT min(diagnosis_date) FROM condition_occurrence WHERE person_id = $1), "
            "(SELECT max(end_date) FROM observation_period WHERE person_id = $1), "
            "(SELECT min(event_date) FROM outcome_event WHERE person_id = $1), "
            "(SELECT min(regimen) FROM treatment_exposure WHERE person_id = $1 AND line_of_therapy = 1)",
            [pid],
        ).fetchall()[0]
        assert (
            record.diagnosis_date,
            record.follow_up_end,
            record.first_event,
            record.received_option,
        ) == facts
        assert record.data_cutoff == cutoff
        try:
            expected = patient_covariates(demo_con, pid).iloc[0].tolist()
        except MissingCovariatesError:
            expected = None
        if expected is not None:
            assert [float(v) for v in record.covariates] == expected
        readings, notes = clean(lesion_frame(demo_con, "one", (pid,)), cutoff)
        day, mm, t_days, timed, dropped = record.readings(cutoff)
        assert (
            mm.tolist() == readings["mm"].tolist()
            and t_days.tolist() == readings["t_days"].tolist()
        )
        assert dropped == notes.get(pid, [])
        if len(readings):
            separate = tumour_forecast(readings, notes.get(pid, []), prior, cutoff).to_json()
            assert patient_forecast(demo_con, pid, prior, clinic).tumour.to_json() == separate
    assert patient_record(demo_con, 987654) is None


def test_survival_curves_shapes(demo_con, clinic):
    from analytics.treatment.clinic_data import patient_covariates

    curves = survival_curves(clinic.model, patient_covariates(demo_con, 1))
    # day 0 and each of the learner's horizons (the pseudo-value grid; its length follows the data)
    h = 1 + len(clinic.model.main_.horizons_days)
    assert h >= 6 and curves.days.shape == (h,) and curves.days[0] == 0
    assert curves.point.shape == (1, len(clinic.model.options_), h)
    assert curves.replicates.shape == (3, 1, len(clinic.model.options_), h)
    assert (curves.point[..., 0] == 1).all() and (np.diff(curves.point, axis=-1) <= 0).all()


def test_conditional_km_by_hand():
    km = pd.DataFrame(
        {
            "group": "a",
            "time_days": [0.0, 100.0, 200.0, 300.0],
            "survival": [1.0, 0.8, 0.6, 0.3],
            "ci_lower": [1.0, 0.7, 0.5, 0.2],
            "ci_upper": [1.0, 0.9, 0.7, 0.4],
            "at_risk": [10, 8, 6, 3],
        }
    )
    out = conditional_km(km, 150.0)
    assert out["time_days"].tolist() == [200.0, 300.0]
    assert out["survival"].tolist() == pytest.approx([0.75, 0.375])  # divided by S(150) = 0.8


def test_the_progression_risk_is_read_at_her_last_reading_expected_within_six_months():
    from analytics.forecast.patient import DEFAULT_CADENCE_DAYS, expected_reading_day

    nan = np.nan
    t = np.array(
        [
            [0.0, 90.0, 180.0, 270.0],  # every 90 days, last at 270, today 300: due at 360, 450
            [0.0, 60.0, 60.0, 120.0],  # a same-day repeat is one visit: cadence 60
            [10.0, nan, nan, nan],  # one reading: the default cadence
            [0.0, 400.0, nan, nan],  # a gap over six months counts as six months
            [0.0, 5.0, 10.0, nan],  # a gap under four weeks counts as four weeks
        ]
    )
    mask = np.isfinite(t)
    today = np.array([300.0, 120.0, 10.0, 400.0, 10.0])
    at = expected_reading_day(np.nan_to_num(t), mask, today)
    half_year = 182.625
    assert at[0] == 450.0
    assert at[1] == 120.0 + 3 * 60.0
    assert at[2] == 10.0 + DEFAULT_CADENCE_DAYS * (half_year // DEFAULT_CADENCE_DAYS)
    assert at[3] == 400.0 + half_year
    assert at[4] == 10.0 + 28.0 * (half_year // 28.0)
    window_start = np.maximum(today, np.nanmax(t, axis=1))
    assert (
        (at > window_start) & (at <= window_start + half_year)
    ).all()  # always one reading in the window


def test_outside_the_treatment_models_scope_no_survival_curves_are_drawn(
    demo_db, tmp_path, prior, clinic
):
    """A patient treated before surgery (neoadjuvant) is outside the adjuvant model's decision: her
    forecast draws no recurrence-free survival per option and says why, and the worklist's risk
    leaves the model's recurrence part out; the same patient without that episode gets both."""
    db = tmp_path / "clinic.duckdb"
    db.write_bytes(demo_db.read_bytes())
    with store.open_store(db) as con:
        pid = _recurrence_free_patient(con)
        before = patient_forecast(con, pid, prior, clinic)
        risk_before = cohort_risk(con, np.array([pid]), prior, clinic).iloc[0]
        assert before.survival is not None and risk_before["p_recurrence_6m"] > 0
        diagnosis = con.execute(
            "SELECT min(diagnosis_date) FROM condition_occurrence WHERE person_id = ?", [pid]
        ).fetchall()[0][0]
        con.execute(
            """INSERT INTO episode VALUES ((SELECT max(episode_id) + 1 FROM episode), ?, 'early',
               'neoadjuvant', NULL, ?, ? + INTERVAL 120 DAY, 'surgery', NULL, 'import')""",
            [pid, diagnosis, diagnosis],
        )
        with pytest.raises(ForecastError, match="out of scope for her .*neoadjuvant"):
            patient_forecast(con, pid, prior, clinic)  # no lesion read either: nothing to forecast
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source) "
            "VALUES ((SELECT max(measurement_id) + 1 FROM measurement), ?, ? + INTERVAL 10 DAY, "
            "'lesion_longest_diameter', 31.0, 'mm', 'radiology')",
            [pid, diagnosis],
        )
        after = patient_forecast(con, pid, prior, clinic)  # her primary under therapy: a trajectory
        risk_after = cohort_risk(con, np.array([pid]), prior, clinic).iloc[0]
    assert after.tumour.available and after.survival is None and after.risk_recurrence_6m is None
    (note,) = [n for n in after.notes if "out of scope" in n]
    assert "neoadjuvant" in note
    assert np.isnan(risk_after["p_recurrence_6m"])
    assert after.to_json()["survival"] == {}
