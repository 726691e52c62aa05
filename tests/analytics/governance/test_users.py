"""analytics.governance.users: accounts, argon2 hashes, sign-in refusals, back-off on an injected clock, pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta

import duckdb
import pytest

from analytics import store
from analytics.governance import audit, pseudonyms, users

T0 = datetime(2026, 3, 1, 9, 0, 0)
WRONG = "Wr0ng-Pa55word-XYZZY"  # distinctive, so a leak anywhere is found by search
TYPED_AS_NAME = "my-Secret-Passw0rd"  # a password typed into the username box


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "accounts.duckdb"
    with store.open_store(path, create=True) as con:
        users.add_user(con, "Dr.Ada", "oncologist", password="correct horse battery")
        users.add_user(con, "sso-only", "ethics_board", email="Eve@Example.org")
    return path


def _events(db):
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT actor, role, action, details FROM audit_event ORDER BY event_id"
        ).fetchall()


def test_accounts_are_listed_with_normalised_names_and_no_password(db):
    with store.open_store(db, read_only=True) as con:
        listed = users.list_users(con)
        stored = con.execute(
            "SELECT password_hash FROM app_user WHERE username = 'dr.ada'"
        ).fetchone()[0]
    assert [(u.username, u.role, u.email, u.has_password) for u in listed] == [
        ("dr.ada", "oncologist", None, True),
        ("sso-only", "ethics_board", "eve@example.org", False),
    ]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(username="x", role="admin", password="long enough pw"), "2-64 characters"),
        (dict(username="bob", role="researcher", password="long enough pw"), "unknown role"),
        (dict(username="bob", role="admin", password="short"), "at least 10"),
        (dict(username="bob", role="admin"), "needs a password"),
        (dict(username="dr.ada", role="admin", password="long enough pw"), "already exists"),
        (dict(username="eve2", role="admin", email="eve@example.org"), "already has the email"),
        (dict(username="bob", role="admin", email="not-an-email"), "name@domain"),
    ],
)
def test_bad_accounts_are_refused_with_a_reason(db, kwargs, message):
    with store.open_store(db) as con, pytest.raises(users.UserError, match=message) as info:
        users.add_user(con, **kwargs)
    assert "long enough" not in str(info.value) and "short" not in str(info.value)


def test_remove_user(db):
    with store.open_store(db) as con:
        assert users.remove_user(con, "DR.ADA")
        assert not users.remove_user(con, "dr.ada")
        assert users.get_user(con, "dr.ada") is None


def test_sign_in_with_the_right_password_and_any_case_of_the_name(db):
    result = users.sign_in(db, "  DR.Ada ", "correct horse battery", now=T0)
    assert result.ok and result.user.role == "oncologist"
    assert _events(db)[-1] == ("dr.ada", "oncologist", "sign_in", '{"method":"password"}')


def test_wrong_password_and_unknown_user_get_the_same_message(db):
    wrong = users.sign_in(db, "dr.ada", WRONG, now=T0)
    unknown = users.sign_in(db, "nobody", WRONG, now=T0)
    sso_only = users.sign_in(db, "sso-only", WRONG, now=T0)
    assert not wrong.ok and not unknown.ok and not sso_only.ok
    assert wrong.message == unknown.message == sso_only.message == users.REFUSED
    events = _events(db)
    assert events[-3][:3] == (
        "dr.ada",
        "oncologist",
        "sign_in_failed",
    )  # an existing account is named
    assert events[-2][:3] == ("unknown", None, "sign_in_failed")  # a typed name is not
    assert (
        '"reason":"wrong_password"' in events[-3][3] and '"reason":"unknown_user"' in events[-2][3]
    )


def test_back_off_doubles_after_three_failures_on_the_injected_clock(db):
    for k in range(3):  # three free failures
        assert users.sign_in(db, "dr.ada", WRONG, now=T0 + timedelta(seconds=k)).retry_after_s == (
            0.0 if k < 2 else 1.0
        )
    # 0.5 s after the third failure even the right password is refused, without checking it
    early = users.sign_in(db, "dr.ada", "correct horse battery", now=T0 + timedelta(seconds=2.5))
    assert (
        not early.ok
        and "try again in 1 s" in early.message
        and early.retry_after_s == pytest.approx(0.5)
    )
    assert (
        users.sign_in(db, "dr.ada", WRONG, now=T0 + timedelta(seconds=3.1)).retry_after_s == 2.0
    )  # 4th: 2 s
    assert not users.sign_in(
        db, "dr.ada", "correct horse battery", now=T0 + timedelta(seconds=4.9)
    ).ok
    assert (
        users.sign_in(db, "dr.ada", WRONG, now=T0 + timedelta(seconds=5.2)).retry_after_s == 4.0
    )  # 5th: 4 s
    ok = users.sign_in(db, "dr.ada", "correct horse battery", now=T0 + timedelta(seconds=9.3))
    assert ok.ok  # the wait is over
    assert (
        users.sign_in(db, "dr.ada", WRONG, now=T0 + timedelta(seconds=10)).retry_after_s == 0.0
    )  # count reset


def test_unknown_names_are_throttled_like_real_ones(db):
    for k in range(3):
        users.sign_in(db, "nobody", WRONG, now=T0 + timedelta(seconds=k))
    refused = users.sign_in(db, "nobody", WRONG, now=T0 + timedelta(seconds=2.2))
    assert "Too many failed sign-ins" in refused.message
    real = [users.sign_in(db, "dr.ada", WRONG, now=T0 + timedelta(seconds=k)) for k in range(3)]
    assert real[-1].retry_after_s == 1.0
    assert "Too many" in users.sign_in(db, "dr.ada", WRONG, now=T0 + timedelta(seconds=2.2)).message


def test_the_policy_caps_and_forgets():
    policy = users.ThrottlePolicy()
    assert policy.wait_s(30, T0, T0) == policy.max_wait_s == 900
    assert policy.wait_s(30, T0, T0 + timedelta(days=1, seconds=1)) == 0.0
    assert policy.current_failures(30, T0, T0 + timedelta(days=2)) == 0


def test_the_back_off_survives_a_new_process_because_it_is_in_the_store(db):
    for k in range(4):
        users.sign_in(db, "dr.ada", WRONG, now=T0 + timedelta(seconds=2 * k))
    with store.open_store(db, read_only=True) as con:
        failures = con.execute("SELECT failures FROM sign_in_throttle").fetchall()
    assert failures == [(4,)]


def test_no_password_or_typed_name_reaches_logs_the_trail_or_the_file(db, caplog, capfd):
    """Wrong passwords (and passwords typed as names) are never written anywhere."""
    caplog.set_level(logging.DEBUG)
    users.sign_in(db, "dr.ada", WRONG, now=T0)
    users.sign_in(db, TYPED_AS_NAME, WRONG, now=T0)
    users.sign_in(db, "dr.ada", "correct horse battery", now=T0 + timedelta(seconds=1))
    out, err = capfd.readouterr()
    for secret in (WRONG, TYPED_AS_NAME, TYPED_AS_NAME.lower(), "correct horse battery"):
        assert secret not in caplog.text and secret not in out and secret not in err
    with store.open_store(db, read_only=True) as con:
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'"
        ).fetchall()
        text = "\n".join(
            str(v)
            for schema, table, column in columns
            for (v,) in con.execute(f'SELECT "{column}" FROM "{schema}"."{table}"').fetchall()  # noqa: S608
        )
    assert "dr.ada" in text  # the search does see stored text
    for secret in (WRONG, TYPED_AS_NAME.lower(), "correct horse battery"):
        assert secret not in text
    raw = db.read_bytes() + (
        db.with_name(db.name + ".wal").read_bytes()
        if db.with_name(db.name + ".wal").exists()
        else b""
    )
    for secret in (WRONG, TYPED_AS_NAME.lower(), "correct horse battery"):
        assert secret.encode() not in raw


def test_sso_identities_map_to_accounts_by_email(db):
    assert users.sign_in_sso(db, "EVE@example.org").user.username == "sso-only"
    refused = users.sign_in_sso(db, "mallory@example.org")
    assert not refused.ok and "has no OncoLens account" in refused.message
    assert [e[:3] for e in _events(db)[-2:]] == [
        ("sso-only", "ethics_board", "sign_in"),
        ("unknown", None, "sign_in_failed"),
    ]
    assert "mallory" not in str(_events(db))


def test_pseudonyms_are_keyed_hashes_stable_per_store(db, tmp_path):
    with store.open_store(db, read_only=True) as con:
        key = pseudonyms.store_secret(con)
    expected = "P-" + hmac.new(key, b"patient:42", hashlib.sha256).hexdigest()[:16]
    assert pseudonyms.pseudonym(key, 42) == pseudonyms.pseudonym(key, "42") == expected
    assert pseudonyms.pseudonym(key, 43) != expected
    other = tmp_path / "other.duckdb"
    with store.open_store(other, create=True) as con:
        assert (
            pseudonyms.pseudonym(pseudonyms.store_secret(con), 42) != expected
        )  # another store, another key


def test_demo_accounts_one_per_role_and_their_events(tmp_path):
    path = tmp_path / "demo.duckdb"
    store.connect(path, create=True).close()
    made = users.add_demo_accounts(path)
    assert sorted(u.role for u in made) == sorted(users.ROLES)
    name, _, password = users.DEMO_ACCOUNTS[2]
    assert users.sign_in(path, name, password, now=T0).user.role == "ethics_board"
    assert audit.verify_store(path).ok


def test_a_store_without_accounts_table_has_no_secret(tmp_path):
    con = duckdb.connect(str(tmp_path / "bare.duckdb"))
    assert pseudonyms.store_secret(con) is None
    con.close()


def test_only_demo_accounts_with_their_published_password_are_listed_as_in_use(tmp_path):
    path = tmp_path / "demo.duckdb"
    store.connect(path, create=True).close()
    with store.open_store(path, read_only=True) as con:
        assert users.demo_accounts_in_use(con) == []  # no demo accounts yet
    users.add_demo_accounts(path)
    with store.open_store(path) as con:
        assert users.demo_accounts_in_use(con) == list(users.DEMO_ACCOUNTS)
        users.remove_user(con, "admin")  # removed: not listed
        con.execute(
            "UPDATE app_user SET password_hash = ? WHERE username = 'ethics'",
            [users.hash_password("a-password-of-their-own")],
        )  # own password: not listed
        con.execute(
            "UPDATE app_user SET role = 'oncologist' WHERE username = 'careteam'"
        )  # other role: not listed
        assert [name for name, _, _ in users.demo_accounts_in_use(con)] == ["oncologist"]


def test_each_demo_account_hash_is_verified_once_then_remembered(tmp_path):
    """Issue 23: the sign-in page asks on every visit; four Argon2 verifications the first time only."""
    path = tmp_path / "demo.duckdb"
    store.connect(path, create=True).close()
    users.add_demo_accounts(path)
    users._published_password_matches.cache_clear()
    with store.open_store(path, read_only=True) as con:
        first = users.demo_accounts_in_use(con)
        again = users.demo_accounts_in_use(con)
    info = users._published_password_matches.cache_info()
    assert first == again == list(users.DEMO_ACCOUNTS)
    assert (info.misses, info.hits) == (len(users.DEMO_ACCOUNTS), len(users.DEMO_ACCOUNTS))
