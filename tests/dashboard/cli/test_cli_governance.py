"""`oncolens users` and `oncolens audit verify` through dashboard.cli.main.main on real DuckDB files; the demo's accounts."""

from __future__ import annotations

import io
import json
import sys

import pytest

from analytics import store
from analytics.governance import audit, users
from dashboard.cli.main import main

PASSWORD = "a-Long-Passw0rd-for-tests"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "cli.duckdb"
    store.connect(path, create=True).close()
    return path


def _stdin(monkeypatch, text):
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_users_add_list_remove(db, monkeypatch, capsys):
    _stdin(monkeypatch, PASSWORD + "\n")
    assert (
        main(
            ["users", "add", "Dr.Ada", "--role", "oncologist", "--password-stdin", "--db", str(db)]
        )
        == 0
    )
    assert (
        main(
            [
                "users",
                "add",
                "eve",
                "--role",
                "ethics_board",
                "--email",
                "eve@x.org",
                "--sso-only",
                "--db",
                str(db),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["users", "list", "--json", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and "argon2" not in out
    assert [json.loads(line) for line in out.splitlines()] == [
        {
            "username": "dr.ada",
            "role": "oncologist",
            "email": None,
            "sign_in": "password",
            "active": True,
        },
        {
            "username": "eve",
            "role": "ethics_board",
            "email": "eve@x.org",
            "sign_in": "+sso",
            "active": True,
        },
    ]
    assert users.sign_in(db, "dr.ada", PASSWORD).ok
    assert main(["users", "remove", "dr.ada", "--db", str(db)]) == 0
    assert main(["users", "remove", "dr.ada", "--db", str(db)]) == 1
    assert "no user 'dr.ada'" in capsys.readouterr().err
    with store.open_store(db, read_only=True) as con:
        actions = [
            r[0] for r in con.execute("SELECT action FROM audit_event ORDER BY event_id").fetchall()
        ]
    assert actions == ["user_added", "user_added", "sign_in", "user_removed"]
    assert audit.verify_store(db).ok


def test_users_add_without_a_terminal_or_stdin_password_is_refused(db, monkeypatch, capsys):
    _stdin(monkeypatch, "")  # not a terminal
    assert main(["users", "add", "bob", "--role", "admin", "--db", str(db)]) == 1
    assert "--password-stdin" in capsys.readouterr().err


def test_a_weak_password_is_refused_without_being_echoed(db, monkeypatch, capsys):
    _stdin(monkeypatch, "tiny-pw\n")
    assert (
        main(["users", "add", "bob", "--role", "admin", "--password-stdin", "--db", str(db)]) == 1
    )
    captured = capsys.readouterr()
    assert "at least 10 characters" in captured.err
    assert "tiny-pw" not in captured.err + captured.out


def test_users_add_refuses_an_unknown_role(db):
    with pytest.raises(SystemExit) as exit_:
        main(["users", "add", "bob", "--role", "researcher", "--db", str(db)])
    assert exit_.value.code == 2


def test_users_list_on_an_empty_store(db, capsys):
    assert main(["users", "list", "--db", str(db)]) == 0
    assert "No accounts" in capsys.readouterr().out


def _events(db, n):
    for i in range(n):
        audit.record_event(
            db, actor="dr-a", role="oncologist", action="view_patient", subject=str(i)
        )


def test_audit_verify_says_ok_with_the_count(db, capsys):
    _events(db, 4)
    assert main(["audit", "verify", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == "ok, 4 events"
    assert main(["audit", "verify", "--json", "--db", str(db)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["events"] == 4 and len(report["head"]) == 64


@pytest.mark.parametrize(
    ("edit", "bad"),
    [
        ("UPDATE audit_event SET subject = '999' WHERE event_id = 2", 2),  # changed
        ("DELETE FROM audit_event WHERE event_id = 2", 3),  # removed
        (
            "UPDATE audit_event SET event_id = CASE event_id WHEN 2 THEN 3 ELSE 2 END "
            "WHERE event_id IN (2, 3)",
            2,
        ),  # reordered
        ("DELETE FROM audit_event WHERE event_id = 4", 4),  # last removed
    ],
    ids=["changed", "removed", "reordered", "last-removed"],
)
def test_audit_verify_names_the_first_bad_event(db, capsys, edit, bad):
    _events(db, 4)
    with store.open_store(db) as con:
        con.execute(edit)
    assert main(["audit", "verify", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert f"audit trail broken at event {bad}:" in out


def test_audit_verify_on_a_missing_store_fails_plainly(tmp_path, capsys):
    assert main(["audit", "verify", "--db", str(tmp_path / "none.duckdb")]) == 1
    assert "no OncoLens database" in capsys.readouterr().err


def test_demo_creates_one_account_per_role_and_says_they_are_demo_only(tmp_path, capsys):
    db = tmp_path / "demo.duckdb"
    assert main(["demo", "--patients", "60", "--images", "0", "--no-model", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "DEMO ONLY" in out
    for name, role, password in users.DEMO_ACCOUNTS:
        assert name in out and role in out and password in out
    with store.open_store(db, read_only=True) as con:
        assert sorted(u.role for u in users.list_users(con)) == sorted(users.ROLES)
    name, _, password = users.DEMO_ACCOUNTS[0]
    assert users.sign_in(db, name, password).ok
    assert main(["audit", "verify", "--db", str(db)]) == 0


def test_users_role_deactivate_activate_with_their_events(db, monkeypatch, capsys):
    for name, role in (("boss", "admin"), ("kim", "care_team")):
        _stdin(monkeypatch, PASSWORD + "\n")
        assert (
            main(["users", "add", name, "--role", role, "--password-stdin", "--db", str(db)]) == 0
        )
    assert main(["users", "role", "kim", "--role", "oncologist", "--db", str(db)]) == 0
    assert main(["users", "deactivate", "kim", "--db", str(db)]) == 0
    assert not users.sign_in(db, "kim", PASSWORD).ok
    capsys.readouterr()
    assert main(["users", "list", "--json", "--db", str(db)]) == 0
    listed = {r["username"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed["kim"]["role"] == "oncologist" and listed["kim"]["active"] is False
    assert main(["users", "activate", "kim", "--db", str(db)]) == 0
    assert users.sign_in(db, "kim", PASSWORD).ok
    assert main(["users", "deactivate", "boss", "--db", str(db)]) == 1  # the last active admin
    assert "last active admin" in capsys.readouterr().err
    with store.open_store(db, read_only=True) as con:
        actions = [
            r[0] for r in con.execute("SELECT action FROM audit_event ORDER BY event_id").fetchall()
        ]
    assert actions[2:] == [
        "user_role_changed",
        "user_deactivated",
        "sign_in_failed",
        "user_reactivated",
        "sign_in",
    ]
    assert audit.verify_store(db).ok
