"""Figures fit their data (issue 20): axis ranges from the data, probabilities in [0, 1], room for labels.

The browser check (tests/e2e/test_charts.py) sees the drawn result; these tests pin the builders'
ranges without a browser, so a regression shows in the fast suite too.
"""

from __future__ import annotations

import pandas as pd

from analytics.treatment.model.shap_values import BenefitWaterfall, Contribution
from dashboard.figures import common as common_figures
from dashboard.figures import governance as governance_figures
from dashboard.figures import patient as patient_figures
from dashboard.figures import treatment as treatment_figures


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=columns)


def _timeline(measurements: pd.DataFrame, **kw):
    return patient_figures.patient_timeline_figure(
        diagnosis_date=pd.Timestamp("2025-01-20"),
        today=None,
        treatments=_empty(
            ["line_of_therapy", "treatment_class", "regimen", "start_date", "end_date"]
        ),
        measurements=measurements,
        imaging_studies=_empty(["study_date", "modality", "description", "study_uid"]),
        outcome_events=pd.DataFrame(
            {"event_date": [pd.Timestamp("2025-08-31")], "event_type": ["recurrence"]}
        ),
        **kw,
    )


def _labs(dates: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "measurement_date": pd.to_datetime(dates),
            "concept": "ca15_3",
            "value": 20.0,
            "unit": "U/mL",
        }
    )


def test_the_timeline_spans_her_own_course_even_without_a_forecast():
    """No survival forecast (its note used to sit at 1970 and stretch the axis to 1961-2031)."""
    fig = _timeline(_labs(["2025-02-01", "2026-05-18"]))
    lo, hi = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert pd.Timestamp("2024-11-01") < lo <= pd.Timestamp("2025-01-20")
    assert pd.Timestamp("2026-05-18") <= hi < pd.Timestamp("2026-09-01")
    assert "No survival forecast" in " ".join(a.text for a in fig.layout.annotations)


def test_a_short_course_gets_the_minimum_span_centred_on_it():
    fig = _timeline(_labs(["2025-01-20"]))  # diagnosis, one lab, one recurrence: 7 months
    lo, hi = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert (hi - lo).days >= common_figures.MIN_DATE_SPAN_DAYS
    assert (hi - lo).days < common_figures.MIN_DATE_SPAN_DAYS * 1.2
    assert lo < pd.Timestamp("2025-01-20") and hi > pd.Timestamp("2025-08-31")


def test_date_range_skips_missing_dates_and_returns_none_without_any():
    assert common_figures.date_range([None, pd.NaT]) is None
    lo, hi = common_figures.date_range(["2020-01-01", None, "2024-01-01"])
    assert lo < pd.Timestamp("2020-01-01") and hi > pd.Timestamp("2024-01-01")
    assert (hi - lo).days < 4 * 365 * 1.1


def test_calibration_axes_stay_in_zero_one_whatever_the_points():
    fig = governance_figures.calibration_figure(
        pd.DataFrame({"p": [0.05, 0.95], "o": [0.0, 1.0], "g": ["a", "b"], "n": [5, 5]}),
        x="p",
        y="o",
        label="g",
        title="Calibration by subgroup: predicted vs Kaplan-Meier 5-year RFS",
        x_title="predicted",
        y_title="observed",
    )
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.range[0] >= -0.05 and axis.range[1] <= 1.05
        assert axis.constrain == "domain"  # the square aspect may not widen the range
    assert [t.name for t in fig.data[1:]] == [
        "a",
        "b",
    ]  # groups in the legend, not as overlapping text


def test_waterfall_range_leaves_room_for_the_labels_outside_the_bars():
    shap = BenefitWaterfall(
        better="A",
        worse="B",
        base_value=0.02,
        contributions=(Contribution("Age (years)", 50.0, 0.0107), Contribution("x", 1.0, -0.004)),
        additivity_error=0.0,
    )
    fig = treatment_figures.benefit_waterfall_figure(shap, 0.0337)
    lo, hi = fig.layout.xaxis.range
    ends = [2.0, 3.07, 2.67, 3.37]
    assert lo <= 0 and hi >= max(ends) + 0.5  # "+1.07" needs room past the longest bar


def test_long_titles_wrap_and_make_room():
    fig = common_figures.base_layout(
        common_figures.empty_figure("x"),
        "Similar patients (stage III, ER-positive): recurrence-free survival by first-line option",
    )
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) == 2 and all(len(line) <= common_figures.TITLE_CHARS for line in lines)
    assert fig.layout.margin.t >= 30 + 2 * common_figures.TITLE_LINE_PX


def test_brain_metastasis_sizes_are_not_drawn_among_the_lab_values():
    labs = pd.concat(
        [
            _labs(["2025-02-01"]),
            pd.DataFrame(
                {
                    "measurement_date": pd.to_datetime(["2025-03-01"]),
                    "concept": "brain_lesion_longest_diameter",
                    "value": 0.0,
                    "unit": "mm",
                }
            ),
        ]
    )
    fig = patient_figures.lab_values_figure(labs)
    assert [t.name for t in fig.data] == ["CA 15-3"]


def test_overview_curves_carry_the_cohort_builders_numbers_at_risk(demo_db):
    """The Overview's curves with the numbers at risk the cohort builder counts, every digit inside the
    range (room either side of year 0 and the last year)."""
    from analytics import store
    from analytics.cohorts import builder, summary
    from dashboard.figures import cohort as cohort_figures

    with store.open_store(demo_db, read_only=True) as con:
        overview = summary.cohort_overview(con)
        counted = builder.build_cohort(con).at_risk
    km = overview.km[overview.km["group"] == "all patients"]
    fig = cohort_figures.km_figure(km, "All patients", at_risk=counted)
    table = [t for t in fig.data if t.mode == "text"][0]
    horizon = km["time_days"].max() / 365.25
    step = 1 if horizon <= 6 else 2  # every second year past six years (room beside another chart)
    shown = counted[(counted["years"] <= horizon) & (counted["years"] % step == 0)]
    assert list(table.text) == [f"{v:,}" for v in shown["at_risk"]] and len(shown) >= 3
    lo, hi = fig.layout.xaxis.range
    assert lo < 0 and hi > max(shown["years"])
    plain = cohort_figures.km_figure(km, "All patients")  # without the table: one panel as before
    assert all(t.mode != "text" for t in plain.data)
