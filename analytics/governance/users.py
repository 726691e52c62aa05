"""Local accounts and roles, sign-in with per-username back-off, and the store's pseudonym key.

Why in ``analytics`` and free of Streamlit: the CLI (``oncolens users``), the app's
sign-in form and the tests must share one code path for who may sign in, and the
rules (hashing, back-off, what the trail records) are testable with a real store
and an injected clock.

- Passwords are hashed with argon2id (argon2-cffi defaults, RFC 9106 low-memory
  profile); only the PHC string is stored. A password never reaches a log, an
  exception message or the audit trail.
- A wrong password and an unknown username get the same message and cost the same
  argon2 work (a dummy hash is verified for unknown names), so the form does not
  tell which accounts exist.
- Back-off: after ``free_failures`` failures in a row for one typed username,
  each further attempt must wait ``base * 2**(failures - free_failures)`` seconds
  (capped) after the last failure; attempts inside the wait are refused without
  checking the password. The count lives in the store (``sign_in_throttle``), so
  it survives reruns, new sessions and restarts, and is keyed by a keyed hash of
  the typed name, so that a password typed into the username box is never stored.
  Unknown usernames are throttled the same way as real ones.
- The audit trail names the account only when it exists (``actor`` is
  ``unknown`` otherwise: the typed text may be a password). Every refused sign-in
  is one ``sign_in_failed`` event, blank fields and throttled attempts included.
- Accounts are managed by the CLI and by the admin in the app through the same
  functions (``create_account``, ``change_role``, ``set_active``, ``delete_account``), each
  change written with a chained audit event in the same transaction. A deactivated
  account (schema version 11, ``deactivated_at``) keeps its name in the trail but
  cannot sign in, resume a session or keep one; the last active admin cannot be
  deactivated or lose the role, so the store always has someone who can manage it.
- Pseudonyms: ``pseudonym(key, person_id)`` is HMAC-SHA256 under a random
  per-store secret (``app_secret``), so the ethics board sees stable ids it
  cannot turn back into patients, while the store can still link them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import duckdb
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from analytics import store
from analytics.governance import ROLES, audit
from analytics.governance.pseudonyms import ensure_secret, keyed_hash

# Roles shown the treatment recommendation (page, tumour-board PDF): the ones who decide it with the
# patient. One set for every door (dashboard.session.auth.RECOMMENDS, dashboard.services.report).
RECOMMENDATION_ROLES = frozenset({"oncologist"})


def sees_recommendation(role: str | None) -> bool:
    """Whether ``role`` may see treatment recommendations; no role (None) may not (fail closed)."""
    return role in RECOMMENDATION_ROLES


MIN_PASSWORD_LENGTH = 10
REFUSED = "Unknown username or wrong password."
UNKNOWN_ACTOR = "unknown"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")


class UserError(ValueError):
    """An account operation that cannot be done as asked; the message never contains a password."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    email: str | None
    has_password: bool
    created_at: datetime
    active: bool = True  # False: deactivated by an admin (kept for the audit trail's names)


@dataclass(frozen=True)
class ThrottlePolicy:
    """How failed sign-ins slow down the next attempt for the same typed username."""

    free_failures: int = 3  # failures in a row before any wait
    base_wait_s: float = 1.0  # wait after the first counted failure; doubles with each further one
    max_wait_s: float = 900.0  # never more than 15 minutes
    forget_after_s: float = 86_400  # a day without failures starts the count again

    def current_failures(
        self, failures: int, last_failure_at: datetime | None, now: datetime
    ) -> int:
        if (
            last_failure_at is None
            or (now - last_failure_at).total_seconds() >= self.forget_after_s
        ):
            return 0
        return failures

    def wait_s(self, failures: int, last_failure_at: datetime | None, now: datetime) -> float:
        """Seconds left before this username may try again (0: it may try now)."""
        failures = self.current_failures(failures, last_failure_at, now)
        if failures < self.free_failures or last_failure_at is None:
            return 0.0
        wait = min(self.base_wait_s * 2 ** (failures - self.free_failures), self.max_wait_s)
        return max(0.0, wait - (now - last_failure_at).total_seconds())


