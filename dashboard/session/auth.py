"""Sign-in, roles and page access: the Streamlit side of ``analytics.governance.users``.

Why two checks: ``app.py`` registers only the pages a role may open with
``st.navigation``, so a URL naming another page leads nowhere (Streamlit falls
back to Home); and every page starts with ``require_page``, so a page that is
reached some other way (a future link, a routing bug) still refuses.

- Signed out, the app shows only the sign-in form (``gate``).
- The session lives in ``st.session_state`` under ``SESSION_KEY`` as a frozen
  ``Session``; it ends after ``idle_timeout_s`` without a rerun (default 30
  minutes, ``$ONCOLENS_IDLE_TIMEOUT_MIN``). The check runs at the start of
  every rerun, so an expired session never renders a page.
- Single sign-on (Streamlit's OIDC, ``st.login``) is offered when ``[auth]`` is
  configured in ``.streamlit/secrets.toml``; the identity's email must map to an
  account (``oncolens users add NAME --role ROLE --email E --sso-only``).
- Roles outside the clinic (``ethics_board``, ``admin``) see patient ids only as
  keyed-hash pseudonyms (``protect_ids``).
- A reload or a link opened in a new tab starts a new Streamlit session; it resumes the
  signed-in user from a signed, expiring token kept in a cookie (``SESSION_COOKIE``,
  ``analytics.governance.session_tokens``): re-issued while the user works, so it expires one
  idle timeout after the last action; refused after sign-out. The account and its role are
  read again on resume. Why a cookie and not the URL: docs/governance.md.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from analytics import store
from analytics.governance import audit, pseudonyms, session_tokens, users
from dashboard import resources

ALL_ROLES = frozenset(users.ROLES)
# Page (file stem in app_pages/) -> roles that may open it. docs/architecture.md explains each choice.
PAGES: dict[str, frozenset[str]] = {
    "home": ALL_ROLES,
    "patient": frozenset(
        {"oncologist", "care_team"}
    ),  # the care team sees no recommendation (RECOMMENDS)
    "imaging": frozenset({"oncologist"}),
    "worklist": frozenset({"oncologist", "care_team"}),
    "cohorts": frozenset({"oncologist", "ethics_board", "admin"}),
    "governance": frozenset({"ethics_board", "admin"}),
}
# Roles shown treatment recommendations and asked to accept or override them.
RECOMMENDS = users.RECOMMENDATION_ROLES  # the same set decides the tumour-board PDF
# Roles that treat patients and so see real patient ids and MRNs; the others see pseudonyms.
CLINICAL_ROLES = frozenset({"oncologist", "care_team"})

SESSION_KEY = "oncolens.auth.session"
_NOTICE_KEY = "oncolens.auth.notice"  # str: why the user is looking at the sign-in form
_SSO_REFUSED_KEY = "oncolens.auth.sso_refused"  # str: the refusal for an SSO identity, audited once
_TOKEN_SET_KEY = "oncolens.auth.token_set_at"  # float: when this tab last set the session cookie
SESSION_COOKIE = "oncolens_session"
TOKEN_REISSUE_S = 60.0  # re-issue the cookie after a minute of use: it dies ~one idle timeout after the last action
IDLE_TIMEOUT_ENV = "ONCOLENS_IDLE_TIMEOUT_MIN"
DEFAULT_IDLE_TIMEOUT_MIN = 30.0


@dataclass(frozen=True)
class Session:
    """Who is signed in, how, and when they last did something (``time.time()`` seconds)."""

    username: str
    role: str
    method: str = "password"  # or "sso", or "token" (resumed from the session cookie)
    last_active: float = 0.0
    started: float = 0.0  # when this tab's session began (sign-in or resume); 0: unknown


def clock() -> float:
    """Seconds since the epoch; one place to read time, so a test can replace it."""
    return time.time()


def idle_timeout_s() -> float:
    """Idle minutes before sign-out, from ``$ONCOLENS_IDLE_TIMEOUT_MIN`` (default 30), between 1 and
    24 hours; anything else (text, ``nan``, ``inf``, 0, negative) gives the default, so a typo can
    never switch the timeout off (``nan`` compared false with everything and disabled it)."""
    try:
        minutes = float(os.environ.get(IDLE_TIMEOUT_ENV, DEFAULT_IDLE_TIMEOUT_MIN))
    except ValueError:
        minutes = DEFAULT_IDLE_TIMEOUT_MIN
    if not math.isfinite(minutes) or minutes <= 0:
        minutes = DEFAULT_IDLE_TIMEOUT_MIN
    return min(max(minutes, 1.0), 24 * 60.0) * 60


def may_open(role: str | None, page: str) -> bool:
    return role is not None and role in PAGES.get(page, frozenset())


def may_recommend() -> bool:
    """Whether the signed-in user may see treatment recommendations (``users.sees_recommendation``)."""
    s = session()
    return users.sees_recommendation(s.role if s else None)


def sees_patient_ids(role: str | None) -> bool:
    return role in CLINICAL_ROLES


def session() -> Session | None:
    """The signed-in session of this browser tab, if any (no timeout check: ``gate`` does that)."""
    value = st.session_state.get(SESSION_KEY)
    return value if isinstance(value, Session) else None


def actor() -> tuple[str, str | None]:
    """(username, role) for the audit trail; ``("anonymous", None)`` outside a session."""
    s = session()
    return (s.username, s.role) if s else ("anonymous", None)


def sso_configured() -> bool:
    """True when ``[auth]`` is in the app's secrets (Streamlit's OIDC settings)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _end(db_path: Path, s: Session, *, timed_out: bool, notice: str | None) -> None:
    """Audit the end of the session and forget everything this tab held (patient, views, widgets)."""
    try:
        users.sign_out(
            db_path,
            s.username,
            s.role,
            timed_out=timed_out,
            idle_s=clock() - s.last_active if timed_out else None,
            wait_s=resources.READ_WAIT_S,
        )
    except store.StoreError:
        pass  # the session ends anyway; a store that cannot be written is shown on the sign-in form
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.query_params.clear()
    if notice:
        st.session_state[_NOTICE_KEY] = notice
    if s.method == "sso" and sso_configured():
        st.logout()  # also clears the identity cookie, so SSO does not sign the tab straight back in


