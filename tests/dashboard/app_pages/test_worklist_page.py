"""The Worklist page reads the stored ranking, and never shows stale risks without saying so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from analytics import store
from analytics.worklist import ranking as worklist
from analytics.worklist import stored as worklist_store
from dashboard import resources
from tests.dashboard.app_pages.test_pages import open_page, texts


@pytest.fixture
def own_db(demo_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app pointed at a private copy of the demo store, which these tests change."""
    path = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    monkeypatch.setenv("ONCOLENS_DB", str(path))
    return path


def _touch_records(db: Path) -> None:
    """A writer that does not refresh the worklist (a lesion reading added by hand)."""
    with store.open_store(db) as con:
        con.execute(
            "INSERT INTO measurement SELECT max(measurement_id) + 1, min(person_id), DATE '2026-06-01', "
            "'lesion_longest_diameter', 90.0, 'mm', 'clinic', NULL FROM measurement"
        )


def test_a_current_store_shows_its_stored_ranking(own_db):
    at = open_page("worklist")
    assert not at.exception and not at.warning
    assert "Stored ranking computed" in texts(at.caption)
    with store.open_store(own_db, read_only=True) as con:
        expected = worklist_store.read_page(con, 25, 0)
    assert at.dataframe[0].value["mrn"].tolist() == expected.rows["mrn"].tolist()


def test_a_stale_small_store_is_ranked_on_the_fly_and_says_so(own_db):
    _touch_records(own_db)
    at = open_page("worklist")
    assert not at.exception
    assert "Ranked just now" in texts(at.info) and "patient records changed" in texts(at.info)
    with store.open_store(own_db, read_only=True) as con:
        now = worklist.worklist(con, 25, 0)
    assert at.dataframe[0].value["mrn"].tolist() == now.rows["mrn"].tolist()


def test_a_stale_large_store_warns_and_refreshes_on_request(own_db, monkeypatch):
    monkeypatch.setattr(
        resources, "ON_THE_FLY_MAX_PATIENTS", 10
    )  # "large": no ranking while the page waits
    _touch_records(own_db)
    at = open_page("worklist")
    assert not at.exception
    assert "out of date" in texts(at.warning) and "patient records changed" in texts(at.warning)
    assert len(at.dataframe) == 1  # the stored rows, under the warning
    assert "oncolens worklist --refresh" in texts(at.caption)
    at.button(key="worklist-refresh").click().run()
    assert not at.exception and not at.warning
    assert "Stored ranking computed" in texts(at.caption)
    with store.open_store(own_db, read_only=True) as con:
        assert worklist_store.status(con, None).fresh
        assert (
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'worklist_refresh'"
            ).fetchone()[0]
            == 1
        )


def test_a_large_store_never_ranked_shows_no_rows_and_offers_the_refresh(own_db, monkeypatch):
    monkeypatch.setattr(resources, "ON_THE_FLY_MAX_PATIENTS", 10)
    with store.open_store(own_db) as con:
        con.execute("DELETE FROM worklist_state")
        con.execute("DELETE FROM worklist_entry")
    at = open_page("worklist")
    assert not at.exception
    assert "not been ranked" in texts(at.warning)
    assert not at.dataframe and at.button(key="worklist-refresh")


def test_marking_a_review_on_the_patient_page_resets_what_is_new_on_the_worklist(own_db):
    at = open_page("worklist", role="care_team")
    rows = at.dataframe[0].value
    assert {
        "new_progression",
        "new_readings",
        "new_ai_findings",
        "last_reviewed_at",
        "reviewed_by",
    } <= set(rows)
    first = rows.iloc[0]
    assert (
        pd.isna(first["last_reviewed_at"]) and first["new_readings"] == first["n_measurements"]
    )  # never reviewed
    person_id = int(first["person_id"])
    page = open_page("patient", role="care_team", patient=str(person_id))
    assert not page.exception and "Not reviewed from the worklist yet." in texts(page.caption)
    page.button(key=f"review-{person_id}").click().run()
    assert not page.exception and "Last reviewed" in texts(page.caption)
    again = (
        open_page("worklist", role="care_team")
        .dataframe[0]
        .value.set_index("person_id")
        .loc[person_id]
    )
    assert (
        again["new_readings"] == 0
        and not again["new_progression"]
        and isinstance(again["reviewed_by"], str)
    )
    with store.open_store(own_db, read_only=True) as con:
        assert (
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'worklist_review' AND subject = ?",
                [str(person_id)],
            ).fetchone()[0]
            == 1
        )
