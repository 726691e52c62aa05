"""The browser check that reads the charts, on every page, tab and expander, at both screen sizes.

Why: the older browser tests checked metric boxes only, so a timeline from 1961 to 2031, a SHAP
label cut to "+1", a calibration axis from -1 to 2 or "recommended None" failed nothing (issue 20).
One browser session per store, viewport and role visits everything the role can open and
collects every problem (``tests/e2e/chart_check``), so a failure lists them all. The demo clinic
is the usual case; the edge-case store holds a patient with no forecast, one with a single lesion
reading and one who recurred, and the walk adds an empty cohort. The last test shows that the check
fails when it should, on figures built to be wrong.
"""

from __future__ import annotations

import os

import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.figures import cohort as cohort_figures
from dashboard.figures import governance as governance_figures
from tests.e2e.chart_check import chart_problems, render_figure
from tests.e2e.conftest import CHROMIUM_ARGS, PAGE_TIMEOUT_MS  # noqa: F401  (one place for timeouts)
from tests.e2e.helpers import ROLE_PAGES, assert_page_opened, nav_links, sign_in
from tests.e2e.walk import check_all_pages, check_tabs, open_empty_cohort, open_patient

VIEWPORTS = {"1366x768": (1366, 768), "1920x1080": (1920, 1080)}


def viewports(default: str) -> list[str]:
    """Both sizes under ``make e2e-full`` (ONCOLENS_E2E_ALL_VIEWPORTS=1); else one per store.

    Why: one walk takes two to three minutes on two busy cores, and ``make test`` must stay well
    under fifteen. ``make test`` walks the demo clinic at 1366 x 768 (where labels are cut first)
    and the edge-case store at 1920 x 1080, so each size and each store is seen on every run.
    """
    return list(VIEWPORTS) if os.environ.get("ONCOLENS_E2E_ALL_VIEWPORTS") else [default]


def walk(
    browser,
    url: str,
    viewport: str,
    username: str,
    patients=(),
    empty_cohort=False,
    skip=(),
    shots=False,
):
    """One role's walk through every page it has; first, the role's menu is exactly its pages and each
    page opens with its title, no exception and nothing cut (``assert_page_opened``: the role check
    of ``test_browser``, made here for the roles walked rather than opening their pages twice).
    ``shots``: save each page's screenshot as it opens (the demo clinic's, at 1366 x 768)."""
    width, height = VIEWPORTS[viewport]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, url, username, f"{username}-demo")
        assert nav_links(page) == ROLE_PAGES[username], nav_links(page)
        where = f"{viewport} {username}"

        def opened(title: str) -> None:
            assert_page_opened(page, username, title, shots=shots)

        problems = check_all_pages(page, where, skip, on_open=opened)
        for person_id in patients:
            open_patient(page, person_id)
            problems += check_tabs(page, f"{where} Patient {person_id}")
        if empty_cohort:
            problems += [f"{where} {p}" for p in open_empty_cohort(page)]
        return problems
    finally:
        context.close()


@pytest.mark.slow
@pytest.mark.parametrize("viewport", viewports("1366x768"))
def test_charts_fit_their_data_on_the_demo_clinic(browser, app, viewport):
    """Oncologist (Patient with images, Imaging, Worklist, Cohorts) and ethics board (Governance): no text outside a chart, no stretched date axis, no probability axis past [0, 1], no
    "None", no sideways scrolling; and each role's menu and pages as ``test_browser`` checks the
    other roles'."""
    imaged = app.clinic.imaged_patients[0]
    shots = viewport == "1366x768"
    problems = walk(browser, app.url, viewport, "oncologist", patients=(imaged, 1), shots=shots)
    # the ethics board's Cohorts page is the oncologist's with pseudonyms: opened and checked as a
    # page (title, no exception, nothing cut), its charts not walked again
    problems += walk(browser, app.url, viewport, "ethics", skip=("Cohorts",), shots=shots)
    assert not problems, f"{len(problems)} chart problems:\n" + "\n".join(problems)


def _cut_label_figure() -> go.Figure:
    """A bar labelled outside, with the axis ending at the bar: Plotly clips "+1.07" to "+1"."""
    fig = go.Figure(go.Bar(x=[1.07, 0.4], y=["a", "b"], orientation="h", text=["+1.07", "+0.40"]))
    fig.update_traces(textposition="outside")
    fig.update_xaxes(range=[0, 1.08])
    return fig.update_layout(height=300, title="cut label")


def test_the_check_fails_on_a_cut_label_a_stretched_axis_and_a_none(browser):
    """Each rule fires on a figure built to break it, and stays quiet on the house's own figure."""
    page = browser.new_page(viewport={"width": 700, "height": 600})
    try:
        render_figure(page, _cut_label_figure(), 700)
        assert any('"+1.07" cut at the plotting area' in p for p in chart_problems(page))

        stretched = go.Figure(go.Scatter(x=pd.to_datetime(["2025-01-20", "2026-05-18"]), y=[1, 2]))
        stretched.update_xaxes(range=["1961-02-15", "2030-07-13"])
        render_figure(page, stretched.update_layout(height=300), 700)
        assert any("date axis 1961-02-15" in p for p in chart_problems(page))

        square = go.Figure(go.Scatter(x=[0.2, 0.8], y=[0.3, 0.7]))
        square.update_xaxes(range=[-1.06, 2.06], title_text="mean predicted probability")
        render_figure(page, square.update_layout(height=300), 700)
        assert any("probability axis" in p for p in chart_problems(page))

        long_title = go.Figure(go.Scatter(x=[1, 2], y=[1, 2])).update_layout(
            height=300, title="A title much too long for a chart this narrow, " * 3
        )
        render_figure(page, long_title, 400)
        assert any("outside the chart" in p for p in chart_problems(page))

        page.set_content("<main data-testid='stMain'><p>Decision: recommended None</p></main>")
        assert any('literal "None"' in p for p in chart_problems(page))

        fixed = governance_figures.calibration_figure(
            pd.DataFrame(
                {"p": [0.1, 0.5, 0.9], "o": [0.2, 0.5, 0.8], "g": list("abc"), "n": [5, 9, 3]}
            ),
            x="p",
            y="o",
            label="g",
            title="Calibration by subgroup: predicted vs Kaplan-Meier 5-year RFS",
            x_title="mean predicted probability",
            y_title="observed rate",
        )
        render_figure(page, fixed, 450)
        assert chart_problems(page) == []
        empty = cohort_figures.km_figure(pd.DataFrame(columns=["group", "time_days", "survival"]))
        render_figure(page, empty, 450)
        assert chart_problems(page) == []
    finally:
        page.close()