def current_session(db_path: Path) -> Session | None:
    """The session if it is still live (its idle clock restarts); an expired one is ended and audited."""
    s = session()
    if s is None:
        return None
    now = clock()
    if now - s.last_active > idle_timeout_s():
        minutes = idle_timeout_s() / 60
        _end(
            db_path,
            s,
            timed_out=True,
            notice=f"Your session ended after {minutes:g} minutes without activity. Sign in again.",
        )
        return None
    s = replace(s, last_active=now)
    st.session_state[SESSION_KEY] = s
    return s


IDLE_WATCH_S = 30  # how often an open tab checks its own idle time (issue 24)


@st.fragment(run_every=IDLE_WATCH_S)
def idle_watch() -> None:
    """Ends an idle session without waiting for a click: every ``IDLE_WATCH_S`` the tab reruns this
    fragment only (it draws nothing and does not count as activity); once the idle time has passed
    it reruns the whole app, whose gate ends the session and clears the patient from the screen."""
    s = session()
    if s is not None and clock() - s.last_active > idle_timeout_s():
        st.rerun(scope="app")


def _start(user: users.User, method: str) -> None:
    for key in list(st.session_state.keys()):  # nothing of a previous user survives in this tab
        del st.session_state[key]
    now = clock()
    st.session_state[SESSION_KEY] = Session(user.username, user.role, method, now, now)


def _cookie_token() -> str | None:
    """The session cookie this tab's connection was opened with, if any."""
    try:
        value = st.context.cookies.get(SESSION_COOKIE)
    except Exception:  # no browser behind this run (bare script, AppTest)
        return None
    return value if isinstance(value, str) and value else None


def resume(db_path: Path, token: str | None) -> Session | None:
    """Start a session from a session token: genuine, unexpired, not revoked, and its account still there.

    Audited as ``session_resumed``. Returns None (and changes nothing) for any token it refuses.
    """
    if not token:
        return None
    try:
        with store.open_store(db_path, read_only=True, wait_s=resources.READ_WAIT_S) as con:
            key = session_tokens.session_key(con)
            if key is None:
                return None
            claims = session_tokens.read(key, token, clock())
            if session_tokens.revoked(con, claims):
                return None
            user = users.get_user(con, claims.username)
    except (session_tokens.TokenError, store.StoreError):
        return None
    if user is None or not user.active:
        return None
    _start(user, "token")
    try:
        audit.record_event(
            db_path,
            actor=user.username,
            role=user.role,
            action="session_resumed",
            details={"token_issued_at": round(claims.issued_at)},
            wait_s=resources.READ_WAIT_S,
        )
    except store.StoreError:
        pass  # the sign-in it continues was audited; a busy store must not sign the user out
    return session()


