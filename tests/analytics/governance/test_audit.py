"""analytics.governance.audit: the hash chain (formula, tamper detection, head), concurrency, the v3 seal."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading

import duckdb
import pytest

from analytics import store
from analytics.governance import audit, chain


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "trail.duckdb"
    store.connect(path, create=True).close()
    return path


def _write(db, n, actor="dr-a"):
    return [
        audit.record_event(
            db,
            actor=actor,
            role="oncologist",
            action="view_patient",
            subject=str(i),
            model_name="m",
            model_version="1.0",
            inputs_sha256=audit.inputs_hash(b"img", i),
            details={"page": "patient", "i": i},
        )
        for i in range(n)
    ]


def test_each_hash_is_sha256_of_the_previous_hash_and_the_canonical_row(db):
    _write(db, 3)
    with store.open_store(db, read_only=True) as con:
        rows = con.execute(
            "SELECT event_id, occurred_at, actor, role, action, subject, model_name, model_version, inputs_sha256, "
            "details, prev_hash, hash FROM audit_event ORDER BY event_id"
        ).fetchall()
        head = con.execute(
            "SELECT events, last_event_id, last_hash FROM audit_chain_head"
        ).fetchall()
    prev = "0" * 64
    for row in rows:
        fields = dict(
            zip(
                [
                    "event_id",
                    "occurred_at",
                    "actor",
                    "role",
                    "action",
                    "subject",
                    "model_name",
                    "model_version",
                    "inputs_sha256",
                    "details",
                ],
                row[:10],
                strict=True,
            )
        )
        fields["occurred_at"] = fields["occurred_at"].isoformat(sep=" ", timespec="microseconds")
        # computed here independently of audit.event_hash
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row[10] == prev
        assert row[11] == hashlib.sha256((prev + text).encode()).hexdigest()
        prev = row[11]
    assert head == [(3, rows[-1][0], prev)]
    assert json.loads(rows[0][9]) == {"i": 0, "page": "patient"}


def test_inputs_hash_is_length_prefixed_and_stable():
    assert audit.inputs_hash("ab", "c") != audit.inputs_hash("a", "bc")
    assert audit.inputs_hash(b"x", 1) == audit.inputs_hash(b"x", 1) != audit.inputs_hash(b"x", 2)
    assert len(audit.inputs_hash({"b": 1, "a": 2})) == 64


def test_the_sql_column_list_matches_the_hashed_fields():
    assert [c.strip() for c in chain._COLUMNS.split(",")] == list(audit.HASHED_FIELDS)


def test_an_intact_chain_verifies(db):
    _write(db, 5)
    result = audit.verify_store(db)
    assert result.ok and result.events == 5 and result.first_bad is None


def test_an_empty_trail_verifies(db):
    assert audit.verify_store(db).ok and audit.verify_store(db).events == 0


@pytest.mark.parametrize(
    ("edit", "bad", "words"),
    [
        ("UPDATE audit_event SET subject = '99' WHERE event_id = 3", 3, "changed"),
        (
            'UPDATE audit_event SET details = \'{"i":2, "page":"patient"}\' WHERE event_id = 3',
            3,
            "changed",
        ),
        (
            "UPDATE audit_event SET occurred_at = occurred_at + INTERVAL 1 SECOND WHERE event_id = 2",
            2,
            "changed",
        ),
        (
            "UPDATE audit_event SET actor = 'someone-else', hash = hash WHERE event_id = 4",
            4,
            "changed",
        ),
        ("DELETE FROM audit_event WHERE event_id = 3", 4, "removed"),
        (
            "UPDATE audit_event SET event_id = CASE event_id WHEN 2 THEN 3 ELSE 2 END WHERE event_id IN (2, 3)",
            2,
            "reordered",
        ),
        ("DELETE FROM audit_event WHERE event_id = 5", 5, "last events were removed"),
        (
            "INSERT INTO audit_event (event_id, occurred_at, actor, action) VALUES (6, now()::TIMESTAMP, 'x', 'y')",
            6,
            "written around the chain",
        ),
    ],
    ids=[
        "subject",
        "details",
        "time",
        "actor",
        "deleted",
        "reordered",
        "last-deleted",
        "unchained-insert",
    ],
)
def test_a_changed_removed_or_reordered_event_is_named(db, edit, bad, words):
    _write(db, 5)
    with store.open_store(db) as con:
        con.execute(edit)
    result = audit.verify_store(db)
    assert not result.ok
    assert result.first_bad == bad
    assert words in result.problem


def test_a_rehashed_row_still_breaks_the_next_link(db):
    """Recomputing the edited row's own hash is not enough: the next event points at the old one."""
    _write(db, 4)
    with store.open_store(db) as con:
        fields = dict(
            zip(
                audit.HASHED_FIELDS,
                con.execute(
                    f"SELECT {chain._COLUMNS} FROM audit_event WHERE event_id = 2"
                ).fetchone(),
                strict=True,
            )
        )
        prev = con.execute("SELECT prev_hash FROM audit_event WHERE event_id = 2").fetchone()[0]
        fields["subject"] = "77"
        con.execute(
            "UPDATE audit_event SET subject = '77', hash = ? WHERE event_id = 2",
            [audit.event_hash(prev, fields)],
        )
    result = audit.verify_store(db)
    assert not result.ok and result.first_bad == 3


def test_threads_and_another_process_writing_at_once_keep_one_chain(db):
    """The app's sessions are threads; a CLI is another process: the chain must not fork."""
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
            import sys
            from analytics.governance import audit
            for i in range(30):
                audit.record_event(sys.argv[1], actor="cli", action="import_batch", subject=str(i))
        """),
            str(db),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors = []

    def app_session(k):
        try:
            for i in range(10):
                audit.record_event(db, actor=f"session-{k}", action="view_patient", subject=str(i))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=app_session, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    assert not errors
    result = audit.verify_store(db)
    assert result.ok, result
    assert result.events == 70


def test_a_writer_that_skips_the_lock_cannot_fork_the_chain(db):
    """Two transactions appending from the same head: DuckDB refuses the second update of the head row."""
    _write(db, 1)
    with store.open_store(db) as first:
        second = duckdb.connect(str(db))
        first.execute("BEGIN")
        second.execute("BEGIN")
        chain._append(first, "a", "x", None, None, None, None, None, None)
        with pytest.raises(duckdb.TransactionException):
            chain._append(second, "b", "y", None, None, None, None, None, None)
        second.execute("ROLLBACK")
        second.close()
        first.execute("COMMIT")
    assert audit.verify_store(db).ok


def test_a_treatment_decision_is_chained(db):
    from analytics.treatment.decisions import make_decision, record_decision

    _write(db, 2)
    decision = make_decision(
        person_id=5,
        model_version="v1",
        recommended="endocrine",
        options=("endocrine", "chemotherapy"),
        actor="dr-b",
    )
    record_decision(db, decision, role="oncologist")
    result = audit.verify_store(db)
    assert result.ok and result.events == 3
    with store.open_store(db, read_only=True) as con:
        row = con.execute(
            "SELECT actor, role, model_name, model_version FROM audit_event "
            "WHERE action = 'treatment_decision'"
        ).fetchone()
    assert row == ("dr-b", "oncologist", "treatment", "v1")


def test_append_event_in_autocommit_mode_is_its_own_transaction(db):
    with store.open_store(db) as con:
        audit.append_event(con, actor="a", action="x")
        audit.append_event(con, actor="a", action="y")
    assert audit.verify_store(db).events == 2
