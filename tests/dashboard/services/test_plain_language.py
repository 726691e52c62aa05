"""Plain-language summaries say exactly what the figures say, uncertainty in words and numbers."""

from __future__ import annotations

import pytest

from dashboard.services import plain_language as pl
from tests.analytics.treatment.examples import recommendation


@pytest.mark.parametrize(
    ("p", "words"),
    [
        (0.99, "very likely"),
        (0.82, "likely"),
        (0.65, "more likely than not"),
        (0.5, "about as likely as not"),
        (0.3, "unlikely"),
        (0.06, "very unlikely"),
        (0.01, "extremely unlikely"),
    ],
)
def test_likelihood_words_follow_the_scale(p, words):
    assert pl.likelihood_words(p) == words


def test_a_confident_malignant_read_names_figure_region_and_who_decides():
    text = pl.ai_read_summary(finding="malignant", probability=0.82, diameter_mm=23.4)
    assert "likely to show **malignant** (82 %, calibrated)" in text
    assert "23 mm" in text and "highlighted region" in text and "radiologist should confirm" in text
    assert "not sure" not in text


def test_an_uncertain_or_normal_read_says_so():
    unsure = pl.ai_read_summary(finding="benign", probability=0.65)
    assert "not sure" in unsure and "more likely than not" in unsure
    normal = pl.ai_read_summary(finding="normal", probability=0.97)
    assert "no lesion" in normal and "highlighted" not in normal


def test_saliency_summary_warns_when_the_sanity_check_failed():
    assert "failed the sanity check" in pl.saliency_summary(
        method_title="Grad-CAM", sanity="failed", pointing_game=0.9
    )
    passed = pl.saliency_summary(method_title="Grad-CAM", sanity="passed", pointing_game=0.91)
    assert "passed" in passed and "91 %" in passed


def test_recommendation_summary_in_natural_frequencies():
    clear = pl.recommendation_summary(recommendation(clear=True))  # 71 vs 64 in 100, CI 2 to 12
    assert (
        "about 71" in clear
        and "about 64" in clear
        and "favours **chemotherapy + endocrine**" in clear
    )
    assert "2 to 12" in clear and "not assigned at random" in clear
    unclear = pl.recommendation_summary(recommendation(clear=False))
    assert "does not pick an option" in unclear and "favours" not in unclear
    assert "stretched" not in clear and "stretched" not in unclear


def test_the_horizon_and_the_options_are_named_as_people_say_them():
    """A 3-year model's sentence says "after three years", not the 5 years written in code, and the
    options read "chemotherapy + endocrine", not their store code."""
    from dataclasses import replace

    rec = replace(recommendation(clear=True), horizon_days=3 * 365.25)
    text = pl.recommendation_summary(rec)
    assert "after three years" in text and "five years" not in text
    assert "chemo_endocrine" not in text and "chemotherapy + endocrine" in text
    assert pl.statement(rec).startswith("chemotherapy + endocrine: 3-year RFS")
    assert "chemo_endocrine" in rec.statement  # the CLI's JSON and text keep the codes
    assert pl.horizon_words(365.25) == "one year"
    assert pl.horizon_words(1.5 * 365.25) == "18 months"
    assert pl.horizon_words(100) == "100 days"


def test_a_range_stretched_to_hold_the_point_says_the_estimates_disagree():
    """The doubly robust interval +5 to +41 did not hold the model's +2.3: shown as +2.3 to +41 (the
    point at one end), and the words say why instead of leaving a lopsided range unexplained."""
    from dataclasses import replace

    from analytics.treatment.recommend import Interval

    rec = replace(recommendation(clear=True), benefit=0.023, benefit_ci=Interval(0.023, 0.412))
    assert rec.benefit_ci_widened and not recommendation(clear=True).benefit_ci_widened
    text = pl.recommendation_summary(rec)
    assert (
        "stretched to hold both" in text and "about 2 more in 100 (plausible range 2 to 41)" in text
    )
    assert "widened to hold the point estimate" in rec.statement
    assert rec.to_json()["benefit_ci_widened"] is True


def test_a_point_near_one_end_of_its_range_says_the_estimates_disagree():
    """+3.1 with range +0.3 to +34.6 (seen on the demo): the point is the outcome model's, the range
    the doubly robust forest's; the words say the second estimate is higher."""
    from dataclasses import replace

    from analytics.treatment.recommend import Interval

    rec = replace(recommendation(clear=True), benefit=0.031, benefit_ci=Interval(0.003, 0.346))
    assert not rec.benefit_ci_widened
    text = pl.recommendation_summary(rec)
    assert "near one end of that range" in text and "puts the difference higher" in text
    centred = pl.recommendation_summary(recommendation(clear=True))  # 7 in 2 to 12
    assert "near one end" not in centred


def test_forecast_summary_handles_what_is_known_and_what_is_not():
    text = pl.forecast_summary(
        rfs_6m=0.9,
        progression_date="2027-03-01",
        last_mm=20,
        forecast_mm=26,
        forecast_lo=21,
        forecast_hi=33,
    )
    assert "grow" in text and "26 mm" in text and "21 and 33 mm" in text and "2027-03-01" in text
    assert "unlikely (10 %)" in text
    assert pl.forecast_summary() == "There is not enough data for a forecast for this patient."


def test_glossary_help_defines_each_term():
    text = pl.glossary_help("RECIST", "SHAP")
    assert "**RECIST**" in text and "20 %" in text and "**SHAP**" in text


def test_forecast_summary_quotes_the_metrics_rounding_and_never_denies_a_measured_progression():
    """Issue 20: a metric at 71 % beside a sentence at 72 %; "No RECIST progression is forecast" beside a
    measured progression; "likely between -0 and 7 mm"."""
    text = pl.forecast_summary(
        progression_6m=0.714,
        recurrence_6m=0.05,
        progression_observed="2026-01-16",
        last_mm=6,
        forecast_mm=5,
        forecast_lo=-0.3,
        forecast_hi=7.2,
    )
    assert "(71 %)" in text and "(5 %)" in text  # formats.pct, as the metrics show them
    assert "RECIST progression was measured on 2026-01-16" in text
    assert "No RECIST progression" not in text
    assert "between 0 and 7 mm" in text and " -0 " not in text
