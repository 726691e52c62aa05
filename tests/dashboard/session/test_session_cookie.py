"""A new tab or a reload resumes the session from the signed cookie; refused tokens sign nobody in."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analytics import store
from analytics.governance import audit, session_tokens, users
from dashboard.session import auth
from tests.dashboard.app_pages.test_pages import APP, TIMEOUT_S, texts


@pytest.fixture
def own_db(demo_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    monkeypatch.setenv("ONCOLENS_DB", str(path))
    with store.open_store(path) as con:
        for name, role in (("nurse", "care_team"), ("board", "ethics_board")):
            if users.get_user(con, name) is None:
                users.add_user(con, name, role, password="a long enough password 1")
    return path


def _token(db: Path, username: str, issued: float | None = None, lifetime: float = 1800) -> str:
    with store.open_store(db, read_only=True) as con:
        key = session_tokens.session_key(con)
    return session_tokens.issue(key, username, issued or time.time(), lifetime)


def _tab(monkeypatch, token: str | None, **query: str) -> AppTest:
    """A fresh tab (no session state) whose connection carried ``token`` as the session cookie."""
    monkeypatch.setattr(auth, "_cookie_token", lambda: token)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.query_params.update(query)
    return at.run()


def test_a_new_tab_with_a_valid_cookie_opens_the_linked_patient_signed_in(own_db, monkeypatch):
    at = _tab(monkeypatch, _token(own_db, "nurse"), patient="7")
    assert not at.exception
    s = at.session_state[auth.SESSION_KEY]
    assert (s.username, s.role, s.method) == ("nurse", "care_team", "token")
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception and any(re.search(r"· id 7$", h.value) for h in at.header)
    with store.open_store(own_db, read_only=True) as con:
        assert (
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'session_resumed' AND actor = 'nurse'"
            ).fetchone()[0]
            == 1
        )


def test_the_role_comes_from_the_account_not_the_token(own_db, monkeypatch):
    """The ethics board resumed from a cookie gets its own pages only: no Patient page."""
    at = _tab(monkeypatch, _token(own_db, "board"), patient="7")
    assert not at.exception and at.session_state[auth.SESSION_KEY].role == "ethics_board"
    assert not auth.may_open("ethics_board", "patient")


@pytest.mark.parametrize("case", ["expired", "forged", "revoked", "removed", "none"])
def test_a_refused_cookie_shows_the_sign_in_form(own_db, monkeypatch, case):
    token = _token(own_db, "nurse")
    if case == "expired":
        token = _token(own_db, "nurse", issued=time.time() - 3600, lifetime=1800)
    elif case == "forged":
        token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    elif case == "revoked":
        audit.record_event(own_db, actor="nurse", role="care_team", action="sign_out")
    elif case == "removed":
        with store.open_store(own_db) as con:
            users.remove_user(con, "nurse")
    elif case == "none":
        token = None
    at = _tab(monkeypatch, token, patient="7")
    assert not at.exception
    assert auth.SESSION_KEY not in at.session_state
    assert "Username" in [t.label for t in at.text_input]


def test_a_signed_in_tab_sets_the_cookie_with_a_token_for_its_user(own_db, monkeypatch):
    at = _tab(monkeypatch, _token(own_db, "nurse"))
    html = [e for e in at.get("html")] if at.get("html") else []
    body = " ".join(str(getattr(e, "proto", e)) for e in html) or str(at.main) + str(at.sidebar)
    found = re.search(rf"{auth.SESSION_COOKIE}=([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)", body)
    assert found, "no session cookie script on the signed-in page"
    assert "SameSite=Strict" in body and "Max-Age=1800" in body
    with store.open_store(own_db, read_only=True) as con:
        claims = session_tokens.read(session_tokens.session_key(con), found.group(1), time.time())
    assert claims.username == "nurse"
    assert "oncolens_session" not in texts(at.markdown)  # never shown as text