def _set_cookie(value: str, max_age_s: float) -> None:
    """Set (or, with ``max_age_s`` 0, delete) the session cookie in the browser.

    ``st.context.cookies`` only reads; the cookie is written by a one-line script. The value is
    a token of base64url text and a dot (no quote can end the string literal).
    """
    script = (
        "<script>(function(){var s=location.protocol==='https:'?'; Secure':'';"
        f"document.cookie='{SESSION_COOKIE}={value}; Path=/; Max-Age={int(max_age_s)}; "
        "SameSite=Strict'+s;})();</script>"
    )
    st.html(script, unsafe_allow_javascript=True)


def keep_cookie(db_path: Path, s: Session) -> None:
    """Re-issue this browser's session token while the user works (at most once a minute), and end
    the session when an admin has since removed, deactivated or re-roled the account."""
    now = clock()
    if now - float(st.session_state.get(_TOKEN_SET_KEY, 0.0)) < TOKEN_REISSUE_S:
        return
    try:
        with store.open_store(db_path, read_only=True, wait_s=resources.READ_WAIT_S) as con:
            key = session_tokens.session_key(con)
            account = users.get_user(con, s.username)
    except store.StoreError:
        return  # tried again on the next run
    if account is not None and (not account.active or account.role != s.role):
        # an admin deactivated or re-roled the account: this session ends now (a removed account
        # cannot resume; its open tab ends at the idle timeout: deactivate to end it at once)
        _end(
            db_path,
            s,
            timed_out=False,
            notice="Your account was changed by an administrator. Sign in again.",
        )
        st.rerun()
    if key is None:
        return
    _set_cookie(session_tokens.issue(key, s.username, now, idle_timeout_s()), idle_timeout_s())
    st.session_state[_TOKEN_SET_KEY] = now


def gate(db_path: Path) -> Session:
    """Return the live session (resumed from the session cookie in a new tab), or draw the sign-in
    form and stop the run."""
    s = current_session(db_path) or resume(db_path, _cookie_token())
    if s is not None:
        return s
    if _cookie_token():
        _set_cookie("", 0)  # a refused or stale token: forget it
    _sign_in_page(db_path)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def _sign_in_page(db_path: Path) -> None:
    """The landing page of a signed-out tab: what OncoLens is, the sign-in form, and where each role starts."""
    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.session import landing

    st.title("OncoLens")
    notice = st.session_state.get(_NOTICE_KEY)
    if notice:
        st.info(notice, icon=":material/lock_clock:")
    landing.render_intro()
    status = resources.store_status(db_path)
    if not status.ok:
        resources.show_store_problem(status)
        return
    form_column, guide_column = st.columns([1, 2], gap="large")
    with guide_column:
        landing.render_accounts(resources.demo_accounts(status))
    with form_column:
        st.markdown("#### Sign in")
        if sso_configured():
            _single_sign_on(db_path)
        _password_form(db_path)


_USERNAME_KEY = "oncolens.sign_in.username"
_PASSWORD_KEY = "oncolens.sign_in.password"  # widget state only; cleared with the form on submit
_ATTEMPT_KEY = (
    "oncolens.auth.attempt"  # the last submission's SignInResult, or why none was possible
)


def _check_submission(db_path: Path) -> None:
    """The form's callback: check the submitted name and password and keep the outcome for the run.

    Why a callback (issue 22: ten refusals gave five events): a second click while a run is still
    checking the first interrupts that run, and Streamlit stops it at its next element, before the
    body would have reached ``users.sign_in``; callbacks run first, before anything is drawn, so
    every submission that reaches the app is checked and audited (blank fields too).
    """
    try:
        st.session_state[_ATTEMPT_KEY] = users.sign_in(
            db_path,
            str(st.session_state.get(_USERNAME_KEY) or ""),
            str(st.session_state.get(_PASSWORD_KEY) or ""),
            wait_s=resources.READ_WAIT_S,
        )
    except store.StoreError as exc:
        st.session_state[_ATTEMPT_KEY] = f"Signing in is not possible right now: {exc}"


