"""Drift statistics: PSI by hand, the logistic fit against scikit-learn, planted shifts fire the right
alerts and unshifted windows stay quiet (images: planted reads; patients: planted older patients)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from analytics import store
from analytics.governance.lifecycle import drift, drift_data
from analytics.governance.lifecycle.tables import STAT_COLUMNS
from analytics.treatment.clinic import train_clinic_model
from analytics.treatment.model.files import load_model, model_dir_for
from sample_data.demo import write_demo

ROOT = Path(__file__).resolve().parents[4]
REFERENCE = ROOT / "models" / "weights" / "mammography.reference.json"


def test_psi_matches_the_formula_by_hand():
    reference = np.repeat([1.0, 2.0], 50)  # two values: discrete, bins are the values
    sample = np.repeat([1.0, 2.0], [80, 20])
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert drift.psi(reference, sample) == pytest.approx(expected)
    assert drift.psi(reference, reference) == pytest.approx(0.0)
    rng = np.random.default_rng(3)
    ref = rng.normal(size=5000)
    assert drift.psi(ref, rng.normal(size=5000)) < 0.02
    assert drift.psi(ref, rng.normal(1.0, 1.0, size=5000)) > 0.5


def test_two_sample_test_picks_chi_square_for_few_values_and_ks_otherwise():
    rng = np.random.default_rng(4)
    assert (
        drift.two_sample_test(rng.integers(1, 4, 300).astype(float), rng.integers(1, 4, 100))[0]
        == "chi-square"
    )
    name, _, p = drift.two_sample_test(rng.normal(size=300), rng.normal(size=100))
    assert name == "Kolmogorov-Smirnov" and p > 0.001


def test_logistic_fit_agrees_with_scikit_learn():
    rng = np.random.default_rng(5)
    x = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.3 + 0.8 * x)))).astype(float)
    beta, se = drift.logistic_fit(y, x, np.zeros(400))
    sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(x[:, None], y)
    assert beta == pytest.approx([sk.intercept_[0], sk.coef_[0, 0]], abs=1e-5)
    assert np.all(se > 0) and np.all(se < 0.5)


def _imaging_reference() -> pd.DataFrame:
    return pd.DataFrame(json.loads(REFERENCE.read_text())["values"])


def _reads(reference: pd.DataFrame, months: list[str], n: int, seed: int, brighter: float = 0.0):
    """Reads bootstrapped from the reference, one block per month; ``brighter`` shifts the mean."""
    rng = np.random.default_rng(seed)
    blocks = []
    for month in months:
        block = reference.iloc[rng.integers(0, len(reference), n)].copy()
        block["mean"] = block["mean"] + brighter
        block["date"] = pd.Timestamp(f"{month}-15")
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)


def test_brighter_images_in_later_months_fire_the_right_alerts():
    reference = _imaging_reference()
    early = _reads(reference, ["2026-01", "2026-02", "2026-03"], 120, seed=1)
    late = _reads(reference, ["2026-04", "2026-05"], 120, seed=2, brighter=0.08)
    report = drift.input_drift(
        "mammography",
        reference,
        pd.concat([early, late]),
        date_column="date",
        reference_label="test",
    )
    fired = {(a.window, a.feature, a.test) for a in report.alerts}
    assert ("2026-04", "mean", "Kolmogorov-Smirnov") in fired
    assert ("2026-05", "mean", "PSI") in fired
    assert not {w for w, _, _ in fired} & {"2026-01", "2026-02", "2026-03"}
    assert all("p <" in a.threshold or "PSI >" in a.threshold for a in report.alerts)
    assert report.tests_run == 5 * len(reference.columns)


def test_windows_too_small_are_listed_not_tested():
    reference = _imaging_reference()
    reads = _reads(reference, ["2026-01"], drift.MIN_WINDOW_N - 1, seed=3, brighter=0.2)
    report = drift.input_drift("m", reference, reads, date_column="date", reference_label="t")
    assert report.tests_run == 0 and not report.alerts and "not tested" in report.notes[0]


def test_no_false_alarms_beyond_the_nominal_rate_without_a_shift():
    """60 windows drawn from the reference itself: the family-wise rate per window is 1 %."""
    reference = _imaging_reference()
    months = [f"{2020 + i // 12}-{i % 12 + 1:02d}" for i in range(60)]
    report = drift.input_drift(
        "m",
        reference,
        _reads(reference, months, 60, seed=11),
        date_column="date",
        reference_label="t",
    )
    windows_alerting = {a.window for a in report.alerts}
    assert len(windows_alerting) <= 3  # expected 0.6 of 60 at a 1 % family-wise rate


def test_calibration_alerts_when_the_risk_is_misstated_and_not_when_it_is_right():
    rng = np.random.default_rng(8)
    n = 400
    p = rng.uniform(0.1, 0.7, n)
    event = (rng.random(n) < p).astype(int)
    dates = np.repeat(pd.to_datetime(["2018-06-01", "2019-06-01"]), n // 2)
    good = pd.DataFrame({"date": dates, "predicted": p, "event": event})
    report = drift.calibration_drift("treatment", good, date_column="date", reference_label="t")
    assert report.tests_run == 2 and not report.alerts
    bad = good.assign(predicted=np.clip(p / 2.5, 0.01, 0.99))  # the model under-states the risk
    fired = drift.calibration_drift(
        "treatment", bad, date_column="date", reference_label="t"
    ).alerts
    assert {a.feature for a in fired} == {"calibration-in-the-large"}
    assert all(a.threshold == "95 % CI excludes 0" for a in fired)
    flat = good.assign(predicted=0.4 + (p - 0.4) * 3)  # too extreme: slope well below 1
    flat["predicted"] = flat["predicted"].clip(0.01, 0.99)
    slopes = drift.calibration_drift("t", flat, date_column="date", reference_label="t").alerts
    assert "calibration slope" in {a.feature for a in slopes}


@pytest.fixture(scope="module")
def trained_db(demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("drift") / "clinic.duckdb"))
    trained_demo(db, bootstrap=2, folds=2, command="pytest")
    return db


def _plant_older_patients(db: Path, n: int, year: int, age: int) -> None:
    """``n`` new patients diagnosed in ``year`` at ``age``, postmenopausal, otherwise copies of existing ones."""
    with store.open_store(db) as con:
        top = con.execute(
            "SELECT (SELECT max(person_id) FROM person), (SELECT max(condition_id) FROM condition_occurrence)"
        ).fetchall()[0]
        rows = con.execute(
            "SELECT p.person_id, p.birth_date, c.condition_id FROM person p JOIN condition_occurrence c USING (person_id) "
            "ORDER BY p.person_id LIMIT ?",
            [n],
        ).fetchall()
        for i, (pid, _born, cid) in enumerate(rows, start=1):
            new_id, new_cid = int(top[0]) + i, int(top[1]) + i
            diagnosed = dt.date(year, 1 + i % 12, 10)
            con.execute(
                "INSERT INTO person SELECT ?, 'MRN-PLANT-' || ?, given_name, family_name, ?, sex, site, 'post' "
                "FROM person WHERE person_id = ?",
                [new_id, new_id, dt.date(diagnosed.year - age, 1, 1), pid],
            )
            con.execute(
                "INSERT INTO condition_occurrence SELECT ?, ?, condition, ?, laterality, stage, grade, "
                "tumour_size_mm, positive_nodes, er_fmol, pr_fmol, er_positive, pr_positive, her2_positive "
                "FROM condition_occurrence WHERE condition_id = ?",
                [new_cid, new_id, diagnosed, cid],
            )


def _treatment(db: Path):
    model, card = load_model(model_dir_for(db))
    return model, card


def test_the_demo_store_without_plants_raises_no_covariate_alert(trained_db):
    with store.open_store(trained_db, read_only=True) as con:
        reports = drift_data.drift_reports(
            con, imaging_references={}, treatment=_treatment(trained_db)
        )
    covariates = next(r for r in reports if r.monitored == "inputs")
    assert covariates.tests_run > 20
    assert not covariates.alerts, [a.message for a in covariates.alerts]
    # the model was trained on this store up to its cut-off: no patient it never saw has reached
    # the horizon, and the report says so instead of showing in-sample figures as drift
    calibration = next(r for r in reports if r.monitored == "calibration")
    assert calibration.reference.startswith("perfect calibration")
    assert "patients the model never saw" in calibration.reference
    assert calibration.tests_run == 0 and not calibration.alerts
    assert calibration.notes == (
        "No patients diagnosed after training (2026-06-30) have reached the 5-year horizon yet: "
        "calibration on new patients cannot be checked until they do.",
    )
    reference = next(r for r in reports if r.monitored == drift_data.IN_SAMPLE)
    assert reference.reference.startswith("in-sample: the patients diagnosed by 2026-06-30")
    assert reference.tests_run > 0 and not reference.alerts  # a reference never alerts
    assert not reference.rows["alert"].any()


def test_older_patients_in_a_later_year_fire_the_age_alert(trained_db, tmp_path):
    db = Path(shutil.copy(trained_db, tmp_path / "planted.duckdb"))
    shutil.copytree(model_dir_for(trained_db), model_dir_for(db))
    _plant_older_patients(db, 60, 2030, age=75)
    with store.open_store(db, read_only=True) as con:
        reports = drift_data.drift_reports(con, imaging_references={}, treatment=_treatment(db))
    covariates = next(r for r in reports if r.monitored == "inputs")
    fired = {(a.window, a.feature) for a in covariates.alerts}
    assert ("2030", "age") in fired
    assert {w for w, _ in fired} == {"2030"}  # only the planted year
    assert ("2030", "postmenopausal") in fired  # planted as all postmenopausal too


def test_reads_written_at_ingest_come_back_per_window(trained_db, tmp_path):
    db = Path(shutil.copy(trained_db, tmp_path / "reads.duckdb"))
    reference = _imaging_reference()
    reads = _reads(reference, ["2026-01", "2026-02"], 30, seed=4)
    with store.open_store(db) as con:
        for i, row in enumerate(reads.itertuples(index=False)):
            con.execute(
                "INSERT INTO ai_read_input (sop_instance_uid, person_id, model_name, model_version, study_date, "
                "read_at, refused, score, feature_distance, statistics_distance, "
                + ", ".join(STAT_COLUMNS)
                + ") VALUES (?, 1, 'mammography', '1.0.0', ?, now(), false, ?, 0.5, 0.5, "
                + ", ".join("?" * len(STAT_COLUMNS))
                + ")",
                [
                    f"1.2.{i}",
                    row.date,
                    row.score,
                    *[getattr(row, c.removeprefix("stat_")) for c in STAT_COLUMNS],
                ],
            )
    with store.open_store(db, read_only=True) as con:
        frame = drift_data.imaging_inputs(con, "mammography")
        assert len(frame) == 60 and list(frame.columns) == ["date", *drift_data.IMAGING_FEATURES]
        reports = drift_data.drift_reports(
            con, imaging_references={"mammography": (reference, "phantoms")}, treatment=None
        )
    assert reports[0].tests_run == 2 * len(drift_data.IMAGING_FEATURES) and not reports[0].alerts


def test_calibration_counts_only_patients_who_could_reach_the_horizon(trained_db):
    """A year diagnosed less than one horizon before the cut-off has a known status only for the
    patients who already had an event: its observed risk would read high (a false alert from
    selection, 68 % against 46 % in one demo year). Only patients whose horizon has passed count."""
    model, _ = _treatment(trained_db)
    with store.open_store(trained_db, read_only=True) as con:
        frame = drift_data.calibration_inputs(con, model, model.horizon_days)
        cutoff = pd.Timestamp(
            con.execute("SELECT value FROM clinic_metadata WHERE key = 'data_cutoff'").fetchall()[
                0
            ][0]
        )
        recent = con.execute(
            "SELECT count(*) FROM cohort_base WHERE event AND diagnosis_date > ?",
            [cutoff - pd.Timedelta(days=model.horizon_days)],
        ).fetchall()[0][0]
    assert len(frame) > 20 and recent > 0  # recent events exist and are not counted
    reached = pd.to_datetime(frame["date"]) + pd.to_timedelta(model.horizon_days, unit="D")
    assert (reached <= cutoff).all()


def test_calibration_scores_only_patients_diagnosed_after_the_training_data(trained_db, tmp_path):
    """A model trained on a clinic as it stood in mid-2019, monitored on a store whose patients
    run to mid-2026: only those diagnosed after its data ended, followed for five years, count."""
    earlier = tmp_path / "clinic2019.duckdb"
    write_demo(earlier, patients=300, seed=11, rank_worklist=False, cutoff="2019-06-30")
    train_clinic_model(earlier, bootstrap=2, folds=2, command="pytest")
    model, card = _treatment(earlier)
    assert drift_data.data_end(card) == dt.date(2019, 6, 30)  # from the card's lineage
    with store.open_store(trained_db, read_only=True) as con:
        fresh = drift_data.calibration_inputs(
            con, model, model.horizon_days, diagnosed_after=dt.date(2019, 6, 30)
        )
        reports = drift_data.calibration_reports(con, model, card, model.horizon_days)
        cutoff = pd.Timestamp(drift_data.data_cutoff(con))
    dates = pd.to_datetime(fresh["date"])
    assert len(fresh) >= 20
    assert (dates > pd.Timestamp("2019-06-30")).all()
    assert (dates + pd.to_timedelta(model.horizon_days, unit="D") <= cutoff).all()
    monitor, reference = reports
    assert monitor.monitored == "calibration" and "(2019-06-30)" in monitor.reference
    assert int(monitor.rows["n"].sum()) == len(fresh)  # every new patient, none of the others
    assert set(monitor.rows["window"]) <= {"2019", "2020", "2021"}
    assert not any("No patients diagnosed after training" in n for n in monitor.notes)
    assert reference.monitored == drift_data.IN_SAMPLE and not reference.alerts
    assert set(reference.rows["window"]) <= {str(y) for y in range(2009, 2020)}
