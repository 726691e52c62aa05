"""Sign-in and roles through Streamlit's AppTest: the form, each role's pages, URL edits, timeouts, pseudonyms."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from analytics import store
from analytics.governance import audit, pseudonyms, users
from dashboard.session import auth
from tests.dashboard.app_pages.test_pages import APP, TIMEOUT_S, open_page, signed_in, texts

PASSWORD = "Auth-Test-Passw0rd"
WRONG = "Wrong-XYZZY-Passw0rd"
ACCOUNTS = {
    "auth-onc": "oncologist",
    "auth-care": "care_team",
    "auth-ethics": "ethics_board",
    "auth-admin": "admin",
}
TITLES = {
    "home": "OncoLens",
    "patient": "Patient",
    "imaging": "Imaging",
    "worklist": "Worklist",
    "cohorts": "Cohorts",
    "governance": "Governance",
}
EXPECTED = {  # the roles table of docs/architecture.md, written out again on purpose
    "oncologist": {"home", "patient", "imaging", "worklist", "cohorts"},
    "care_team": {"home", "patient", "worklist"},
    "ethics_board": {"home", "cohorts", "governance"},
    "admin": {"home", "cohorts", "governance"},
}


@pytest.fixture
def accounts(app_env):
    """Real accounts (argon2 hashes) in the app's test store, created once per store."""
    with store.open_store(app_env) as con:
        for name, role in ACCOUNTS.items():
            if users.get_user(con, name) is None:
                users.add_user(con, name, role, password=PASSWORD, email=f"{name}@hospital.example")
        con.execute("DELETE FROM sign_in_throttle")
    return app_env