def _password_form(db_path: Path) -> None:
    with st.form("oncolens.sign_in", clear_on_submit=True):
        st.text_input("Username", autocomplete="username", key=_USERNAME_KEY)
        st.text_input(
            "Password", type="password", autocomplete="current-password", key=_PASSWORD_KEY
        )
        st.form_submit_button(
            "Sign in", type="primary", on_click=_check_submission, args=(db_path,)
        )
    result = st.session_state.pop(_ATTEMPT_KEY, None)
    if result is None:
        return
    if isinstance(result, str):
        st.error(result)
        return
    if result.ok and result.user is not None:
        _start(result.user, "password")
        st.rerun()
    st.error(result.message)
    if result.retry_after_s > 0 and result.message == users.REFUSED:
        st.caption("Repeated failures slow down further attempts for this username.")


def _single_sign_on(db_path: Path) -> None:
    if not st.user.get("is_logged_in"):
        if st.button("Sign in with single sign-on", type="primary"):
            st.login()
        st.caption("Or with a local account:")
        return
    refused = st.session_state.get(_SSO_REFUSED_KEY)
    if refused is None:
        try:
            result = users.sign_in_sso(db_path, st.user.get("email"), wait_s=resources.READ_WAIT_S)
        except store.StoreError as exc:
            st.error(f"Signing in is not possible right now: {exc}")
            return
        if result.ok and result.user is not None:
            _start(result.user, "sso")
            st.rerun()
        refused = st.session_state[_SSO_REFUSED_KEY] = result.message
    st.error(refused)
    if st.button("Sign out of single sign-on"):
        st.session_state.pop(_SSO_REFUSED_KEY, None)
        st.logout()


def sidebar(db_path: Path, s: Session) -> None:
    """Who is signed in, and the sign-out button."""
    with st.sidebar:
        keep_cookie(db_path, s)
        st.caption(f"Signed in as **{s.username}** · {s.role.replace('_', ' ')}")
        if st.button("Sign out", key="oncolens.sign_out"):
            _end(db_path, s, timed_out=False, notice="You have signed out.")
            st.rerun()


def require_role(*roles: str) -> Session:
    """Stop the page unless the signed-in role is one of ``roles`` (the second line of defence)."""
    s = session()
    if s is None or s.role not in roles:
        st.error("This page is not available to your role.", icon=":material/block:")
        st.stop()
    assert s is not None
    return s


def require_page(page: str) -> Session:
    """``require_role`` with the roles ``PAGES`` gives ``page`` (its file stem)."""
    return require_role(*PAGES[page])


def protect_ids(
    frame: pd.DataFrame,
    db_path: str | Path,
    columns: tuple[str, ...] = ("subject", "person_id"),
    role: str | None = None,
) -> pd.DataFrame:
    """``frame`` with patient ids replaced by pseudonyms unless ``role`` (default: the session's) is clinical.

    Pseudonyms are HMAC-SHA256 under the store's secret (``pseudonyms.pseudonym``):
    stable, so events of one patient stay linkable, and not reversible without
    the store.
    """
    role = role if role is not None else (session().role if session() else None)
    present = [c for c in columns if c in frame.columns]
    if sees_patient_ids(role) or not present or frame.empty:
        return frame
    key = _store_key(db_path)
    out = frame.copy()
    for column in present:
        out[column] = [None if pd.isna(v) else pseudonyms.pseudonym(key, v) for v in out[column]]
    return out


def patient_label(person_id: int, db_path: str | Path) -> str:
    """How a patient id is written for the signed-in role: the id, or its pseudonym."""
    role = session().role if session() else None
    return (
        str(person_id)
        if sees_patient_ids(role)
        else pseudonyms.pseudonym(_store_key(db_path), person_id)
    )


def _store_key(db_path: str | Path) -> bytes:
    with store.open_store(db_path, read_only=True, wait_s=resources.READ_WAIT_S) as con:
        key = pseudonyms.store_secret(con)
    if key is None:  # a store older than schema 3 (signing in migrates it, so rarely here)
        with store.open_store(db_path, wait_s=resources.READ_WAIT_S) as con:
            key = pseudonyms.ensure_secret(con)
    return key
