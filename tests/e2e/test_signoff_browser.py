"""Lineage, Sign-off and Drift tabs and the sign-off banner in a real browser (issue 22 items 3-5),
at the viewport of the run (1366 x 768 by default; ONCOLENS_E2E_VIEWPORT=1920x1080).

Why a browser: the banner must sit above the output it qualifies, the tabs' tables and figures must
fit the smallest screen, and none of it may raise; AppTest renders none of that. The drift tab is
shown with planted reads (later months brighter) so its figure and alerts are on screen
(``board_app`` in conftest, whose store test_governance_tabs reads too).
"""

from __future__ import annotations

import re

from tests.e2e.conftest import VIEWPORT, BoardApp
from tests.e2e.helpers import (
    assert_no_exception,
    assert_readable,
    open_page,
    screenshot,
    settle,
    sign_in,
)


def _tab(page, label: str) -> None:
    page.get_by_role("tab", name=label).click()
    settle(page)


def test_board_tabs_and_the_banner_on_patient_and_imaging(browser, board_app: BoardApp):
    url, person_id = board_app.url, board_app.patient
    size = f"{VIEWPORT['width']}x{VIEWPORT['height']}"
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        sign_in(page, url, "ethics", "ethics-demo")
        open_page(page, "Governance")
        page.get_by_role("heading", name="Governance").wait_for()
        _tab(page, "Lineage")
        page.get_by_text("Every model version").first.wait_for()
        assert_no_exception(page, "lineage")
        assert_readable(page, "lineage")
        screenshot(page, f"governance-lineage-{size}")
        _tab(page, "Sign-off")
        page.get_by_text("Record a decision").first.wait_for()
        assert_no_exception(page, "sign-off")
        assert_readable(page, "sign-off")
        screenshot(page, f"governance-signoff-{size}")
        _tab(page, "Drift")
        page.get_by_text("Tests run").first.wait_for()
        # the drift figure drew (the other tabs' charts are hidden)
        page.locator('[data-testid="stPlotlyChart"] .main-svg >> visible=true').first.wait_for()
        assert_no_exception(page, "drift")
        assert_readable(page, "drift")
        screenshot(page, f"governance-drift-{size}")
        page.get_by_text("mammography: inputs").first.scroll_into_view_if_needed()
        screenshot(page, f"governance-drift-figure-{size}")
    finally:
        context.close()

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        sign_in(page, url, "oncologist", "oncologist-demo")
        page.get_by_role("textbox", name="Find by name, MRN, id or birth date").fill(str(person_id))
        page.get_by_role("textbox", name="Find by name, MRN, id or birth date").press("Enter")
        page.get_by_role("button", name=re.compile(rf"· id {person_id} ·")).click()
        page.wait_for_url(re.compile(rf"/patient\?patient={person_id}"))
        settle(page)
        page.get_by_role("heading", name="Treatment options").wait_for()
        page.get_by_text(re.compile("has not been approved by the ethics board")).first.wait_for()
        page.get_by_role("heading", name="Treatment options").scroll_into_view_if_needed()
        assert_no_exception(page, "patient banner")
        screenshot(page, f"signoff-banner-patient-{size}")
        open_page(page, "Imaging")
        page.get_by_role("heading", name="AI read").wait_for()
        page.get_by_text(
            re.compile(r"The mammography model \(version .*\) has not been approved")
        ).first.wait_for()
        page.get_by_role("heading", name="AI read").scroll_into_view_if_needed()
        assert_no_exception(page, "imaging banner")
        screenshot(page, f"signoff-banner-imaging-{size}")
    finally:
        context.close()
