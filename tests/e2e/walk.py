"""Walk every page a role has, every tab and expander on it, and run the chart check on what shows.

Why a walker and not one test per view: a Streamlit session, sign-in and first page build cost
seconds on two cores; one session per store and viewport visits everything and returns all the
problems at once, so the run stays short and a failure lists every page at fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.e2e.chart_check import chart_problems
from tests.e2e.helpers import assert_no_exception, nav_links, open_page, settle

# Plotly draws after the script run ends; a short wait for the SVG of every visible chart.
_CHARTS_DRAWN = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
    .filter(c => c.getBoundingClientRect().width > 0)
    .every(c => c.querySelector('.main-svg'))"""


def _wait_for_charts(page) -> None:
    page.wait_for_function(_CHARTS_DRAWN, timeout=30_000)
    page.wait_for_timeout(300)  # Plotly's automargin redraw


def _open_expanders(page) -> None:
    """Open every closed expander in the main area (client-side: no rerun)."""
    details = page.locator('[data-testid="stMain"] [data-testid="stExpander"] details')
    for i in range(details.count()):
        d = details.nth(i)
        if d.is_visible() and d.get_attribute("open") is None:
            d.locator("summary").first.click()
    settle(page)


def check_view(page, where: str) -> list[str]:
    """Open the expanders of what shows, wait for the charts, and return the problems, each prefixed."""
    _open_expanders(page)
    _wait_for_charts(page)
    assert_no_exception(page, where)
    return [f"{where}: {p}" for p in chart_problems(page)]


def check_tabs(page, where: str) -> list[str]:
    """``check_view`` of the page as it opens and then of each of its tabs in turn."""
    problems = check_view(page, where)
    tabs = page.locator('[data-testid="stMain"] [role="tab"]')
    names = tabs.all_inner_texts()
    for i, name in enumerate(names):
        tab = tabs.nth(i)
        if not tab.is_visible():
            continue
        tab.click()
        settle(page)
        problems += check_view(page, f"{where} / {name.strip()}")
    return problems


def check_all_pages(
    page, where: str, skip: tuple[str, ...] = (), on_open: Callable[[str], None] | None = None
) -> list[str]:
    """Every page in the signed-in role's menu, each with its tabs and expanders (but the pages in
    ``skip``: opened, not checked); ``on_open(title)`` runs on each page as it opens, before its
    tabs are clicked, the skipped ones included."""
    problems: list[str] = []
    for title in nav_links(page):
        try:
            open_page(page, title)
        except Exception:  # noqa: BLE001  a click lost while a slow page still ran (2 busy cores): once more
            settle(page)
            try:
                open_page(page, title)
            except Exception as exc:  # say which page did not open, then fail
                raise AssertionError(f"{where}: could not open {title}: {exc}") from exc
        if on_open is not None:
            on_open(title)
        if title not in skip:
            problems += check_tabs(page, f"{where} {title}")
    return problems


def open_patient(page, person_id: int) -> None:
    """Find a patient with the sidebar search (as a user does) and open the Patient page on her."""

    box = page.get_by_role("textbox", name="Find by name, MRN, id or birth date")
    box.fill(str(person_id))
    box.press("Enter")
    page.get_by_role("button", name=re.compile(rf"· id {person_id} ·")).click()
    page.wait_for_url(re.compile(rf"/patient\?patient={person_id}"))
    settle(page)


def open_empty_cohort(page) -> list[str]:
    """Cohorts -> Build a cohort -> the filter "age = 150" (nobody): the empty cohort's page, checked."""
    open_page(page, "Cohorts")
    page.get_by_role("tab", name="Build a cohort").click()
    settle(page)
    page.get_by_label("Value", exact=True).fill("150")
    page.get_by_label("Value", exact=True).press("Enter")
    settle(page)
    page.get_by_role("button", name="Add filter").click()
    settle(page)
    page.get_by_text("remove a filter or widen its range").wait_for()
    return check_view(page, "Cohorts / empty cohort")
