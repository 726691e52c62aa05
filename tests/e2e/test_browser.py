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

from analytics import users
from tests.e2e.helpers import assert_no_exception, nav_links, open_page, screenshot, settle, sign_in

# The role/page table of docs/architecture.md (dashboard/auth.py: PAGES), in navigation order.
ROLE_PAGES = {
    ("oncologist", "oncologist-demo"): ["Home", "Patient", "Imaging", "Worklist", "Cohorts"],
    ("careteam", "careteam-demo"): ["Home", "Patient", "Worklist"],
    ("ethics", "ethics-demo"): ["Home", "Cohorts", "Governance"],
    ("admin", "admin-demo"): ["Home", "Cohorts", "Governance"],
}
HEADINGS = {"Home": "OncoLens"}  # each page's st.title, when it is not the page's name


@pytest.mark.parametrize(("account", "pages"), list(ROLE_PAGES.items()), ids=[u for u, _ in ROLE_PAGES])
def test_each_role_opens_each_of_its_pages(page, app, account, pages):
    """The menu offers exactly the role's pages, and each one renders its title without an exception.

    Why: role gating is enforced by what `st.navigation` is given; a page missing
    from (or added to) a role's menu, or one that raises for that role (the
    pseudonymised views of ethics and admin), shows here and nowhere else.
    """
    username, password = account
    sign_in(page, app.url, username, password)
    assert nav_links(page) == pages
    for title in pages:
        open_page(page, title)
        heading = HEADINGS.get(title, title)
        page.locator("h1").filter(has_text=re.compile(rf"^\s*{heading}\s*$")).first.wait_for()
        assert_no_exception(page, f"{username} on {title}")
        screenshot(page, f"{username}-{title.lower()}")
        if username == "ethics" and title == "Governance":
            screenshot(page, "governance", readme=True)


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
    page.get_by_role("textbox", name="Find by id or MRN").fill(str(person_id))
    page.get_by_role("textbox", name="Find by id or MRN").press("Enter")
    page.get_by_role("button", name=re.compile(rf"· id {person_id} ·")).click()
    page.wait_for_url(re.compile(rf"/patient\?patient={person_id}"))
    settle(page)
    page.get_by_role("heading", name=re.compile(rf"· id {person_id}$")).wait_for()
    page.get_by_role("heading", name="Treatment options").wait_for()
    recommendation = page.get_by_text(re.compile(r"Recommended: |the model does not pick an option"))
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
    page.get_by_text(re.compile(r"Calibrated probability \d+%")).first.wait_for()
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
