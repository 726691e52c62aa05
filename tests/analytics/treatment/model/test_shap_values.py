"""analytics.treatment.model.shap_values: SHAP of the benefit is exact (brute-force Shapley) and additive."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analytics.treatment.data import gbsg2_table
from analytics.treatment.model.outcome_model import OutcomeModel
from analytics.treatment.model.shap_values import BenefitExplainer
from analytics.treatment.recommend import recommend


@pytest.fixture(scope="module")
def gbsg2_model():
    table = gbsg2_table()
    return table, OutcomeModel(bootstrap=2, seed=3, background_size=20).fit(table)


def _brute_force_shapley(
    model: OutcomeModel, x, better: str, worse: str
) -> tuple[float, np.ndarray]:
    """Interventional Shapley values of S5(x, better) - S5(x, worse) by enumerating every coalition."""
    bg = model.background_.to_numpy()
    xv = x.to_numpy()[0]
    d = xv.size

    def value(coalition: tuple[int, ...]) -> float:
        rows = bg.copy()
        rows[:, list(coalition)] = xv[list(coalition)]
        frame = model.background_.__class__(rows, columns=model.background_.columns)
        rfs = model.rfs_5y(frame)
        i, j = model.options_.index(better), model.options_.index(worse)
        return float(np.mean(rfs[:, i] - rfs[:, j]))

    v = {s: value(s) for r in range(d + 1) for s in itertools.combinations(range(d), r)}
    phi = np.zeros(d)
    for j in range(d):
        others = [k for k in range(d) if k != j]
        for r in range(d):
            weight = math.factorial(r) * math.factorial(d - r - 1) / math.factorial(d)
            for s in itertools.combinations(others, r):
                phi[j] += weight * (v[tuple(sorted((*s, j)))] - v[s])
    return v[()], phi


def test_treeshap_of_the_benefit_equals_brute_force_shapley(gbsg2_model):
    table, model = gbsg2_model
    x = table.covariates.iloc[[11]]
    s = BenefitExplainer(model).explain(x, "hormonal therapy", "no hormonal therapy")
    base, phi = _brute_force_shapley(model, x, "hormonal therapy", "no hormonal therapy")
    assert s.base_value[0] == pytest.approx(base, abs=1e-5)
    assert s.values[0] == pytest.approx(phi, abs=1e-5)


def test_base_plus_contributions_is_the_predicted_benefit_for_every_patient(gbsg2_model):
    table, model = gbsg2_model
    cov = table.covariates.iloc[:120]
    r = recommend(model, cov)
    opts = np.asarray(model.options_, dtype=object)
    s = BenefitExplainer(model).explain(cov, opts[r.best], opts[r.next_best])
    assert s.benefit == pytest.approx(r.benefit, abs=1e-7)  # what is explained is what is shown
    assert s.additivity_error < 1e-5
    assert np.abs(s.values).sum() > 0  # not trivially zero


def test_swapping_the_options_negates_everything(gbsg2_model):
    table, model = gbsg2_model
    x = table.covariates.iloc[:5]
    ex = BenefitExplainer(model)
    a = ex.explain(x, "hormonal therapy", "no hormonal therapy")
    b = ex.explain(x, "no hormonal therapy", "hormonal therapy")
    assert b.values == pytest.approx(-a.values, abs=1e-7)
    assert b.base_value == pytest.approx(-a.base_value, abs=1e-7)


def test_patient_waterfall_uses_clinical_names_and_largest_first(gbsg2_model):
    table, model = gbsg2_model
    s = BenefitExplainer(model).explain(
        table.covariates.iloc[[0]], "hormonal therapy", "no hormonal therapy"
    )
    w = s.patient(0)
    assert (w.better, w.worse) == ("hormonal therapy", "no hormonal therapy")
    assert {c.feature for c in w.contributions} == set(table.feature_labels)
    assert any("(mm)" in c.feature for c in w.contributions)
    sizes = [abs(c.shap) for c in w.contributions]
    assert sizes == sorted(sizes, reverse=True)
    assert w.base_value + sum(c.shap for c in w.contributions) == pytest.approx(
        s.benefit[0], abs=1e-5
    )
    assert w.additivity_error == pytest.approx(s.additivity_error)  # one patient: hers is the max
    assert w.to_json()["explains"] == "benefit of hormonal therapy over no hormonal therapy"
    assert list(s.importance()["feature"])[0] in table.feature_labels


def test_only_pseudo_value_trees_are_explained_in_outcome_units():
    table = gbsg2_table()
    cox = OutcomeModel(learner="cox_ph", bootstrap=2).fit(table.subset(np.arange(200)))
    with pytest.raises(TypeError, match="xgb_pseudo"):
        BenefitExplainer(cox)
