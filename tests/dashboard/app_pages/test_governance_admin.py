"""Governance page (AppTest), issue 22: the Data quality tab, the admin's accounts and chain verification,
an action filter fed by the data, and the audit events of explanations and cohort views."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analytics import store
from analytics.governance import audit, pseudonyms, quality, users
from dashboard.session import auth
from tests.analytics.governance.test_data_quality import PLANTED, plant_problems
from tests.dashboard.app_pages.test_imaging_page import imaging_db  # noqa: F401  (module fixture)
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")
PASSWORD = "Gov-Admin-Passw0rd"


@pytest.fixture(scope="module")
def planted_db(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The demo store with the quality tests' planted problems and an admin account."""
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("gov_admin") / "clinic.duckdb"))
    ids = plant_problems(db)
    users.create_account(db, "gov-admin", "admin", password=PASSWORD, email=None, actor="cli:test")
    return db, ids


@pytest.fixture
def env(planted_db, monkeypatch) -> Path:
    monkeypatch.setenv("ONCOLENS_DB", str(planted_db[0]))
    return planted_db[0]


def _open(role: str, username: str = "gov-admin", tab: str = "Data quality"):
    """The Governance page signed in as ``username`` with ``role``, on ``tab`` (only the open tab is
    computed, issue 23; the tab is in the address as a link has it)."""
    at = open_page("governance", role=role, tab=tab)
    s = at.session_state[auth.SESSION_KEY]
    at.session_state[auth.SESSION_KEY] = auth.Session(
        username, role, s.method, s.last_active, s.started
    )
    return at.run()


def _events(db: Path, action: str) -> list[tuple]:
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT actor, role, subject, details FROM audit_event WHERE action = ? ORDER BY event_id",
            [action],
        ).fetchall()


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_data_quality_tab_counts_by_category_and_shows_pseudonymised_failing_rows(env, planted_db):
    _, ids = planted_db
    at = _open("ethics_board", "board-member")
    assert not at.exception, at.exception
    assert "Data quality" in [t.label for t in at.tabs] and "Users" not in [
        t.label for t in at.tabs
    ]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Completeness"] == "5 of 5 pass"
    assert metrics["Conformance"].endswith("pass") and metrics["Plausibility"].endswith("pass")
    failed = texts(at.error)
    assert f"{len(PLANTED)} of {len(quality.CHECKS)} checks fail" in failed
    checks = next(df.value for df in at.dataframe if "check" in df.value.columns)
    assert set(checks.loc[checks["result"] == "FAIL", "check"]) == PLANTED
    picker = at.selectbox(key="dq_check")
    assert set(picker.options) >= {n.replace("_", " ") for n in PLANTED}
    picker.set_value("duplicate_patient_name_birth").run()
    rows = next(
        df.value for df in at.dataframe if list(df.value.columns) == ["patient", "row", "detail"]
    )
    with store.open_store(env, read_only=True) as con:
        key = pseudonyms.store_secret(con)
        given, family, mrn = con.execute(
            "SELECT given_name, family_name, mrn FROM person WHERE person_id = ?", [ids["original"]]
        ).fetchone()
    assert set(rows["patient"]) == {
        pseudonyms.pseudonym(key, ids["original"]),
        pseudonyms.pseudonym(key, ids["twin"]),
    }
    shown = rows.to_csv() + checks.to_csv()
    assert given not in shown and family not in shown and mrn not in shown
    viewed = _events(env, "data_quality_rows_viewed")
    assert (
        viewed
        and viewed[-1][0] == "board-member"
        and "duplicate_patient_name_birth" in viewed[-1][3]
    )


def test_the_admin_adds_an_account_changes_its_role_and_deactivates_it(env):
    at = _open("admin", tab="Users")
    assert not at.exception, at.exception
    assert "Users" in [t.label for t in at.tabs]
    at.text_input(key="gov_new_name").input("nurse.lee")
    at.selectbox(key="gov_new_role").set_value("care_team")
    at.text_input(key="gov_new_password").input("Nurse-Lee-Passw0rd")
    at = _button(at, "Add account").click().run()
    assert "Added nurse.lee (care team)." in texts(at.success), texts(at.error)
    at.selectbox(key="gov_role_user").set_value("nurse.lee")
    at.selectbox(key="gov_role_new").set_value("oncologist")
    at = _button(at, "Change role").click().run()
    assert "nurse.lee now has the role oncologist." in texts(at.success)
    at.selectbox(key="gov_active_user").set_value("nurse.lee")
    at = _button(at, "Deactivate").click().run()
    assert "Deactivated nurse.lee." in texts(at.success)
    table = next(df.value for df in at.dataframe if {"username", "status"} <= set(df.value.columns))
    assert table.set_index("username").loc["nurse.lee", "status"] == "deactivated"
    assert not users.sign_in(env, "nurse.lee", "Nurse-Lee-Passw0rd").ok
    for action in ("user_added", "user_role_changed", "user_deactivated"):
        actor, role, _, details = _events(env, action)[-1]
        assert (actor, role) == ("gov-admin", "admin") and "nurse.lee" in details
    # the last active admin is refused, on the page, with the reason
    at.selectbox(key="gov_active_user").set_value("gov-admin")
    at = _button(at, "Deactivate").click().run()
    assert "last active admin" in texts(at.error)
    assert audit.verify_store(env).ok


