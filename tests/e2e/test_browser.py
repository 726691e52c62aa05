"""End-to-end: every role signs in through the real form in Chromium and opens every page it has.

Why: unit tests and AppTest cannot see what a clinician sees. A page can pass
AppTest and still break in the browser (a Plotly figure that fails to render,
a navigation menu that offers the wrong pages, a widget that raises only after a
real click). These tests drive `oncolens serve` over its websocket like a user,
fail on any Streamlit exception box, and save a screenshot of each page.
"""

from __future__ import annotations

import re

import pytest

from analytics import store
from analytics.governance import users
from tests.e2e.helpers import (
    ROLE_PAGES,
    assert_no_exception,
    assert_page_opened,
    assert_readable,
    nav_links,
    open_page,
    screenshot,
    settle,
    sign_in,
)

# The oncologist and the ethics board are checked the same way (``assert_page_opened``) by the chart
# walks of test_charts, which open every page of theirs anyway.
WALKED_ELSEWHERE = ("oncologist", "ethics")


@pytest.mark.parametrize("username", [u for u in ROLE_PAGES if u not in WALKED_ELSEWHERE], ids=str)
def test_each_role_opens_each_of_its_pages(page, app, username):
    """The menu offers exactly the role's pages, and each one renders its title without an exception.

    Why: role gating is enforced by what `st.navigation` is given; a page missing
    from (or added to) a role's menu, or one that raises for that role (the
    pseudonymised views of ethics and admin), shows here and nowhere else.
    """
    sign_in(page, app.url, username, f"{username}-demo")
    assert nav_links(page) == ROLE_PAGES[username]
    for title in ROLE_PAGES[username]:
        open_page(page, title)
        assert_page_opened(page, username, title)


def test_oncologist_patient_recommendation_timeline_and_imaging_read(page, app):
    """Pick a demo patient with images: Patient shows the recommendation and the timeline; Imaging
    shows the AI read with a saliency overlay drawn.

    Why: this is the clinician's main path through the app, across three pages that
    share the selected patient (sidebar search, URL, session), with the treatment
    model, the forecast fits, the ONNX read and Captum all running for real.
    """
    person_id = app.clinic.imaged_patients[0]
    sign_in(page, app.url, "oncologist", "oncologist-demo")
    screenshot(page, "home", readme=True)

    # Sidebar search by id; the match opens the Patient page.
    page.get_by_role("textbox", name="Find by name, MRN, id or birth date").fill(str(person_id))
    page.get_by_role("textbox", name="Find by name, MRN, id or birth date").press("Enter")
    page.get_by_role("button", name=re.compile(rf"· id {person_id} ·")).click()
    page.wait_for_url(re.compile(rf"/patient\?patient={person_id}"))
    settle(page)
    page.get_by_role("heading", name=re.compile(rf"· id {person_id}$")).wait_for()
    page.get_by_role("heading", name="Treatment options").wait_for()
    recommendation = page.get_by_text(
        re.compile(r"Recommended: |the model does not pick an option")
    )
    recommendation.first.wait_for()
    timeline = page.get_by_role("heading", name="Timeline and forecast")
    timeline.wait_for()
    # The timeline's Plotly figure actually drew (an SVG main layer inside the section's chart).
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
    assert_no_exception(page, f"Patient {person_id}")
    screenshot(page, "patient", readme=True)

    # Imaging keeps the patient; the AI read and the saliency overlay are on screen.
    open_page(page, "Imaging")
    page.get_by_role("heading", name=re.compile(rf"Images of .* id {person_id}$")).wait_for()
    page.get_by_role("heading", name="AI read").wait_for()
    page.get_by_text("Most likely").first.wait_for()
    page.get_by_text(
        re.compile(r"(?:Calibrated p|P)robability \d+%|Uncertain between")
    ).first.wait_for()
    page.get_by_role("heading", name="Saliency: where the model found its evidence").wait_for()
    overlay = page.locator(".st-key-saliency_chart_a .main-svg").first
    overlay.wait_for()
    assert overlay.is_visible()
    assert_no_exception(page, f"Imaging for patient {person_id}")
    overlay.scroll_into_view_if_needed()
    screenshot(page, "imaging", readme=True)

    open_page(page, "Cohorts")
    page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
    assert_no_exception(page, "Cohorts")
    screenshot(page, "cohorts", readme=True)


def test_wrong_password_is_refused_in_the_browser(page, app):
    """A wrong password leaves the sign-in form up with no menu.

    Why: the only gate to every page is this form; the browser is where a
    mistake in `auth.gate` (a page drawn before the check stops the run) would show.
    """
    page.goto(app.url)
    page.get_by_label("Username").fill("oncologist")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(users.REFUSED).wait_for()
    settle(page)
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    assert page.get_by_role("button", name="Sign out").count() == 0
    assert_no_exception(page, "sign-in form")