def signed_out(**query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.query_params.update(query)
    return at.run()


def submit(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    return at.run()


def open_by_url(at: AppTest, page: str) -> AppTest:
    """What a browser does with ``/<page>`` typed into the address bar: ask for the page by its URL name."""
    at._page_hash = calc_hash(page)  # AppTest.switch_page only accepts registered pages
    return at.run()


def registered(at: AppTest) -> set[str]:
    return {info.get("url_pathname") or "home" for info in at._registered_pages.values()}


def _last_events(db, n=1):
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT actor, role, action, details FROM audit_event ORDER BY event_id DESC LIMIT ?",
            [n],
        ).fetchall()


def test_signed_out_sees_only_the_sign_in_form(app_env):
    at = signed_out(patient="42")
    assert not at.exception
    assert [t.value for t in at.title] == ["OncoLens"]
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.sidebar.button and not at.sidebar.text_input
    assert not at.metric and not at.dataframe and not at.get("plotly_chart")
    assert "MRN" not in str(at.main)
    assert all(
        "url_pathname" not in info for info in at._registered_pages.values()
    )  # no navigation ran


@pytest.mark.parametrize("page", ["patient", "governance", "worklist"])
def test_signed_out_url_to_a_page_gives_the_form(app_env, page):
    at = open_by_url(signed_out(), page)
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert TITLES[page] not in [t.value for t in at.title] or page == "home"


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_sees_exactly_its_pages(app_env, role):
    assert {p for p, roles in auth.PAGES.items() if role in roles} == EXPECTED[role]
    at = open_page("home", role=role)
    assert registered(at) == EXPECTED[role]
    for page in TITLES:
        if page == "home":
            continue
        if page in EXPECTED[role]:
            at = open_page(page, role=role)
            assert not at.exception
            assert at.title[0].value == TITLES[page], (role, page)
        else:  # the role edits the URL to a page it may not see
            at = open_by_url(open_page("home", role=role, patient="42"), page)
            assert not at.exception
            assert [t.value for t in at.title] == ["OncoLens"], (
                role,
                page,
            )  # Home, nothing of the page
            assert "MRN00000042" not in str(at.main)


@pytest.mark.parametrize(
    ("page", "role"),
    [
        ("governance", "care_team"),
        ("patient", "ethics_board"),
        ("worklist", "admin"),
        ("imaging", "care_team"),
    ],
)
def test_a_page_reached_without_the_router_still_refuses(app_env, page, role):
    """Second line of defence: the page's own require_page check (here the page runs as the main script)."""
    at = AppTest.from_file(str(APP.parent / "app_pages" / f"{page}.py"), default_timeout=TIMEOUT_S)
    at.session_state[auth.SESSION_KEY] = signed_in(role)
    at.query_params["patient"] = "42"
    at.run()
    assert "not available to your role" in texts(at.error)
    assert not at.title and not at.dataframe and not at.metric


def test_the_form_signs_in_and_opens_the_roles_pages(accounts):
    at = submit(signed_out(), "AUTH-ONC", PASSWORD)
    assert not at.exception and not at.error
    assert "Signed in as **auth-onc** · oncologist" in texts(at.sidebar.caption)
    assert registered(at) == EXPECTED["oncologist"]
    assert at.session_state[auth.SESSION_KEY].username == "auth-onc"
    assert _last_events(accounts)[0][:3] == ("auth-onc", "oncologist", "sign_in")


def test_wrong_password_and_unknown_user_get_the_same_refusal_and_nothing_is_logged(
    accounts, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    wrong = submit(signed_out(), "auth-care", WRONG)
    unknown = submit(signed_out(), "no-such-user", WRONG)
    for at in (wrong, unknown):
        assert [e.value for e in at.error] == [users.REFUSED]
        assert [t.label for t in at.text_input] == ["Username", "Password"]
        assert auth.SESSION_KEY not in at.session_state
    assert [e[:3] for e in _last_events(accounts, 2)] == [
        ("unknown", None, "sign_in_failed"),
        ("auth-care", "care_team", "sign_in_failed"),
    ]
    out, err = capfd.readouterr()
    assert WRONG not in caplog.text + out + err
    with store.open_store(accounts, read_only=True) as con:
        trail = str(con.execute("SELECT * FROM audit_event").fetchall())
    assert WRONG not in trail and "no-such-user" not in trail


def test_an_empty_form_is_refused_and_audited_like_any_failed_sign_in(accounts):
    """Issue 22: ten refusals on screen gave five events, because a blank submission (a form sent
    twice, the second time cleared) was refused without a write. Every refusal is now one event."""
    before = audit.verify_store(accounts).events
    at = submit(signed_out(), "", "")
    assert [e.value for e in at.error] == [users.REFUSED]
    assert audit.verify_store(accounts).events == before + 1
    actor, role, action, details = _last_events(accounts)[0]
    assert (actor, role, action) == ("unknown", None, "sign_in_failed") and '"blank"' in details


def test_ten_failed_sign_ins_in_the_form_give_ten_events(accounts):
    with store.open_store(accounts, read_only=True) as con:
        start = con.execute("SELECT max(event_id) FROM audit_event").fetchone()[0]
    at = signed_out()
    tries = [("auth-care", WRONG), ("auth-care", ""), ("", ""), ("no-such-user", WRONG)] * 2
    for name, password in [*tries, ("auth-admin", WRONG), ("  ", WRONG)]:
        at = submit(at, name, password)
        assert auth.SESSION_KEY not in at.session_state and at.error
    with store.open_store(accounts, read_only=True) as con:
        actions = [
            r[0]
            for r in con.execute(
                "SELECT action FROM audit_event WHERE event_id > ? ORDER BY event_id", [start]
            ).fetchall()
        ]
    assert actions == ["sign_in_failed"] * 10


def test_repeated_failures_slow_the_next_attempt(accounts):
    with store.open_store(accounts) as con:
        key = pseudonyms.keyed_hash(pseudonyms.ensure_secret(con), "username", "auth-admin")
        con.execute("INSERT INTO sign_in_throttle VALUES (?, 12, ?)", [key, users.utc_now()])
    at = submit(signed_out(), "auth-admin", PASSWORD)  # even the right password waits
    assert "Too many failed sign-ins" in texts(at.error) and "try again in" in texts(at.error)
    assert auth.SESSION_KEY not in at.session_state
    with store.open_store(accounts) as con:
        con.execute(
            "UPDATE sign_in_throttle SET last_failure_at = ? WHERE username_key = ?",
            [users.utc_now() - timedelta(hours=1), key],
        )
    at = submit(signed_out(), "auth-admin", PASSWORD)
    assert at.session_state[auth.SESSION_KEY].role == "admin"


def test_an_idle_session_returns_to_the_sign_in_form_and_is_audited(app_env):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state[auth.SESSION_KEY] = signed_in("oncologist", "idle-doc", idle_s=31 * 60)
    at.query_params["patient"] = "42"
    at.run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert "ended after 30 minutes without activity" in texts(at.info)
    assert "MRN00000042" not in str(at.main)
    assert at.query_params.get("patient") is None  # the next user does not land on her
    actor, role, action, details = _last_events(app_env)[0]
    assert (actor, role, action) == (
        "idle-doc",
        "oncologist",
        "session_timeout",
    ) and '"idle_s":18' in details


def test_the_idle_timeout_is_configurable_and_activity_restarts_it(app_env, monkeypatch):
    monkeypatch.setenv(auth.IDLE_TIMEOUT_ENV, "2")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state[auth.SESSION_KEY] = signed_in("care_team", idle_s=90)  # 1.5 of 2 minutes
    at.run()
    assert at.title[0].value == "OncoLens" and "Password" not in [t.label for t in at.text_input]
    assert auth.SESSION_KEY in at.session_state
    assert (
        time.time() - at.session_state[auth.SESSION_KEY].last_active < 30
    )  # the run counted as activity
    at.session_state[auth.SESSION_KEY] = signed_in("care_team", idle_s=121)
    at.run()
    assert auth.SESSION_KEY not in at.session_state and "2 minutes" in texts(at.info)


def test_sign_out_forgets_the_session_and_is_audited(app_env):
    at = open_page("patient", patient="42")
    at.sidebar.button(key="oncolens.sign_out").click().run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert "signed out" in texts(at.info)
    assert (
        auth.SESSION_KEY not in at.session_state
        and "oncolens.last_patient_id" not in at.session_state
    )
    assert _last_events(app_env)[0][:3] == ("demo-user", "oncologist", "sign_out")


@pytest.mark.parametrize("role", ["ethics_board", "admin"])
def test_roles_outside_the_clinic_see_pseudonyms_only(app_env, role):
    open_page("patient", patient="11")  # an oncologist's view: subject "11"
    at = open_page("governance", role=role, tab="Audit trail")  # only the open tab runs
    assert not at.exception
    events = next(d.value for d in at.dataframe if "subject" in d.value.columns)
    subjects = set(events["subject"].dropna())
    assert subjects and all(s.startswith("P-") and len(s) == 18 for s in subjects)
    assert "11" not in subjects
    with store.open_store(app_env, read_only=True) as con:
        key = pseudonyms.store_secret(con)
    assert pseudonyms.pseudonym(key, 11) in subjects
    assert not at.sidebar.text_input  # no patient search either
    home = open_page("home", role=role)
    assert "MRN" not in str(home.main) and not home.sidebar.text_input


def test_clinicians_see_real_ids_in_protect_ids():
    import pandas as pd

    frame = pd.DataFrame({"subject": ["11", None], "action": ["view_patient", "sign_in"]})
    assert auth.protect_ids(frame, "unused.duckdb", role="oncologist") is frame


def _sso_app(email: str | None, logged_in: bool = True) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "test",
        "client_id": "oncolens",
        "client_secret": "test",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    at.user = {"is_logged_in": logged_in, "email": email} if logged_in else {"is_logged_in": False}
    return at


def test_single_sign_on_is_offered_when_configured(accounts):
    at = _sso_app(None, logged_in=False).run()
    assert "Sign in with single sign-on" in [b.label for b in at.button]
    assert [b.label for b in signed_out().button] == ["Sign in"]  # not offered without [auth]


def test_single_sign_on_maps_the_identity_to_its_role(accounts):
    at = _sso_app("Auth-Ethics@Hospital.example").run()
    assert not at.exception
    assert at.session_state[auth.SESSION_KEY].role == "ethics_board"
    assert at.session_state[auth.SESSION_KEY].method == "sso"
    assert registered(at) == EXPECTED["ethics_board"]


def test_an_unmapped_identity_is_refused_and_audited_once(accounts):
    at = _sso_app("stranger@elsewhere.example").run()
    assert "has no OncoLens account" in texts(at.error)
    assert auth.SESSION_KEY not in at.session_state
    before = audit.verify_store(accounts).events
    at.run()
    assert audit.verify_store(accounts).events == before  # reruns do not flood the trail
    assert _last_events(accounts)[0][:3] == ("unknown", None, "sign_in_failed")


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("nan", 30.0),
        ("inf", 30.0),
        ("-inf", 30.0),
        ("0", 30.0),
        ("-5", 30.0),
        ("abc", 30.0),
        ("0.5", 1.0),
        ("1e9", 24 * 60.0),
        ("45", 45.0),
    ],
)
def test_an_idle_timeout_can_never_be_switched_off(monkeypatch, value, minutes):
    monkeypatch.setenv(auth.IDLE_TIMEOUT_ENV, value)
    assert auth.idle_timeout_s() == minutes * 60
