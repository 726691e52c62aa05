"""analytics.treatment.model.forest: stacked trees reach xgboost's leaves; the compiled model predicts the same."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.treatment.data import gbsg2_table
from analytics.treatment.model import forest as treatment_forest
from analytics.treatment.model.forest import ForestMismatchError, StackedForest
from analytics.treatment.model.outcome_model import SMALL_BATCH_ROWS, OutcomeModel


def _boosters(depths=(1, 3, 4), n=300, d=5, seed=0):
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X[:, 0] - 2 * (X[:, 1] > 0.3) + X[:, 2] * X[:, 3] + rng.normal(scale=0.3, size=n)
    models = []
    for i, depth in enumerate(depths):
        # few rows per leaf allowed: some branches stop early, so trees have leaves at mixed depths
        m = xgb.XGBRegressor(
            n_estimators=30,
            max_depth=depth,
            learning_rate=0.3,
            min_child_weight=20.0 * i + 1,
            n_jobs=1,
            random_state=i,
            tree_method="hist",
        )
        models.append(m.fit(X, y).get_booster())
    return models, X


def test_stacked_trees_equal_each_booster_with_mixed_depths_and_missing_values():
    boosters, X = _boosters()
    X = X.copy()
    X[::5, 1] = np.nan  # missing values follow default_left
    forest = StackedForest.from_boosters(boosters, check_rows=X[:50])
    expected = np.stack([b.inplace_predict(X.astype(np.float32)) for b in boosters], axis=1)
    assert forest.n_models == 3 and forest.depth == 4
    assert forest.predict(X) == pytest.approx(expected, abs=1e-5)
    assert np.std(expected[:, 0]) > 0.1  # not a constant model


def test_predict_in_blocks_gives_the_same_rows(monkeypatch):
    boosters, X = _boosters(depths=(2,))
    whole = StackedForest.from_boosters(boosters).predict(X)
    monkeypatch.setattr(treatment_forest, "BLOCK_ELEMENTS", 1)  # one row per block
    assert np.array_equal(StackedForest.from_boosters(boosters).predict(X), whole)


def test_a_forest_that_disagrees_with_xgboost_is_refused(monkeypatch):
    boosters, X = _boosters(depths=(2,))
    monkeypatch.setattr(treatment_forest, "_base_score", lambda learner: 0.0)  # a misread intercept
    with pytest.raises(ForestMismatchError, match="differ from xgboost"):
        StackedForest.from_boosters(boosters, check_rows=X[:20])


@pytest.fixture(scope="module")
def gbsg2_model():
    table = gbsg2_table()
    return table, OutcomeModel(bootstrap=4, seed=9, background_size=30).fit(table)


def test_compiled_model_gives_the_same_replicates_for_one_patient(gbsg2_model):
    table, model = gbsg2_model
    x = table.covariates.iloc[[17]]
    rfs, rmst = model.predict_replicates(x)
    model.compile()
    try:
        assert model.stacked_members_ is not None
        fast_rfs, fast_rmst = model.predict_replicates(x)
    finally:
        model.stacked_members_ = None
    assert fast_rfs.shape == rfs.shape == (4, 1, 2)
    assert fast_rfs == pytest.approx(rfs, abs=1e-5)
    assert fast_rmst == pytest.approx(rmst, abs=0.05)  # days; float32 vs float64 sums


class _RefusingForest:
    def predict(self, X):
        raise AssertionError("stacked trees used for a large batch")


def test_compiled_model_sends_large_batches_to_xgboost(gbsg2_model):
    table, model = gbsg2_model
    model.stacked_members_ = _RefusingForest()
    try:
        n = SMALL_BATCH_ROWS // (len(model.options_) * len(model.main_.horizons_days)) + 1
        rfs, _ = model.predict_replicates(table.covariates.iloc[:n])
        assert rfs.shape == (4, n, 2)
        with pytest.raises(AssertionError, match="large batch"):
            model.predict_replicates(table.covariates.iloc[:1])  # and small ones to the stack
    finally:
        model.stacked_members_ = None


def test_compile_falls_back_with_a_warning_when_the_forest_disagrees(gbsg2_model, monkeypatch):
    _, model = gbsg2_model
    monkeypatch.setattr(treatment_forest, "_base_score", lambda learner: 0.0)
    with pytest.warns(RuntimeWarning, match="one by one"):
        model.compile()
    assert model.stacked_members_ is None