def test_landing_page_says_what_oncolens_is_and_lists_the_demo_accounts(page, app):
    """Signed out, the first screen says what OncoLens is (and is not) and how each demo role starts.

    Why: this is what `make run` opens on a fresh clone; a newcomer must be able to
    sign in from it without the README.
    """
    page.goto(app.url)
    page.get_by_label("Username").wait_for()
    settle(page)
    page.get_by_text("Research and decision support, not a medical device.").first.wait_for()
    page.get_by_role("heading", name="Where to start").wait_for()
    for username, _role, password in users.DEMO_ACCOUNTS:
        row = page.locator("tr").filter(has_text=username).filter(has_text=password)
        assert row.count() == 1, f"no row for {username} / {password}"
    assert_no_exception(page, "landing page")
    assert_readable(page, "landing page")
    screenshot(page, "landing", readme=True)


def test_care_team_goes_from_the_worklist_to_a_patient_without_a_recommendation(page, app):
    """Care team: Home's start panel -> Worklist -> select the top row -> that patient's record, with the
    forecasts and no treatment recommendation.

    Why: the care team's whole day is this path; the recommendation is for oncologists
    only (auth.RECOMMENDS), and a Worklist row must open in the same signed-in session.
    """
    sign_in(page, app.url, "careteam", "careteam-demo")
    page.get_by_role("heading", name="Start here, as care team").wait_for()
    page.get_by_role("link", name="Review the worklist").click()
    page.wait_for_url(re.compile(r"/worklist"))
    settle(page)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for()
    cells = page.locator('[data-testid="stDataFrame"] [role="gridcell"]')
    cells.first.wait_for(state="attached")  # the grid's accessible (hidden) table
    top = int(re.search(r"patient=(\d+)$", cells.first.inner_text().strip()).group(1))
    assert_no_exception(page, "care team's worklist")
    screenshot(page, "careteam-flow-worklist")

    box = grid.bounding_box()
    page.mouse.click(box["x"] + 10, box["y"] + 35 + 17)  # the first row's selection box
    page.wait_for_url(re.compile(rf"/patient\?patient={top}$"))
    settle(page)
    page.get_by_role("heading", name=re.compile(rf"· id {top}$")).wait_for()
    page.get_by_role("heading", name="Timeline and forecast").wait_for()
    page.get_by_text("Treatment recommendations are shown to oncologists").wait_for()
    assert page.get_by_text(re.compile(r"Recommended: |does not pick an option")).count() == 0
    assert page.get_by_role("button", name=re.compile(r"^Accept ")).count() == 0
    assert_no_exception(page, f"care team on patient {top}")
    assert_readable(page, f"care team on patient {top}")
    screenshot(page, "careteam-flow-patient")


def test_ethics_board_exports_a_cohort_with_pseudonymised_ids_and_the_export_is_audited(
    page, app, tmp_path
):
    """Cohorts -> Build a cohort -> prepare and download the CSV: one row per patient, ids pseudonymised for
    the ethics board, no names or MRNs, and an export event in the audit trail.

    Why: exports are where patient-level data leaves the app; the browser is where the
    download actually happens.
    """
    import pandas as pd

    sign_in(page, app.url, "ethics", "ethics-demo")
    open_page(page, "Cohorts")
    page.get_by_role("tab", name="Build a cohort").click()
    page.get_by_text(re.compile(r"^Prepare CSV and Parquet files")).click()
    settle(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    saved = tmp_path / "cohort.csv"
    download.value.save_as(saved)
    settle(page)  # the click's rerun writes the export event
    assert (
        download.value.suggested_filename == "cohort.csv"
    )  # named after the cohort ("cohort" by default)
    head = [line for line in saved.read_text().splitlines() if line.startswith("#")]
    assert "# definition: every patient" in head and any("data_cutoff" in h for h in head)
    assert any(
        h.startswith("# dates: month only") for h in head
    )  # the ethics board gets no exact dates
    rows = pd.read_csv(saved, comment="#")
    assert rows["diagnosis_date"].str.fullmatch(r"\d{4}-\d{2}").all()
    shown = int(
        re.search(
            r"\(([\d,]+) patients\)", page.get_by_text(re.compile(r"^Prepare CSV")).inner_text()
        )
        .group(1)
        .replace(",", "")
    )
    assert len(rows) == shown > 0
    assert rows["person_id"].astype(str).str.startswith("P-").all()
    assert not {"mrn", "given_name", "family_name", "birth_date"} & set(rows.columns)
    assert_no_exception(page, "cohort export")
    with store.open_store(app.clinic.db, read_only=True, wait_s=30) as con:
        exports = con.execute(
            "SELECT count(*) FROM audit_event WHERE action = 'export' AND actor = 'ethics'"
        ).fetchone()[0]
    assert exports >= 1
