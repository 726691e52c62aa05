"""analytics.treatment.model.outcome_model on the demo clinic: seeded, intervals around their points."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.outcome_model import OutcomeModel
from analytics.treatment.recommend import recommend


@pytest.fixture(scope="module")
def clinic_table(demo_db):
    from analytics import store

    with store.open_store(demo_db, read_only=True) as con:
        table, _ = clinic_training_table(con)
    return table


def test_same_seed_same_model_other_seed_other_model(clinic_table):
    x = clinic_table.covariates.iloc[:40]
    a = OutcomeModel(bootstrap=2, seed=11).fit(clinic_table)
    b = OutcomeModel(bootstrap=2, seed=11).fit(clinic_table)
    c = OutcomeModel(bootstrap=2, seed=12).fit(clinic_table)
    assert np.array_equal(a.rfs_5y_replicates(x), b.rfs_5y_replicates(x))
    assert a.background_.equals(b.background_)
    assert not np.array_equal(a.rfs_5y_replicates(x), c.rfs_5y_replicates(x))


def test_every_interval_contains_its_point_estimate(clinic_table):
    model = OutcomeModel(bootstrap=4, seed=2).fit(clinic_table)
    r = recommend(model, clinic_table.covariates)
    ci = r.benefit_ci
    assert ((ci[:, 0] <= r.benefit) & (r.benefit <= ci[:, 1])).all()
    assert (r.benefit >= 0).all() and (r.benefit_se > 0).any()
    for i in range(0, r.n, 17):
        p = r.patient(i)
        for o in p.options:
            assert o.rfs_ci.contains(o.rfs)
            assert o.rmst_ci_days.contains(o.rmst_days)
        assert (p.recommended is None) == (p.benefit_ci.lo <= 0)
    # RMST to 5 years lies between 0 and 5 years, and a higher 5-year RFS means a longer RMST on average
    assert ((r.rmst_days > 0) & (r.rmst_days <= model.horizon_days)).all()
    assert np.corrcoef(r.rfs_5y.ravel(), r.rmst_days.ravel())[0, 1] > 0.8


def test_bootstrap_needs_at_least_two_refits(clinic_table):
    with pytest.raises(ValueError, match="at least two"):
        OutcomeModel(bootstrap=1).fit(clinic_table)
