"""The Governance page's issue-22 tabs in a real browser: data quality on a store with planted problems,
the admin's accounts and the chain verification, at the viewport of the run (1366 x 768 by default).

Why a browser: tabs, forms and the failing-rows table must fit the smallest screen the app is laid
out for, without a Streamlit exception box; AppTest renders none of that. The store (``board_app`` in
conftest) is shared with test_signoff_browser, which planted drifting AI reads into it as well.
"""

from __future__ import annotations

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


def test_admin_reads_data_quality_manages_accounts_and_verifies_the_chain(
    page, board_app: BoardApp
):
    size = f"{VIEWPORT['width']}x{VIEWPORT['height']}"
    sign_in(page, board_app.url, "admin", "admin-demo")
    open_page(page, "Governance")
    page.get_by_role("heading", name="Governance").wait_for()

    _tab(page, "Data quality")
    page.get_by_text("checks fail:").first.wait_for()
    page.get_by_text("Failing rows of").first.wait_for()
    assert_no_exception(page, "governance data quality")
    assert_readable(page, "governance data quality")
    screenshot(page, f"governance-data-quality-{size}")
    page.get_by_text("Failing rows of").first.scroll_into_view_if_needed()
    screenshot(page, f"governance-data-quality-rows-{size}")

    _tab(page, "Users")
    page.get_by_text("Add an account").first.wait_for()
    assert_no_exception(page, "governance users")
    assert_readable(page, "governance users")
    screenshot(page, f"governance-users-{size}")
    page.get_by_role("button", name="Add account").scroll_into_view_if_needed()
    screenshot(page, f"governance-users-forms-{size}")

    _tab(page, "Audit trail")
    page.get_by_role("button", name="Verify the audit chain").click()
    settle(page)
    _tab(
        page, "Audit trail"
    )  # the verdict lives in this tab; under load a rerun can show another one
    page.get_by_text("The audit chain holds").filter(visible=True).first.wait_for()
    assert_no_exception(page, "governance audit trail")
    screenshot(page, f"governance-audit-verify-{size}")