DEFAULT_POLICY = ThrottlePolicy()


@dataclass(frozen=True)
class SignInResult:
    """``user`` is set when signed in; otherwise ``message`` is what the form says."""

    user: User | None
    message: str
    retry_after_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.user is not None


def utc_now() -> datetime:
    """Naive UTC, as the store's TIMESTAMP columns hold it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


# --- accounts -------------------------------------------------------------------------


def normalise_username(text: str) -> str:
    return str(text).strip().lower()


def check_username(text: str) -> str:
    name = normalise_username(text)
    if not _USERNAME.match(name):
        raise UserError(
            "a username is 2-64 characters: lower-case letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def _check_email(email: str | None) -> str | None:
    if email is None:
        return None
    value = email.strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
        raise UserError("the email (single sign-on identity) must look like name@domain")
    return value


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB, t=3, p=4)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified for unknown usernames so that they cost the same time as real ones."""
    return _hasher().hash(secrets.token_hex(16))


def check_password(password: str, username: str = "") -> None:
    """Refuse passwords too weak to hash (the message never repeats the password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if username and password.strip().lower() == username:
        raise UserError("the password must not be the username")


def hash_password(password: str, username: str = "") -> str:
    check_password(password, username)
    return _hasher().hash(password)


def _password_matches(stored: str | None, password: str) -> bool:
    try:
        return _hasher().verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def _user(row: tuple) -> User:
    username, role, email, password_hash, created_at, deactivated_at = row
    return User(
        username, role, email, password_hash is not None, created_at, deactivated_at is None
    )


def _users(con: duckdb.DuckDBPyConnection, where: str, params: list) -> list[User]:
    """Accounts matching ``where`` (a constant of this module); a store before schema version 11
    (opened read-only, not migrated) has no deactivation column: every account is active there."""
    has_flag = bool(
        con.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'app_user' "
            "AND column_name = 'deactivated_at'"
        ).fetchall()
    )
    flag = "deactivated_at" if has_flag else "NULL::TIMESTAMP"
    sql = (
        f"SELECT username, role, email, password_hash, created_at, {flag} FROM app_user "  # noqa: S608
        f"{where} ORDER BY username"
    )
    return [_user(r) for r in con.execute(sql, params).fetchall()]


def add_user(
    con: duckdb.DuckDBPyConnection,
    username: str,
    role: str,
    *,
    password: str | None = None,
    email: str | None = None,
) -> User:
    """Create an account; ``password`` None makes it single-sign-on only (``email`` required)."""
    name, role, email = check_username(username), check_role(role), _check_email(email)
    if password is None and email is None:
        raise UserError("an account needs a password, an email for single sign-on, or both")
    digest = hash_password(password, name) if password is not None else None
    if get_user(con, name) is not None:
        raise UserError(f"user {name!r} already exists; remove it first to change it")
    if email is not None and user_by_email(con, email) is not None:
        raise UserError(f"another account already has the email {email}")
    con.execute(
        "INSERT INTO app_user (username, role, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        [name, role, email, digest, utc_now()],
    )
    return User(name, role, email, digest is not None, utc_now())


def remove_user(con: duckdb.DuckDBPyConnection, username: str) -> bool:
    """Delete an account; True when there was one. Its audit events stay (they name it)."""
    name = normalise_username(username)
    return bool(
        con.execute("DELETE FROM app_user WHERE username = ? RETURNING username", [name]).fetchall()
    )


def list_users(con: duckdb.DuckDBPyConnection) -> list[User]:
    return _users(con, "", [])


def get_user(con: duckdb.DuckDBPyConnection, username: str) -> User | None:
    rows = _users(con, "WHERE username = ?", [normalise_username(username)])
    return rows[0] if rows else None


def user_by_email(con: duckdb.DuckDBPyConnection, email: str) -> User | None:
    rows = _users(con, "WHERE email = ?", [str(email).strip().lower()])
    return rows[0] if rows else None


# --- account management with its audit event (CLI and the admin's page) -------------------


def _existing(con: duckdb.DuckDBPyConnection, username: str) -> User:
    user = get_user(con, username)
    if user is None:
        raise UserError(f"no user {normalise_username(username)!r}")
    return user


def _keep_an_admin(con: duckdb.DuckDBPyConnection, user: User) -> None:
    """Refuse to leave the store without an active admin (nobody could manage accounts in the app)."""
    if user.role != "admin" or not user.active:
        return
    others = [u for u in list_users(con) if u.role == "admin" and u.active and u != user]
    if not others:
        raise UserError(
            f"{user.username} is the last active admin; add or activate another admin first"
        )


def create_account(
    db_path: str | Path,
    username: str,
    role: str,
    *,
    password: str | None,
    email: str | None,
    actor: str,
    actor_role: str | None = None,
    wait_s: float = 30.0,
) -> User:
    """``add_user`` and its ``user_added`` event in one chained transaction (the password is hashed
    before the store is opened, so the file is not held for argon2)."""
    name = check_username(username)
    check_role(role)
    if password is not None:
        check_password(password, name)
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        user = add_user(con, name, role, password=password, email=email)
        audit.append_event(
            con,
            actor=actor,
            role=actor_role,
            action="user_added",
            details={"username": user.username, "role": user.role, "sso": user.email is not None},
        )
    return user


def change_role(
    db_path: str | Path,
    username: str,
    role: str,
    *,
    actor: str,
    actor_role: str | None = None,
    wait_s: float = 30.0,
) -> User:
    """Give an account another role (``user_role_changed``, with the old and new role)."""
    check_role(role)
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        user = _existing(con, username)
        if user.role == role:
            raise UserError(f"{user.username} already has the role {role}")
        if role != "admin":
            _keep_an_admin(con, user)
        con.execute("UPDATE app_user SET role = ? WHERE username = ?", [role, user.username])
        audit.append_event(
            con,
            actor=actor,
            role=actor_role,
            action="user_role_changed",
            details={"username": user.username, "from": user.role, "to": role},
        )
    return User(user.username, role, user.email, user.has_password, user.created_at, user.active)


def set_active(
    db_path: str | Path,
    username: str,
    active: bool,
    *,
    actor: str,
    actor_role: str | None = None,
    wait_s: float = 30.0,
) -> User:
    """Deactivate (``user_deactivated``) or reactivate (``user_reactivated``) an account.

    Deactivation keeps the row, so the trail's names still resolve and the account can come back;
    its failed-sign-in count is cleared on reactivation.
    """
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        user = _existing(con, username)
        if user.active == active:
            raise UserError(f"{user.username} is already {'active' if active else 'deactivated'}")
        if not active:
            _keep_an_admin(con, user)
        con.execute(
            "UPDATE app_user SET deactivated_at = ? WHERE username = ?",
            [None if active else utc_now(), user.username],
        )
        if active:
            key = keyed_hash(ensure_secret(con), "username", user.username)
            con.execute("DELETE FROM sign_in_throttle WHERE username_key = ?", [key])
        audit.append_event(
            con,
            actor=actor,
            role=actor_role,
            action="user_reactivated" if active else "user_deactivated",
            details={"username": user.username, "role": user.role},
        )
    return User(user.username, user.role, user.email, user.has_password, user.created_at, active)


def delete_account(
    db_path: str | Path,
    username: str,
    *,
    actor: str,
    actor_role: str | None = None,
    wait_s: float = 30.0,
) -> None:
    """``remove_user`` and its ``user_removed`` event; the last active admin is refused."""
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        user = _existing(con, username)
        _keep_an_admin(con, user)
        remove_user(con, user.username)
        audit.append_event(
            con,
            actor=actor,
            role=actor_role,
            action="user_removed",
            details={"username": user.username},
        )


# --- sign-in ---------------------------------------------------------------------------


def sign_in(
    db_path: str | Path,
    username: str,
    password: str,
    *,
    now: datetime | None = None,
    policy: ThrottlePolicy = DEFAULT_POLICY,
    wait_s: float = 30.0,
) -> SignInResult:
    """Check a password sign-in, apply the back-off, and write the outcome to the audit trail.

    The argon2 check runs between two short store openings, so the file is never
    held for the hashing time; the failure count is re-read and updated inside
    the write transaction.
    """
    now = now or utc_now()
    name = normalise_username(username)
    with store.open_store(db_path, wait_s=wait_s) as con:
        key = keyed_hash(ensure_secret(con), "username", name)
        user = get_user(con, name) if _USERNAME.match(name) else None
        stored = None
        if user is not None:
            stored = con.execute(
                "SELECT password_hash FROM app_user WHERE username = ?", [name]
            ).fetchall()[0][0]
        failures, last = _throttle_state(con, key)
    wait = policy.wait_s(failures, last, now)
    blank = not name or not password
    # a blank form still costs the argon2 work of a wrong password (no timing difference)
    matched = wait == 0 and _password_matches(stored, password) and not blank
    if user is not None and not user.active:
        matched = False
    actor = user.username if user is not None else UNKNOWN_ACTOR
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        if wait > 0:
            reason = "throttled"
        elif matched:
            reason = None
            con.execute("DELETE FROM sign_in_throttle WHERE username_key = ?", [key])
            if stored is not None and _hasher().check_needs_rehash(stored):  # matched: a hash
                con.execute(
                    "UPDATE app_user SET password_hash = ? WHERE username = ?",
                    [_hasher().hash(password), name],
                )
        else:
            if blank:
                reason = "blank"
            elif user is None:
                reason = "unknown_user"
            elif not user.active:
                reason = "deactivated"
            else:
                reason = "wrong_password" if stored else "no_password"
            failures, last = _throttle_state(con, key)
            failures = policy.current_failures(failures, last, now) + 1
            con.execute(
                "INSERT INTO sign_in_throttle VALUES (?, ?, ?) ON CONFLICT (username_key) "
                "DO UPDATE SET failures = excluded.failures, last_failure_at = excluded.last_failure_at",
                [key, failures, now],
            )
            wait = policy.wait_s(failures, now, now)
        audit.append_event(
            con,
            actor=actor,
            role=user.role if user is not None else None,
            action="sign_in" if reason is None else "sign_in_failed",
            details={"method": "password"} | ({} if reason is None else {"reason": reason}),
        )
    if matched and user is not None:
        return SignInResult(user, f"Signed in as {user.username} ({user.role}).")
    if reason == "throttled":
        return SignInResult(
            None,
            f"Too many failed sign-ins for this username: try again in {_seconds(wait)}.",
            wait,
        )
    return SignInResult(None, REFUSED, wait)


def sign_in_sso(db_path: str | Path, email: str | None, *, wait_s: float = 30.0) -> SignInResult:
    """Map a single-sign-on identity (its email) to an account and audit the outcome."""
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        user = user_by_email(con, email) if email else None
        refused = None if user is not None and user.active else "unmapped_identity"
        if user is not None and not user.active:
            refused = "deactivated"  # named in the trail, refused like an unmapped identity
        audit.append_event(
            con,
            actor=user.username if user else UNKNOWN_ACTOR,
            role=user.role if user else None,
            action="sign_in_failed" if refused else "sign_in",
            details={"method": "sso"} | ({"reason": refused} if refused else {}),
        )
        if refused:
            user = None
    if user is None:
        return SignInResult(
            None,
            "Your single sign-on identity has no OncoLens account. Ask an administrator "
            "to add it: `oncolens users add NAME --role ROLE --email YOUR_EMAIL --sso-only`.",
        )
    return SignInResult(user, f"Signed in as {user.username} ({user.role}).")


def sign_out(
    db_path: str | Path,
    username: str,
    role: str,
    *,
    timed_out: bool = False,
    idle_s: float | None = None,
    wait_s: float = 30.0,
) -> int:
    """Audit the end of a session (by the user, or by the idle timeout)."""
    details = {"idle_s": round(idle_s)} if idle_s is not None else {}
    return audit.record_event(
        db_path,
        actor=username,
        role=role,
        wait_s=wait_s,
        action="session_timeout" if timed_out else "sign_out",
        details=details,
    )


def _throttle_state(con: duckdb.DuckDBPyConnection, key: str) -> tuple[int, datetime | None]:
    rows = con.execute(
        "SELECT failures, last_failure_at FROM sign_in_throttle WHERE username_key = ?", [key]
    ).fetchall()
    return (int(rows[0][0]), rows[0][1]) if rows else (0, None)


def _seconds(s: float) -> str:
    s = max(1, round(s + 0.499))
    return f"{s} s" if s < 120 else f"{s // 60} min {s % 60} s"


# --- demo accounts -----------------------------------------------------------------------

# DEMO ONLY: fixed, published passwords so that anyone can try each role of the demo clinic.
# `oncolens demo` creates them; remove them (`oncolens users remove NAME`) before real use.
DEMO_ACCOUNTS = (
    ("oncologist", "oncologist", "oncologist-demo"),
    ("careteam", "care_team", "careteam-demo"),
    ("ethics", "ethics_board", "ethics-demo"),
    ("admin", "admin", "admin-demo"),
)


def demo_accounts_in_use(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(username, role, password) of each demo account that still has its published password and role.

    The sign-in page lists these and only these: a store whose demo accounts were
    removed, or given passwords of their own, shows none. (Anyone who has read the
    README could sign in with the listed ones anyway; listing them says so.)
    """
    found = []
    for name, role, password in DEMO_ACCOUNTS:
        rows = con.execute(
            "SELECT role, password_hash FROM app_user WHERE username = ?", [name]
        ).fetchall()
        if (
            rows
            and rows[0][0] == role
            and rows[0][1] is not None
            and _published_password_matches(rows[0][1], password)
        ):
            found.append((name, role, password))
    return found


