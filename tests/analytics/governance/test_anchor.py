"""Anchors of the audit chain (issue 24): a chain edited and recomputed is caught by an anchor kept
outside the store; a dropped head row or table is named plainly."""

from __future__ import annotations

import pytest

from analytics import store
from analytics.governance import audit
from analytics.governance.chain import GENESIS, event_hash


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "anchor.duckdb"
    store.connect(path, create=True).close()
    for i in range(5):
        audit.record_event(path, actor=f"user{i}", action="view_patient", subject=str(i))
    return path


def _recompute_after_editing(con, event_index: int) -> None:
    """What an attacker with write access does: change one event, then rehash the whole chain."""
    ids = [
        r[0] for r in con.execute("SELECT event_id FROM audit_event ORDER BY event_id").fetchall()
    ]
    con.execute(
        "UPDATE audit_event SET actor = 'someone-else' WHERE event_id = ?", [ids[event_index]]
    )
    rows = con.execute(
        "SELECT event_id, occurred_at, actor, role, action, subject, model_name, model_version, "
        "inputs_sha256, details FROM audit_event ORDER BY event_id"
    ).fetchall()
    prev = GENESIS
    for row in rows:
        fields = dict(zip(audit.HASHED_FIELDS, row, strict=True))
        digest = event_hash(prev, fields)
        con.execute(
            "UPDATE audit_event SET prev_hash = ?, hash = ? WHERE event_id = ?",
            [prev, digest, row[0]],
        )
        prev = digest
    con.execute("UPDATE audit_chain_head SET last_hash = ? WHERE id = 1", [prev])


def test_a_recomputed_chain_verifies_but_fails_its_anchor(db) -> None:
    with store.open_store(db) as con:
        result, mark = audit.anchor(con)
    assert result.ok and mark is not None and mark.events == 5
    assert audit.Anchor.from_json(mark.to_json()) == mark
    with store.open_store(db) as con:
        _recompute_after_editing(con, 1)
        assert audit.verify(con).ok  # the chain alone cannot see it
        problem = audit.check_anchor(con, mark)
    assert problem is not None and "recomputed" in problem


def test_events_after_the_anchor_keep_it_valid_and_removed_ones_break_it(db) -> None:
    with store.open_store(db) as con:
        _, mark = audit.anchor(con)
    audit.record_event(db, actor="later", action="sign_in")
    with store.open_store(db) as con:
        assert mark is not None and audit.check_anchor(con, mark) is None
        con.execute(
            "DELETE FROM audit_event WHERE event_id >= (SELECT min(event_id) + 2 FROM audit_event)"
        )
        assert "fewer" in audit.check_anchor(con, mark)


def test_a_broken_chain_is_not_anchored(db) -> None:
    with store.open_store(db) as con:
        con.execute(
            "UPDATE audit_event SET actor = 'x' WHERE event_id = (SELECT min(event_id) FROM audit_event)"
        )
        result, mark = audit.anchor(con)
    assert not result.ok and mark is None


@pytest.mark.parametrize(
    "value",
    [
        [],
        {"events": -1, "head": "0" * 64},
        {"events": 1, "head": "xyz"},
        {"events": True, "head": "0" * 64},
    ],
)
def test_malformed_anchors_are_refused(value) -> None:
    with pytest.raises(ValueError):
        audit.Anchor.from_json(value)


def test_a_dropped_head_row_or_table_is_named(db) -> None:
    with store.open_store(db) as con:
        con.execute("DELETE FROM audit_chain_head")
        result = audit.verify(con)
        assert not result.ok and "head row is missing" in result.problem
        con.execute("DROP TABLE audit_event")
        result = audit.verify(con)
    assert not result.ok and "audit_event table is missing" in result.problem
