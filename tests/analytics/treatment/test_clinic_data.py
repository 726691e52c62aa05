"""analytics.treatment.clinic_data: the clinic's model inputs from the store, without its truth schema."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from analytics import store
from analytics.cohorts import summary as cohort_summary
from analytics.treatment.clinic_data import (
    CLINIC_OPTIONS,
    FEATURE_COLUMNS,
    MissingCovariatesError,
    UnknownPatientError,
    clinic_training_table,
    patient_covariates,
)


def test_training_table_uses_the_cohort_pages_rfs_definition(demo_con):
    table, ids = clinic_training_table(demo_con)
    assert table.options == CLINIC_OPTIONS and 250 <= table.n <= 300
    assert (
        list(table.covariates.columns) == FEATURE_COLUMNS and table.covariates.notna().all().all()
    )
    ref = cohort_summary.rfs_sample(demo_con).set_index("person_id").loc[ids]
    assert (ref["rfs_days"].to_numpy() == table.time_days).all()
    assert (ref["event"].to_numpy() == table.event).all()
    assert (ref["regimen"].to_numpy() == table.treatment).all()


def test_one_patient_reads_the_same_covariates_as_training(demo_con):
    table, ids = clinic_training_table(demo_con)
    row = patient_covariates(demo_con, int(ids[5]))
    assert row.iloc[0].to_numpy() == pytest.approx(table.covariates.iloc[5].to_numpy())


def test_training_never_needs_the_truth_schema(demo_db, tmp_path):
    copy = tmp_path / "no_truth.duckdb"
    shutil.copyfile(demo_db, copy)
    with store.open_store(copy) as con:
        con.execute("DROP TABLE truth.potential_outcome")
        con.execute("DROP TABLE truth.patient_parameters")
    with store.open_store(copy, read_only=True) as con:
        table, _ = clinic_training_table(con)
    assert table.n > 250


def test_unknown_patient(demo_con):
    with pytest.raises(UnknownPatientError, match="no patient with id 999999"):
        patient_covariates(demo_con, 999_999)


def test_patient_without_a_diagnosis_is_refused_naming_the_missing_values(tiny):
    tiny.person(1, diagnosis=None)
    with pytest.raises(MissingCovariatesError) as err:
        patient_covariates(tiny.con, 1)
    assert "Tumour size (mm)" in str(err.value) and "no diagnosis recorded" in str(err.value)
    assert "does not impute" in str(err.value)


def test_a_complete_hand_made_patient(tiny):
    tiny.person(2, birth="1960-06-15", diagnosis="2020-01-01", menopausal_status="post")
    row = patient_covariates(tiny.con, 2).iloc[0]
    assert (row["age"], row["postmenopausal"], row["tumour_size_mm"], row["grade"]) == (
        59,
        1,
        25,
        2,
    )
    assert (row["positive_nodes"], row["er_fmol"], row["pr_fmol"], row["her2_positive"]) == (
        3,
        60,
        12,
        0,
    )
    assert np.isfinite(row.to_numpy()).all()
