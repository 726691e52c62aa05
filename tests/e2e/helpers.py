"""What the browser tests share: waiting for Streamlit, signing in, navigating, screenshots."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("ONCOLENS_SCREENSHOTS") or E2E_DIR / "artifacts")
README_SHOTS = os.environ.get("ONCOLENS_README_SCREENSHOTS")


def settle(page) -> None:
    """Wait until the script run is over (Streamlit marks its root with the run state)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]')
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def assert_no_exception(page, where: str) -> None:
    """No Streamlit exception box anywhere on the page (a page that raised shows one)."""
    boxes = page.locator('[data-testid="stException"]')
    if boxes.count():
        pytest.fail(f"{where}: Streamlit exception shown:\n{boxes.first.inner_text()}")


def sign_in(page, url: str, username: str, password: str) -> None:
    """Fill the sign-in form and wait for the signed-in sidebar (the Sign out button)."""
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    settle(page)


# Text cut off with an ellipsis: an element whose content is wider than its box (metric values and labels).
_CUT_OFF = """() => [...document.querySelectorAll(
    '[data-testid="stMetricValue"], [data-testid="stMetricValue"] *, [data-testid="stMetricLabel"] *')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.trim())"""


def assert_readable(page, where: str) -> None:
    """At the viewport's width (1366 px in these tests): no sideways scrolling of the page, no metric cut off."""
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{where}: the page scrolls sideways by {overflow} px"
    cut = page.evaluate(_CUT_OFF)
    assert not cut, f"{where}: metric text cut off at {page.viewport_size['width']} px: {cut}"


def nav_links(page) -> list[str]:
    """The page titles in the sidebar navigation, in order."""
    links = page.locator('[data-testid="stSidebarNav"] a')
    # A link's text is its Material icon's name, then its title: keep the last line.
    return [
        [line.strip() for line in t.splitlines() if line.strip()][-1]
        for t in links.all_inner_texts()
    ]


def open_page(page, title: str) -> None:
    """Click ``title`` in the sidebar navigation and wait for the new run to end (callers wait for content)."""
    page.locator('[data-testid="stSidebarNav"] a').nth(nav_links(page).index(title)).click()
    page.wait_for_url(re.compile(r"/" if title == "Home" else rf"/{title.lower()}"))
    settle(page)


# The role/page table of docs/architecture.md (dashboard/session/auth.py: PAGES), in navigation order.
ROLE_PAGES = {
    "oncologist": ["Home", "Patient", "Imaging", "Worklist", "Cohorts"],
    "careteam": ["Home", "Patient", "Worklist"],
    "ethics": ["Home", "Cohorts", "Governance"],
    "admin": ["Home", "Cohorts", "Governance"],
}
HEADINGS = {"Home": "OncoLens"}  # each page's st.title, when it is not the page's name


def assert_page_opened(page, username: str, title: str, *, shots: bool = True) -> None:
    """The page ``title`` just opened for ``username`` shows its title, no exception, nothing cut.

    Why one function: the role walk of ``test_browser`` and the chart walks of ``test_charts``
    (which open every page of the oncologist and the ethics board anyway) make the same check.
    """
    heading = HEADINGS.get(title, title)
    page.locator("h1").filter(has_text=re.compile(rf"^\s*{heading}\s*$")).first.wait_for()
    assert_no_exception(page, f"{username} on {title}")
    assert_readable(page, f"{username} on {title}")
    if shots:
        screenshot(page, f"{username}-{title.lower()}")
        if username == "ethics" and title == "Governance":
            screenshot(page, "governance", readme=True)


def screenshot(page, name: str, *, readme: bool = False) -> Path:
    """Save the whole page as ``ARTIFACTS/name.png`` (and into the README folder when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme and README_SHOTS:
        target = Path(README_SHOTS)
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), full_page=False)
    return path
