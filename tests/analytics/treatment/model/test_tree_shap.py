"""analytics.treatment.model.tree_shap: the lookup tables give shap's interventional TreeSHAP, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.treatment.data import gbsg2_table
from analytics.treatment.model.outcome_model import OutcomeModel
from analytics.treatment.model.shap_values import BenefitExplainer
from analytics.treatment.model.tree_shap import ShallowTreeShap, UnsupportedTreesError
from analytics.treatment.recommend import recommend


def _booster(depth: int, seed: int = 0, n: int = 400):
    """Trees on 4 covariates and 2 'fixed' design columns (like the option indicator and horizon)."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [rng.normal(size=(n, 4)), rng.integers(0, 2, n), rng.choice([1.0, 2.0, 3.0], n)]
    )
    y = (
        X[:, 0] * (X[:, 4] > 0.5)
        + (X[:, 1] > 0) * X[:, 5]
        + X[:, 2] * X[:, 0]
        + rng.normal(scale=0.2, size=n)
    )
    model = xgb.XGBRegressor(
        n_estimators=40,
        max_depth=depth,
        learning_rate=0.3,
        min_child_weight=30,
        n_jobs=1,
        random_state=seed,
        tree_method="hist",
    )
    return model.fit(X, y).get_booster(), X


@pytest.mark.parametrize("depth", [1, 2])
def test_tables_equal_shap_interventional_treeshap(depth):
    import shap

    booster, X = _booster(depth)
    tail = np.array([1.0, 2.0])  # the fixed columns' values
    background = X[:50, :4]
    x = X[100:160, :4].copy()
    x[::7, 1] = np.nan  # missing values follow default_left
    tables = ShallowTreeShap(booster, 4, tail, background)
    full = lambda a: np.column_stack([a, np.tile(tail, (len(a), 1))])  # noqa: E731
    reference = shap.TreeExplainer(
        booster, data=full(background), feature_perturbation="interventional"
    )
    expected = np.asarray(reference.shap_values(full(x), check_additivity=False))
    assert tables.shap_values(x) == pytest.approx(expected[:, :4], abs=1e-6)
    assert np.abs(expected[:, 4:]).max() < 1e-9  # fixed columns: no attribution
    assert tables.expected_value == pytest.approx(
        float(np.ravel(reference.expected_value)[0]), abs=1e-6
    )
    prediction = booster.inplace_predict(full(x).astype(np.float32))
    assert tables.expected_value + tables.shap_values(x).sum(axis=1) == pytest.approx(
        prediction, abs=1e-5
    )
    assert np.abs(tables.shap_values(x)).sum() > 0


def test_deeper_trees_are_refused_and_the_explainer_falls_back_to_shap():
    booster, X = _booster(3)
    with pytest.raises(UnsupportedTreesError):
        ShallowTreeShap(booster, 4, np.array([1.0, 2.0]), X[:20, :4])


def test_both_engines_explain_the_benefit_identically():
    table = gbsg2_table()
    model = OutcomeModel(bootstrap=2, seed=4, background_size=40).fit(table)
    cov = table.covariates.iloc[:80]
    r = recommend(model, cov)
    opts = np.asarray(model.options_, dtype=object)
    fast = BenefitExplainer(model).explain(cov, opts[r.best], opts[r.next_best])
    slow = BenefitExplainer(model, engine="shap").explain(cov, opts[r.best], opts[r.next_best])
    assert fast.values == pytest.approx(slow.values, abs=1e-7)
    assert fast.base_value == pytest.approx(slow.base_value, abs=1e-7)
    assert fast.additivity_error < 1e-5
    with pytest.raises(ValueError, match="engine"):
        BenefitExplainer(model, engine="kernel")
