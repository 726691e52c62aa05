"""The Worklist page reads the stored ranking, and never shows stale risks without saying so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analytics import store
from analytics.worklist import buckets
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
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) SELECT max(measurement_id) + 1, min(person_id), DATE '2026-06-01', "
            "'lesion_longest_diameter', 90.0, 'mm', 'clinic', NULL FROM measurement"
        )


def test_a_current_store_shows_its_stored_ranking(own_db):
    at = open_page("worklist")
    assert not at.exception and not at.warning
    assert "Stored ranking computed" in texts(at.caption)
    with store.open_store(own_db, read_only=True) as con:
        expected = worklist_store.read_page(con, 25, 0)
    shown = at.dataframe[0].value
    assert shown["MRN"].tolist() == expected.rows["mrn"].tolist()
    assert shown["Reason"].tolist() == expected.rows["reason"].tolist()


def test_a_stale_small_store_is_ranked_on_the_fly_and_says_so(own_db):
    _touch_records(own_db)
    at = open_page("worklist")
    assert not at.exception
    assert "Ranked just now" in texts(at.info) and "patient records changed" in texts(at.info)
    with store.open_store(own_db, read_only=True) as con:
        now = buckets.read_frame_page(
            con, worklist.ranked(con), worklist_store.as_of_date(con), 25, 0
        )
    assert at.dataframe[0].value["MRN"].tolist() == now.rows["mrn"].tolist()


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


def test_the_care_team_sees_buckets_with_reasons_and_no_empty_none(own_db):
    at = open_page("worklist", role="care_team")
    assert not at.exception
    shown = at.dataframe[0].value
    assert (shown.astype(str) == "None").sum().sum() == 0 and not shown.isna().any().any()
    assert shown["Bucket"].iloc[0] == "Act now"
    assert shown["Reason"].str.len().gt(10).all()
    with store.open_store(own_db, read_only=True) as con:
        counts = worklist_store.read_page(con, 1).buckets
    control = at.get("button_group")[0]
    labels = "".join(str(o) for o in control.proto.options) if hasattr(control, "proto") else ""
    assert f"Act now · {counts['act_now']:,}" in labels
    control.set_value("due").run()
    assert not at.exception and set(at.dataframe[0].value["Bucket"]) == {"Due"}


def test_marking_a_review_on_the_patient_page_takes_her_out_of_act_now(own_db):
    from analytics.governance import users

    with store.open_store(own_db) as con:
        if users.get_user(con, "careteam") is None:
            users.add_user(con, "careteam", "care_team", email="careteam@clinic.example")
    at = open_page("worklist", role="care_team")
    rows = at.dataframe[0].value
    first = rows.iloc[0]
    assert first["Bucket"] == "Act now" and first["Last review"] == "never"
    person_id = int(first["person_id"])
    page = open_page("patient", role="care_team", patient=str(person_id))
    assert not page.exception
    assert "Not reviewed from the worklist yet." in " ".join(e.label for e in page.expander)
    assert "You have not opened her record before" in texts(page.markdown)
    note = next(t for t in page.text_input if t.label == "Note (optional)")
    note.input("CT booked")
    page.selectbox[0].select("careteam")
    next(b for b in page.button if b.label == "Mark reviewed").click().run()
    assert not page.exception and not page.error
    assert "Last reviewed" in " ".join(e.label for e in page.expander)
    again = open_page("worklist", role="care_team").dataframe[0].value.set_index("person_id")
    if person_id in again.index:  # still on the first page: no longer in act now
        assert again.loc[person_id, "Bucket"] != "Act now"
    with store.open_store(own_db, read_only=True) as con:
        row = worklist_store.read_page(con, 100_000).rows.set_index("person_id").loc[person_id]
        assert row["bucket"] != "act_now"
        assert (row["review_note"], row["assignee"], row["reviewed_by"]) == (
            "CT booked",
            "careteam",
            "demo-user",
        )
        assert (
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'worklist_review' AND subject = ?",
                [str(person_id)],
            ).fetchone()[0]
            == 1
        )


def test_the_patient_page_says_what_changed_since_this_users_last_look(own_db):
    """A second visit in a new session compares with the first visit's view event."""
    with store.open_store(own_db, read_only=True) as con:
        person_id = int(
            con.execute("SELECT person_id FROM worklist_entry ORDER BY rank LIMIT 1").fetchone()[0]
        )
    first = open_page("patient", role="care_team", patient=str(person_id))
    assert "You have not opened her record before" in texts(first.markdown)
    with store.open_store(own_db) as con:  # a reading arrives after that visit
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) SELECT max(measurement_id) + 1, ?, current_date + 1, "
            "'lesion_longest_diameter', 44.0, 'mm', 'clinic', NULL FROM measurement",
            [person_id],
        )
    second = open_page("patient", role="care_team", patient=str(person_id))
    assert not second.exception
    said = texts(second.markdown)
    assert "What changed since you last looked" in said
    assert "lesion (longest diameter): 44 mm" in said
