"""The care team's worklist in a real browser: buckets and reasons, review -> out of *act now*,
and a reload or a shared link that keeps the signed-in session (the session cookie).

Why a browser: the session cookie is set by a script in the page and read back by Streamlit
from the websocket's handshake; only a real browser does both.
"""

from __future__ import annotations

import re

from analytics import store
from analytics.worklist import stored as worklist_store
from dashboard.session import auth
from tests.e2e.helpers import assert_no_exception, screenshot, settle, sign_in


def _first_row_id(page) -> int:
    cells = page.locator('[data-testid="stDataFrame"] [role="gridcell"]')
    cells.first.wait_for(state="attached")
    return int(re.search(r"patient=(\d+)$", cells.first.inner_text().strip()).group(1))


def _bucket_of(db, person_id: int) -> str:
    with store.open_store(db, read_only=True) as con:
        rows = worklist_store.read_page(con, 10_000, 0).rows
    return str(rows.loc[rows["person_id"] == person_id, "bucket"].iloc[0])


def test_care_team_works_the_buckets_reviews_and_keeps_the_session(page, app):
    sign_in(page, app.url, "careteam", "careteam-demo")
    cookie = [c for c in page.context.cookies() if c["name"] == auth.SESSION_COOKIE]
    assert cookie and cookie[0]["sameSite"] == "Strict", "the session cookie was not set"
    assert auth.SESSION_COOKIE not in page.url  # the token never travels in the URL

    # A reload by URL starts a new Streamlit session: still signed in, on the worklist.
    page.goto(f"{app.url}/worklist")
    settle(page)
    page.get_by_role("button", name="Sign out").wait_for()
    page.get_by_text("Act now").first.wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    assert_no_exception(page, "worklist")
    top = _first_row_id(page)
    assert _bucket_of(app.clinic.db, top) == "act_now"
    grid_text = page.locator('[data-testid="stDataFrame"]').first.inner_text()
    assert "None" not in grid_text
    screenshot(page, "worklist-first-screen")

    # A shared link opened in another tab of the same browser: signed in, on that patient.
    other = page.context.new_page()
    other.goto(f"{app.url}/patient?patient={top}")
    settle(other)
    other.get_by_role("heading", name=re.compile(rf"· id {top}$")).wait_for()
    other.get_by_role("button", name="Sign out").wait_for()
    other.get_by_text(
        re.compile("You have not opened her record before|What changed since")
    ).first.wait_for()
    assert_no_exception(other, "patient by deep link")
    screenshot(other, "patient-deep-link")

    # Review her with a note: she leaves *act now*.
    other.get_by_text(re.compile("Worklist review")).first.click()
    other.get_by_label("Note (optional)").fill("CT booked")
    other.get_by_role("button", name="Mark reviewed").click()
    settle(other)
    other.get_by_text(re.compile("Last reviewed .* by careteam")).first.wait_for()
    assert _bucket_of(app.clinic.db, top) != "act_now"
    page.reload()
    settle(page)
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    assert _first_row_id(page) != top

    # Signing out revokes the token: the same link now asks for a sign-in.
    other.get_by_role("button", name="Sign out").click()
    other.get_by_label("Username").wait_for()
    third = page.context.new_page()
    third.goto(f"{app.url}/patient?patient={top}")
    third.get_by_label("Username").wait_for()
    assert not third.get_by_role("button", name="Sign out").count()


def test_a_deep_link_keeps_the_role_checks(page, app):
    """The ethics board resumed from its cookie still cannot open a patient's record."""
    sign_in(page, app.url, "ethics", "ethics-demo")
    page.goto(f"{app.url}/patient?patient=1")
    settle(page)
    page.get_by_role("button", name="Sign out").wait_for()
    assert not page.get_by_role("heading", name=re.compile(r"· id 1$")).count()
    assert_no_exception(page, "ethics deep link")
