"""The Cohorts page's "Build a cohort" tab (AppTest) and its figure builder (no Streamlit)."""

from __future__ import annotations

from analytics import store
from analytics.cohorts import builder as cohorts
from dashboard.figures import cohort as cohort_figures
from dashboard.panels import cohort as cohort_panel
from tests.dashboard.app_pages.test_pages import open_page, texts


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_build_tab_shows_km_table1_and_exports_for_every_patient(app_env):
    at = open_page("cohorts", tab="Build a cohort")
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs] == ["Overview", "Build a cohort", "Treatment model"]
    assert _metrics(at)["Patients in cohort"] == "300"
    assert "cohort_km" in {c.key for c in at.get("plotly_chart")}
    assert "numbers at risk" in texts(at.caption)
    table1 = next(d.value for d in at.dataframe if "variable" in d.value.columns)
    assert {"Stage", "Age at diagnosis (years)"} <= set(table1["variable"])
    at.toggle(key="cohort_export").set_value(True).run()
    labels = {b.label for b in at.get("download_button")}
    assert {"Download CSV", "Download Parquet", "Download figure (HTML)"} <= labels


def test_adding_filters_and_a_group_narrows_the_cohort_and_compares(app_env):
    at = open_page("cohorts", tab="Build a cohort")
    at.selectbox(key="cohort_field").set_value("age").run()
    at.selectbox(key="cohort_op_age").set_value(">=").run()
    at.number_input(key="cohort_value_age_>=").set_value(50).run()
    at.button(key="cohort_add").click().run()
    assert at.session_state[cohort_panel.GROUPS_KEY] == [["age >= 50"]]
    assert "In words: Age at diagnosis ≥ 50 years." in texts(at.caption)
    at.selectbox(key="cohort_group_by").set_value("er_status").run()
    assert not at.exception and not at.error
    n = int(_metrics(at)["Patients in cohort"].replace(",", ""))
    with store.open_store(app_env, read_only=True) as con:
        assert n == cohorts.build_cohort(con, ["age >= 50"]).n < 300
    assert _metrics(at)["Log-rank p"] != "–"
    assert "not randomised" in texts(at.caption)
    hr = next(d.value for d in at.dataframe if "hazard ratio (95 % CI)" in d.value.columns)
    assert len(hr) == 1


def test_an_empty_cohort_is_a_notice_that_says_what_to_do_not_a_traceback(app_env):
    at = open_page("cohorts", tab="Build a cohort")
    at.session_state[cohort_panel.GROUPS_KEY] = [["age > 150"]]
    at.run()
    assert not at.exception and not at.error
    assert "No patient matches (Age at diagnosis > 150 years): remove a filter" in texts(at.info)


def test_km_figure_has_a_curve_band_and_at_risk_row_per_group(demo_db):
    with store.open_store(demo_db, read_only=True) as con:
        result = cohorts.build_cohort(con, group_by="stage")
    fig = cohort_figures.km_at_risk_figure(result)
    names = [g.name for g in result.groups]
    curves = [t for t in fig.data if t.mode == "lines"]
    rows = [t for t in fig.data if t.mode == "text"]
    assert [c.legendgroup for c in curves] == names and len(rows) == len(names)
    assert rows[0].text[0] == f"{result.groups[0].n:,}"  # at risk at year 0 = the group's size