@lru_cache(maxsize=4 * len(DEMO_ACCOUNTS))
def _published_password_matches(stored: str, password: str) -> bool:
    """``_password_matches`` for a published demo password, remembered per stored hash.

    Why (issue 23): the sign-in page asks this of all four demo accounts, and each Argon2
    verification is deliberately slow (about 0.2 CPU-s, seconds on two busy cores), for an answer
    that changes only when the stored hash does (a new hash is a new key: a changed password is
    checked again). Only published passwords are ever remembered here, never one a user typed;
    ``dashboard.server`` asks once before the app's server listens, so no visitor waits for it.
    """
    return _password_matches(stored, password)


def add_demo_accounts(
    db_path: str | Path, *, actor: str = "oncolens-demo", wait_s: float = 30.0
) -> list[User]:
    """One account per role with the published demo passwords (existing names are replaced)."""
    hashed = [(name, role, hash_password(password, name)) for name, role, password in DEMO_ACCOUNTS]
    made = []
    with store.open_store(db_path, wait_s=wait_s) as con, audit.chained_transaction(con):
        for name, role, digest in hashed:
            con.execute("DELETE FROM app_user WHERE username = ?", [name])
            con.execute(
                "INSERT INTO app_user (username, role, email, password_hash, created_at) VALUES (?, ?, NULL, ?, ?)",
                [name, role, digest, utc_now()],
            )
            audit.append_event(
                con,
                actor=actor,
                action="user_added",
                details={"username": name, "role": role, "demo": True},
            )
            made.append(get_user(con, name))
    return [u for u in made if u is not None]
