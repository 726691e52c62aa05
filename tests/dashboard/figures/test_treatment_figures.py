"""dashboard.figures.treatment: clinical labels, a waterfall that adds up, curves that say their n."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analytics.treatment.model.shap_values import BenefitWaterfall, Contribution
from analytics.treatment.recommend import Interval, OptionOutcome
from dashboard.figures import treatment as treatment_figures


@pytest.mark.parametrize(
    ("label", "value", "text"),
    [
        ("Tumour size (mm)", 22.0, "Tumour size = 22 mm"),
        ("Age at diagnosis (years)", 61.0, "Age at diagnosis = 61 years"),
        ("Oestrogen receptor (fmol/mg)", 56.5, "Oestrogen receptor = 56.5 fmol/mg"),
        ("Positive lymph nodes (count)", 8.0, "Positive lymph nodes = 8"),
        ("Tumour grade (1-3)", 2.0, "Tumour grade = 2"),
        ("Postmenopausal (1 = yes)", 1.0, "Postmenopausal = yes"),
        ("HER2-positive (1 = yes)", 0.0, "HER2-positive = no"),
        ("biomarker", 0.25, "biomarker = 0.25"),  # a user's CSV column: no unit
    ],
)
def test_feature_values_read_like_a_clinician_writes_them(label, value, text):
    assert treatment_figures.feature_value_text(label, value) == text


CONTRIBUTIONS = (
    Contribution("Positive lymph nodes (count)", 8.0, 0.011),
    Contribution("Age at diagnosis (years)", 70.0, -0.004),
    Contribution("Tumour size (mm)", 20.0, 0.002),
    Contribution("Tumour grade (1-3)", 2.0, 0.001),
)
SHAP = BenefitWaterfall("chemo_endocrine", "endocrine", 0.02, CONTRIBUTIONS, 0.0)
BENEFIT = 0.02 + 0.011 - 0.004 + 0.002 + 0.001


def test_waterfall_starts_at_the_base_value_and_ends_at_the_benefit_in_points():
    fig = treatment_figures.benefit_waterfall_figure(SHAP, BENEFIT)
    trace = fig.data[0]
    assert list(trace.measure) == [
        "absolute",
        "relative",
        "relative",
        "relative",
        "relative",
        "total",
    ]
    assert trace.y[0] == "average of reference patients" and trace.y[-1] == "this patient"
    assert trace.y[1] == "Positive lymph nodes = 8"
    assert trace.x[0] == pytest.approx(2.0) and trace.x[-1] == pytest.approx(100 * BENEFIT)
    assert sum(trace.x[:-1]) == pytest.approx(trace.x[-1])  # the bars add up to the total
    assert (
        "chemotherapy + endocrine" in fig.layout.title.text
        and "percentage points" in fig.layout.xaxis.title.text
    )
    json.loads(fig.to_json())


def test_waterfall_folds_the_smallest_features_into_one_bar_that_keeps_the_sum():
    fig = treatment_figures.benefit_waterfall_figure(SHAP, BENEFIT, max_features=2)
    trace = fig.data[0]
    assert trace.y[3] == "2 other features" and trace.x[3] == pytest.approx(0.3)
    assert sum(trace.x[:-1]) == pytest.approx(trace.x[-1])


def test_waterfall_without_contributions_says_so():
    fig = treatment_figures.benefit_waterfall_figure(BenefitWaterfall("a", "b", 0.0, (), 0.0), 0.0)
    assert "No explanation" in fig.layout.annotations[0].text


def test_options_figure_draws_each_option_with_its_interval_and_highlights_one():
    options = [
        OptionOutcome("endocrine", 0.56, Interval(0.44, 0.69), 1345.0, Interval(1200.0, 1490.0)),
        OptionOutcome("chemotherapy", 0.52, Interval(0.38, 0.67), 1274.0, Interval(1100.0, 1450.0)),
    ]
    fig = treatment_figures.treatment_options_figure(options, highlight="endocrine")
    by_option = {t.y[0]: t for t in fig.data}
    endo = by_option["endocrine"]
    assert endo.x[0] == pytest.approx(56.0)
    assert endo.error_x.arrayminus[0] == pytest.approx(12.0) and endo.error_x.array[
        0
    ] == pytest.approx(13.0)
    assert endo.marker.color != by_option["chemotherapy"].marker.color
    assert (
        treatment_figures.treatment_options_figure([]).layout.annotations[0].text
        == "No options to compare"
    )


def test_similar_patients_legend_carries_each_curve_n():
    km = pd.DataFrame(
        {
            "group": ["endocrine"] * 2 + ["chemotherapy"] * 2,
            "time_days": [0.0, 365.0] * 2,
            "survival": [1.0, 0.9, 1.0, 0.8],
            "ci_lower": [1.0, 0.8, 1.0, 0.6],
            "ci_upper": [1.0, 0.95, 1.0, 0.9],
            "at_risk": [40, 30, 12, 8],
        }
    )
    counts = pd.DataFrame(
        {"group": ["chemotherapy", "endocrine"], "patients": [12, 1040], "events": [3, 90]}
    )
    fig = treatment_figures.similar_patients_figure(km, counts, "stage II, ER-positive")
    names = {t.name for t in fig.data if t.showlegend is not False}
    assert names == {"endocrine (n=1,040)", "chemotherapy (n=12)"}
    assert "stage II, ER-positive" in fig.layout.title.text


def test_similar_patients_figure_without_match_or_diagnosis_says_so():
    empty = pd.DataFrame(
        columns=["group", "time_days", "survival", "ci_lower", "ci_upper", "at_risk"]
    )
    counts = pd.DataFrame(columns=["group", "patients", "events"])
    assert (
        "No similar patients"
        in treatment_figures.similar_patients_figure(empty, counts, "stage I, ER-negative")
        .layout.annotations[0]
        .text
    )
    assert (
        "No diagnosis"
        in treatment_figures.similar_patients_figure(empty, counts, None).layout.annotations[0].text
    )
