"""Account management with its audit events (create, role, deactivate, delete) and every failed sign-in
in the trail, on a real store."""

from __future__ import annotations

import pytest

from analytics import store
from analytics.governance import audit, users

PASSWORD = "Admin-Test-Passw0rd"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "accounts.duckdb"
    store.connect(path, create=True).close()
    users.create_account(path, "root", "admin", password=PASSWORD, email=None, actor="cli:setup")
    return path


def _events(db, since: int = 0) -> list[tuple]:
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT actor, role, action, details FROM audit_event WHERE event_id > ? ORDER BY event_id",
            [since],
        ).fetchall()


def _last_id(db) -> int:
    with store.open_store(db, read_only=True) as con:
        return con.execute("SELECT coalesce(max(event_id), 0) FROM audit_event").fetchone()[0]


def test_every_account_change_is_a_chained_event(db) -> None:
    start = _last_id(db)
    users.create_account(
        db,
        "nurse.kim",
        "care_team",
        password=PASSWORD,
        email=None,
        actor="root",
        actor_role="admin",
    )
    users.change_role(db, "nurse.kim", "oncologist", actor="root", actor_role="admin")
    users.set_active(db, "nurse.kim", False, actor="root", actor_role="admin")
    users.set_active(db, "nurse.kim", True, actor="root", actor_role="admin")
    users.delete_account(db, "nurse.kim", actor="root", actor_role="admin")
    events = _events(db, start)
    assert [e[2] for e in events] == [
        "user_added",
        "user_role_changed",
        "user_deactivated",
        "user_reactivated",
        "user_removed",
    ]
    assert all(e[:2] == ("root", "admin") for e in events)
    assert '"from":"care_team"' in events[1][3] and '"to":"oncologist"' in events[1][3]
    assert PASSWORD not in str(events)
    assert audit.verify_store(db).ok


def test_a_deactivated_account_cannot_sign_in_until_reactivated(db) -> None:
    users.create_account(db, "dr.b", "oncologist", password=PASSWORD, email=None, actor="root")
    users.set_active(db, "dr.b", False, actor="root")
    refused = users.sign_in(db, "dr.b", PASSWORD)
    assert not refused.ok and refused.message == users.REFUSED  # says nothing of the account
    assert _events(db)[-1][:3] == ("dr.b", "oncologist", "sign_in_failed")
    assert '"reason":"deactivated"' in _events(db)[-1][3]
    with store.open_store(db, read_only=True) as con:
        assert users.get_user(con, "dr.b").active is False
    users.set_active(db, "dr.b", True, actor="root")
    assert users.sign_in(db, "dr.b", PASSWORD).ok


def test_the_last_active_admin_is_kept(db) -> None:
    for change in (
        lambda: users.set_active(db, "root", False, actor="root"),
        lambda: users.change_role(db, "root", "ethics_board", actor="root"),
        lambda: users.delete_account(db, "root", actor="root"),
    ):
        with pytest.raises(users.UserError, match="last active admin"):
            change()
    users.create_account(db, "root2", "admin", password=PASSWORD, email=None, actor="root")
    users.set_active(db, "root", False, actor="root2")  # now there is another
    with pytest.raises(users.UserError, match="no user"):
        users.change_role(db, "nobody", "admin", actor="root2")
    with pytest.raises(users.UserError, match="already"):
        users.set_active(db, "root", False, actor="root2")


def test_ten_failed_sign_ins_give_ten_events(db) -> None:
    """Wrong passwords, an unknown name, blank fields and attempts refused by the back-off: each one
    is an event (the issue saw ten attempts give five: blank fields were never written)."""
    start = _last_id(db)
    attempts = [
        ("root", "wrong-password-1"),
        ("root", "wrong-password-2"),
        ("root", ""),  # blank password
        ("", "anything-at-all"),  # blank name
        ("root", "wrong-password-3"),  # throttled from here on (three free failures)
        ("root", PASSWORD),  # right, but inside the wait: refused
        ("nobody", "wrong-password-4"),
        ("nobody", "wrong-password-5"),
        ("root", "wrong-password-6"),
        ("   ", "   "),
    ]
    now = users.utc_now()  # one instant: the back-off's waits have not run out between attempts
    results = [users.sign_in(db, name, password, now=now) for name, password in attempts]
    assert not any(r.ok for r in results)
    events = _events(db, start)
    assert len(events) == 10 and {e[2] for e in events} == {"sign_in_failed"}
    reasons = [e[3] for e in events]
    assert sum('"blank"' in r for r in reasons) == 3
    assert sum('"throttled"' in r for r in reasons) >= 2
    assert sum('"unknown_user"' in r for r in reasons) >= 1