def test_the_ethics_board_has_no_account_management(env):
    at = _open("ethics_board", "board-member")
    assert "Users" not in [t.label for t in at.tabs]
    assert not [b for b in at.button if b.label in ("Add account", "Change role", "Deactivate")]


def test_the_verify_button_checks_the_chain_and_finds_a_tampered_event(env, tmp_path, monkeypatch):
    at = _open("admin", tab="Audit trail")
    at = _button(at, "Verify the audit chain").click().run()
    assert "The audit chain holds" in texts(at.success)
    actor, role, _, details = _events(env, "audit_verified")[-1]
    assert (actor, role) == ("gov-admin", "admin") and json.loads(details)["ok"] is True
    tampered = Path(shutil.copy(env, tmp_path / "tampered.duckdb"))
    with store.open_store(tampered) as con:
        con.execute("UPDATE audit_event SET actor = 'someone-else' WHERE event_id = 2")
    monkeypatch.setenv("ONCOLENS_DB", str(tampered))
    at = _open("admin", tab="Audit trail")
    at = _button(at, "Verify the audit chain").click().run()
    assert "The audit chain is broken at event 2" in texts(at.error)


def test_the_action_filter_lists_every_action_in_the_data(env):
    audit.record_event(env, actor="cli:test", action="some_action_nobody_listed")
    at = _open("ethics_board", "board-member", tab="Audit trail")
    options = at.multiselect(key="gov_actions").options
    with store.open_store(env, read_only=True) as con:
        present = {r[0] for r in con.execute("SELECT DISTINCT action FROM audit_event").fetchall()}
    assert "some_action_nobody_listed" in options and set(options) == present


def test_a_cohort_built_is_logged_once_per_session_and_definition(app_env):
    def count() -> int:
        with store.open_store(app_env, read_only=True) as con:
            return con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'cohort_view'"
            ).fetchone()[0]

    before = count()
    at = open_page("cohorts", tab="Build a cohort")  # only the open tab runs (issue 23)
    assert not at.exception and count() == before + 1
    at.run()
    at.run()  # reruns of the same session and definition write nothing more
    assert count() == before + 1
    open_page("cohorts", tab="Build a cohort")  # another session
    assert count() == before + 2


def test_an_explanation_event_names_the_patient_by_pseudonym_on_the_governance_page(
    imaging_db,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setenv("ONCOLENS_DB", str(imaging_db["db"]))
    at = open_page("imaging", patient=str(imaging_db["brain_pid"]))
    assert not at.exception, at.exception
    events = _events(imaging_db["db"], "explanation_shown")
    assert events and events[-1][2] == str(imaging_db["brain_pid"])
    with store.open_store(imaging_db["db"], read_only=True) as con:
        key = pseudonyms.store_secret(con)
    shown = auth.protect_ids(
        pd.DataFrame({"subject": [events[-1][2]]}), imaging_db["db"], role="ethics_board"
    )
    assert shown["subject"].iloc[0] == pseudonyms.pseudonym(key, events[-1][2])
    assert shown["subject"].iloc[0] == pseudonyms.pseudonym(key, imaging_db["brain_pid"])


def test_an_edit_in_place_shows_after_run_the_checks_again(demo_db, tmp_path, monkeypatch):
    """Results are kept while row counts stay (page views write audit events all the time); an
    UPDATE changes no count, so the tab's button runs the checks anew."""
    db = Path(shutil.copy(demo_db, tmp_path / "edited.duckdb"))
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    at = _open("ethics_board", "board-member")
    assert f"All {len(quality.CHECKS)} data-quality checks pass" in texts(at.success)
    with store.open_store(db) as con:
        con.execute(
            "UPDATE measurement SET value = 900 WHERE measurement_id = (SELECT min(measurement_id) "
            "FROM measurement WHERE concept = 'lesion_longest_diameter')"
        )
    at.run()
    assert f"All {len(quality.CHECKS)} data-quality checks pass" in texts(at.success)
    at = _button(at, "Run the checks again").click().run()
    assert "1 of" in texts(at.error) and "measurement value plausible" in texts(at.error)


def test_an_open_session_ends_when_its_account_is_deactivated(env):
    users.create_account(env, "dr.gone", "oncologist", password=PASSWORD, email=None, actor="t")
    at = open_page("home", role="oncologist")
    s = at.session_state[auth.SESSION_KEY]
    at.session_state[auth.SESSION_KEY] = auth.Session(
        "dr.gone", "oncologist", s.method, s.last_active, s.started
    )
    at.run()
    assert auth.SESSION_KEY in at.session_state  # still an active account
    users.set_active(env, "dr.gone", False, actor="gov-admin", actor_role="admin")
    at.session_state[auth._TOKEN_SET_KEY] = 0.0  # the once-a-minute account check is due
    at.run()
    assert auth.SESSION_KEY not in at.session_state
    assert "changed by an administrator" in texts(at.info)
