"""analytics.treatment.model.learners and treatment_metrics: curves that are survival curves, GBSG2 figures in range."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index

from analytics.survival.constants import HORIZON_5Y_DAYS
from analytics.treatment.data import gbsg2_table
from analytics.treatment.model.learners import (
    LEARNERS,
    XGBPseudoLearner,
    breslow_cumulative_hazard,
    make_learner,
)
from analytics.treatment.model.metrics import (
    cross_validate,
    evaluation_grid,
    harrell_c,
    stratified_folds,
)


@pytest.fixture(scope="module")
def gbsg2():
    return gbsg2_table()


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_every_learner_predicts_a_survival_curve_per_option(gbsg2, name):
    learner = make_learner(name, seed=1).fit(gbsg2)
    times = np.array([0.0, 200, 700, 1500, HORIZON_5Y_DAYS])
    for option in gbsg2.options:
        s = learner.predict_survival(gbsg2.covariates.iloc[:50], option, times)
        assert s.shape == (50, 5)
        assert ((s >= 0) & (s <= 1)).all() and (np.diff(s, axis=1) <= 1e-12).all()
        assert s[:, 0] == pytest.approx(1.0)


def test_pseudo_value_trees_raw_output_is_the_five_year_survival(gbsg2):
    learner = XGBPseudoLearner(seed=2).fit(gbsg2)
    x = gbsg2.covariates.iloc[:40]
    raw = learner.raw_output(x, "hormonal therapy", HORIZON_5Y_DAYS)
    curve = learner.predict_survival(x, "hormonal therapy", [HORIZON_5Y_DAYS])[:, 0]
    inside = (raw > 0) & (raw < 1)
    assert inside.mean() > 0.9
    # equal where no clipping or monotone correction applies
    assert np.median(np.abs(raw[inside] - curve[inside])) < 1e-6


def test_breslow_baseline_matches_lifelines_cox(gbsg2):
    df = gbsg2.covariates.assign(time=gbsg2.time_days, event=gbsg2.event.astype(int))
    cph = CoxPHFitter().fit(df, "time", "event")
    lp = cph.predict_log_partial_hazard(gbsg2.covariates).to_numpy()  # centred linear predictor
    times, h0 = breslow_cumulative_hazard(gbsg2.time_days, gbsg2.event, lp)
    ref = cph.baseline_cumulative_hazard_.iloc[:, 0]
    assert h0 == pytest.approx(ref.loc[times].to_numpy(), rel=1e-6)


def test_harrell_c_agrees_with_lifelines(gbsg2):
    risk = np.random.default_rng(0).random(gbsg2.n) + gbsg2.covariates["pnodes"].to_numpy() / 10
    ours = harrell_c(gbsg2.time_days, gbsg2.event, risk)
    assert ours == pytest.approx(concordance_index(gbsg2.time_days, -risk, gbsg2.event), abs=1e-9)


def test_folds_are_stratified_and_partition_the_patients(gbsg2):
    folds = stratified_folds(gbsg2, 5, seed=9)
    allrows = np.sort(np.concatenate(folds))
    assert (allrows == np.arange(gbsg2.n)).all()
    for f in folds:
        assert abs(gbsg2.event[f].mean() - gbsg2.event.mean()) < 0.03
        assert set(gbsg2.treatment[f]) == set(gbsg2.options)


@pytest.mark.parametrize("name", ["xgb_pseudo", "cox_ph"])
def test_gbsg2_cross_validated_concordance_is_in_the_published_range(gbsg2, name):
    # Cox on GBSG2: in-sample ~0.69, cross-validated ~0.67; DeepSurv's GBSG test ~0.67
    cv = cross_validate(
        gbsg2,
        lambda s: make_learner(name, s),
        name,
        stratified_folds(gbsg2, 5, 7),
        evaluation_grid(gbsg2),
    )
    assert 0.64 <= cv.harrell.mean() <= 0.73
    assert 0.63 <= cv.uno.mean() <= 0.73
    assert 0.15 <= cv.ibs.mean() <= 0.21  # an uninformative 0.5 curve scores 0.25
    assert np.isfinite(cv.oof_rfs_5y).all()
