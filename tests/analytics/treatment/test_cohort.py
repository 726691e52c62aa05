"""The treatment model over the cohort: the same SHAP values as the per-patient waterfalls, summarised honestly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from analytics import store
from analytics.treatment.clinic import load_clinic_model, recommendation_for
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.cohort import explain_cohort
from analytics.treatment.recommend import NO_CLEAR_DIFFERENCE


@pytest.fixture(scope="module")
def clinic_db(demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("treatment_cohort") / "clinic.duckdb"
    shutil.copyfile(demo_db, path)
    trained_demo(path, bootstrap=4)
    return path


def test_cohort_shap_is_each_patients_waterfall_and_adds_up(clinic_db):
    clinic = load_clinic_model(clinic_db)
    with store.open_store(clinic_db, read_only=True) as con:
        cohort = explain_cohort(clinic, con)
        _, ids = clinic_training_table(con)
        one = recommendation_for(clinic, con, int(ids[7]))
    assert cohort.patients == len(ids) and cohort.patients_total >= cohort.patients
    assert cohort.shap.additivity_error < 1e-4
    by_feature = {c.feature: c.shap for c in one.shap.contributions}
    labels = [f.label for f in cohort.shap.features]
    assert np.allclose([by_feature[label] for label in labels], cohort.shap.values[7], atol=1e-6)
    assert cohort.recommended[7] == (one.recommended or NO_CLEAR_DIFFERENCE)

    importance = cohort.importance()
    assert list(importance["mean_abs_pp"]) == sorted(importance["mean_abs_pp"], reverse=True)
    assert np.isclose(
        importance["mean_abs_pp"].iloc[0], 100 * np.abs(cohort.shap.values).mean(axis=0).max()
    )

    counts = cohort.recommendation_counts()
    assert counts["patients"].sum() == cohort.patients and np.isclose(counts["share"].sum(), 1.0)
    if NO_CLEAR_DIFFERENCE in set(counts["recommendation"]):
        assert counts["recommendation"].iloc[-1] == NO_CLEAR_DIFFERENCE

    swarm = cohort.beeswarm(max_points=100)
    assert len(swarm) == 100 * len(labels) and swarm["value_rank"].between(0, 1).all()
