"""A saved cohort opened by its link in Chromium: the groups in words, Table 1 with SMDs, the patient list as
the role may see it, and the charts' rules (``chart_check``) on that view.

Why in a browser: the link is a real address (``/cohorts?cohort=ID``) typed into a new page, which
resumes the session from its cookie and must land on the "Build a cohort" tab with the cohort loaded;
AppTest has no addresses. Screenshots: ``cohorts-saved-<width>x<height>.png`` in the artifacts folder
(run once more with ``ONCOLENS_E2E_VIEWPORT=1920x1080`` for the large screen).
"""

from __future__ import annotations

from analytics import store
from analytics.cohorts import saved
from analytics.cohorts.definition import CohortDefinition
from tests.e2e.helpers import assert_no_exception, assert_readable, screenshot, settle, sign_in
from tests.e2e.walk import check_view

GROUPS = [["age >= 50", "grade = 3"], ["her2_status = positive"]]
WORDS = "(Age at diagnosis ≥ 50 years AND Grade is 3) OR (HER2 status is positive)"


def test_a_saved_cohort_opens_by_link_for_the_ethics_board_with_pseudonyms(page, app):
    cohort = saved.save_cohort(
        app.clinic.db,
        "Older G3 or HER2+",
        CohortDefinition.of(GROUPS, "er_status"),
        author="oncologist",
        role="oncologist",
    )
    sign_in(page, app.url, "ethics", "ethics-demo")
    page.goto(f"{app.url}/cohorts?cohort={cohort.cohort_id}")
    settle(page)
    page.get_by_text(f"Saved cohort {cohort.cohort_id},").wait_for()
    page.get_by_text(f"In words: {WORDS}.").wait_for()
    page.get_by_text("SMD: continuous variables").wait_for()
    page.get_by_text("Show the patient list").click()
    settle(page)
    page.get_by_text("by pseudonym (HMAC").wait_for()
    assert_no_exception(page, "saved cohort by link")
    assert_readable(page, "saved cohort by link")
    problems = check_view(page, "Cohorts / saved cohort")
    size = f"{page.viewport_size['width']}x{page.viewport_size['height']}"
    # the main area scrolls inside the page: one picture per part, each scrolled into view
    for part, text in (
        ("top", "Saved cohorts"),
        ("groups", "Group 1 (all must hold)"),
        ("table1", "Table 1"),
        ("patients", "Patients in the cohort"),
    ):
        page.get_by_text(text, exact=False).first.evaluate(
            "e => e.scrollIntoView({block: 'start'})"
        )
        screenshot(page, f"cohorts-saved-{size}-{part}")
    assert not problems, problems
    with store.open_store(app.clinic.db, read_only=True, wait_s=30) as con:
        events = con.execute(
            "SELECT action FROM audit_event WHERE actor = 'ethics' AND action IN "
            "('cohort_opened', 'cohort_patients_viewed') ORDER BY event_id"
        ).fetchall()
    assert [a for (a,) in events][-2:] == ["cohort_opened", "cohort_patients_viewed"]
