"""dashboard.figures.patient, .cohort and .common: figures are built from data alone and show what the data say."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dashboard.figures import cohort as cohort_figures
from dashboard.figures import common as common_figures
from dashboard.figures import patient as patient_figures


def _measurements() -> pd.DataFrame:
    rows = [
        ("2020-01-01", "lesion_longest_diameter", 30.0, "mm"),
        ("2020-06-01", "lesion_longest_diameter", 18.0, "mm"),
        ("2020-03-01", "lesion_longest_diameter", 22.0, "mm"),  # out of order on purpose
        ("2021-01-01", "lesion_longest_diameter", 26.0, "mm"),
        ("2020-01-01", "ca15_3", 25.0, "U/mL"),
        ("2020-06-01", "ca15_3", 31.0, "U/mL"),
        ("2020-01-01", "haemoglobin", 12.9, "g/dL"),
    ]
    frame = pd.DataFrame(rows, columns=["measurement_date", "concept", "value", "unit"])
    frame["measurement_date"] = pd.to_datetime(frame["measurement_date"])
    return frame


def _treatments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line_of_therapy": [1, 1, 2],
            "treatment_class": ["chemotherapy", "anti_her2", "endocrine"],
            "regimen": ["chemotherapy", "chemotherapy", None],
            "start_date": pd.to_datetime(["2020-01-10", "2020-01-10", "2020-09-01"]),
            "end_date": pd.to_datetime(["2020-05-01", "2020-08-01", None]),
        }
    )


def test_treatment_lines_span_each_line_and_run_ongoing_ones_to_until():
    spans = patient_figures.treatment_lines(_treatments(), until=pd.Timestamp("2021-01-01"))
    assert spans["label"].tolist() == ["Line 1: chemotherapy", "Line 2: endocrine"]
    assert spans["start"].tolist() == [pd.Timestamp("2020-01-10"), pd.Timestamp("2020-09-01")]
    assert spans["end"].tolist() == [pd.Timestamp("2020-08-01"), pd.Timestamp("2021-01-01")]
    assert patient_figures.treatment_lines(_treatments().iloc[0:0]).empty


def test_lesion_figure_plots_the_series_in_date_order_with_lines_and_threshold():
    fig = patient_figures.lesion_size_figure(_measurements(), _treatments())
    (trace,) = fig.data
    assert list(trace.y) == [30.0, 22.0, 18.0, 26.0]
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(rects) == 2  # one shaded span per line of therapy
    assert lines[0].y0 == pytest.approx(max(1.2 * 18.0, 18.0 + 5.0))  # RECIST threshold: 23 mm
    texts = [a.text for a in fig.layout.annotations]
    assert "Line 1: chemotherapy" in texts and any("RECIST" in t for t in texts)
    json.loads(fig.to_json())  # serialisable for the browser


def test_lesion_figure_without_lesion_readings_says_so():
    labs_only = _measurements().query("concept != 'lesion_longest_diameter'")
    fig = patient_figures.lesion_size_figure(labs_only, _treatments())
    assert not fig.data
    assert "No lesion measurements" in fig.layout.annotations[0].text


def test_lab_figure_has_one_row_per_concept_with_units():
    fig = patient_figures.lab_values_figure(_measurements())
    assert [t.name for t in fig.data] == ["CA 15-3", "Haemoglobin"]
    titles = [fig.layout[f"yaxis{'' if i == 1 else i}"].title.text for i in (1, 2)]
    assert titles == ["CA 15-3 (U/mL)", "Haemoglobin (g/dL)"]
    assert (
        "No laboratory"
        in patient_figures.lab_values_figure(_measurements().iloc[0:0]).layout.annotations[0].text
    )


def test_bar_and_age_figures_show_the_counts():
    age = pd.DataFrame(
        {"age_band_start_years": [40, 45], "age_band": ["40-44", "45-49"], "patients": [3, 5]}
    )
    fig = cohort_figures.age_distribution_figure(age)
    assert list(fig.data[0].x) == ["40-44", "45-49"] and list(fig.data[0].y) == [3, 5]
    receptors = pd.DataFrame(
        {"receptor": ["ER+"], "positive": [7], "patients": [10], "percent": [70.0]}
    )
    assert list(cohort_figures.receptor_figure(receptors).data[0].y) == [70.0]
    assert (
        "No data"
        in common_figures.bar_figure(age.iloc[0:0], "age_band", "patients", "t")
        .layout.annotations[0]
        .text
    )


def test_step_path_draws_right_continuous_steps():
    x, y = common_figures.step_path(pd.Series([0.0, 1.0, 2.0]), pd.Series([1.0, 0.5, 0.25]))
    assert x == [0.0, 1.0, 1.0, 2.0, 2.0]
    assert y == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_band_path_is_the_upper_staircase_out_and_the_lower_one_back():
    rng = np.random.default_rng(3)
    x = pd.Series(np.sort(rng.uniform(0, 10, 40)))
    lo = pd.Series(np.sort(rng.uniform(0, 0.5, 40))[::-1])
    hi = lo + 0.2
    bx, by = common_figures.band_path(x, lo, hi)
    up_x, up_y = common_figures.step_path(x, hi)
    low_x, low_y = common_figures.step_path(x, lo)
    assert bx.tolist() == up_x + low_x[::-1]  # the same corners, bit for bit
    assert by.tolist() == up_y + low_y[::-1]
    one_x, one_y = common_figures.band_path(pd.Series([2.0]), pd.Series([0.4]), pd.Series([0.6]))
    assert one_x.tolist() == [2.0, 2.0] and one_y.tolist() == [0.6, 0.4]


def test_km_figure_draws_a_band_and_a_curve_per_group_in_years():
    km = pd.DataFrame(
        {
            "group": ["a"] * 3 + ["b"] * 3,
            "time_days": [0.0, 365.25, 730.5] * 2,
            "survival": [1.0, 0.8, 0.6, 1.0, 0.9, 0.85],
            "ci_lower": [1.0, 0.7, 0.5, 1.0, 0.8, 0.75],
            "ci_upper": [1.0, 0.9, 0.7, 1.0, 0.95, 0.92],
        }
    )
    fig = cohort_figures.km_figure(km)
    bands, curves = fig.data[0::2], fig.data[1::2]
    assert [c.name for c in curves] == ["a", "b"]
    assert list(curves[0].x) == [0.0, 1.0, 2.0] and list(curves[0].y) == [1.0, 0.8, 0.6]
    assert all(b.fill == "toself" for b in bands)
    assert max(bands[0].y) == 1.0 and min(bands[0].y) == 0.5
    assert fig.layout.yaxis.range == (0, 1.02)
    assert "No follow-up" in cohort_figures.km_figure(km.iloc[0:0]).layout.annotations[0].text


def test_colour_with_alpha():
    assert common_figures.colour_with_alpha("#0072B2", 0.15) == "rgba(0,114,178,0.15)"
