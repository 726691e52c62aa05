"""`oncolens audit anchor` and `audit verify --anchor` on real DuckDB files (issue 24)."""

from __future__ import annotations

import json

import pytest

from analytics import store
from analytics.governance import audit
from dashboard.cli.main import main


def _db(tmp_path):
    path = tmp_path / "cli.duckdb"
    store.connect(path, create=True).close()
    for i in range(3):
        audit.record_event(path, actor="u", action="view_patient", subject=str(i))
    return path


def test_anchor_to_a_file_then_verify_against_it(tmp_path, capsys) -> None:
    db, anchors = _db(tmp_path), tmp_path / "anchors.jsonl"
    assert main(["audit", "anchor", "--db", str(db), "--out", str(anchors)]) == 0
    assert main(["audit", "anchor", "--db", str(db)]) == 0  # printed for an external log
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["events"] == 3 and len(printed["head"]) == 64
    assert main(["audit", "verify", "--db", str(db), "--anchor", str(anchors)]) == 0
    assert "1 anchor(s) hold" in capsys.readouterr().out
    with store.open_store(db) as con:  # a removed last event: the chain head is rewritten to match
        con.execute(
            "DELETE FROM audit_event WHERE event_id = (SELECT max(event_id) FROM audit_event)"
        )
        last = con.execute("SELECT count(*), max(event_id) FROM audit_event").fetchone()
        hash_ = con.execute(
            "SELECT hash FROM audit_event WHERE event_id = ?", [last[1]]
        ).fetchone()[0]
        con.execute(
            "UPDATE audit_chain_head SET events = ?, last_event_id = ?, last_hash = ?",
            [last[0], last[1], hash_],
        )
    assert main(["audit", "verify", "--db", str(db), "--json", "--anchor", str(anchors)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and "fewer" in out["problem"]


def test_bad_anchor_files_and_a_dropped_table_are_one_line_errors(tmp_path, capsys) -> None:
    db = _db(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"events": 1}\n')
    assert main(["audit", "verify", "--db", str(db), "--anchor", str(bad)]) == 1
    assert "line 1: not an anchor" in capsys.readouterr().err
    assert main(["audit", "verify", "--db", str(db), "--anchor", str(tmp_path / "none")]) == 1
    assert "cannot read the anchor file" in capsys.readouterr().err
    with store.open_store(db) as con:
        con.execute("DROP TABLE audit_event")
    assert main(["audit", "verify", "--db", str(db)]) == 1
    assert "audit_event table is missing" in capsys.readouterr().out
    assert (
        main(
            [
                "users",
                "add",
                "someone",
                "--role",
                "admin",
                "--sso-only",
                "--email",
                "a@b.c",
                "--db",
                str(db),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("oncolens: error:") or "error:" in err
    assert "Traceback" not in err


# --- `audit verify` is read-only (issue 21 leftovers, item 4) ----------------------------------


def _store_at(path, version: int, events: int = 2) -> None:
    """A store as an older OncoLens left it: the migrations up to ``version`` applied as they
    were released (statements, data step, version row), with ``events`` chained events."""
    import duckdb  # the raw file, as an older OncoLens wrote it (no migration on open)

    from analytics.governance.chain import append_event, chained_transaction  # (the same)

    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL)"
    )
    for m in store.MIGRATIONS[:version]:
        for statement in m.statements:
            con.execute(statement)
        if m.data_step is not None:
            m.data_step(con)
        con.execute(
            "INSERT INTO schema_version VALUES (?, ?, now()::TIMESTAMP)", [m.version, m.description]
        )
    for i in range(events):
        with chained_transaction(con):
            append_event(con, actor="old", action="view_patient", subject=str(i))
    con.close()


def _version(path) -> int:
    with store.open_store(path, read_only=True) as con:
        return store.schema_version(con)


def test_verify_of_an_older_store_checks_it_as_it_is_and_migrates_nothing(tmp_path, capsys):
    db = tmp_path / "v9.duckdb"
    _store_at(db, 9)
    before = db.read_bytes()
    assert main(["audit", "verify", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == "ok, 2 events"
    assert _version(db) == 9 and db.read_bytes() == before  # not migrated, not touched
    # a pre-chain store (version 2) is not sealed by a verify: unverifiable, said in one line
    old = tmp_path / "v2.duckdb"
    _store_at(old, 2, events=0)
    with store.open_store(old, read_only=True) as con:
        assert store.schema_version(con) == 2
    assert main(["audit", "verify", "--db", str(old), "--json"]) == 2  # 2: nothing to verify
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["unsealed"] is True
    assert "predates the hash chain" in out["problem"]
    assert "`oncolens audit anchor`" in out["problem"]
    assert main(["audit", "verify", "--db", str(old)]) == 2
    text = capsys.readouterr().out.strip()
    assert text.startswith("audit trail not verifiable (not broken): this store predates")
    assert "broken at" not in text  # an unsealed store is not called tampered with
    assert _version(old) == 2  # still as it was
    assert not (tmp_path / "v2.duckdb.wal").exists()


def test_verify_of_a_newer_store_is_refused_in_one_line(tmp_path, capsys):
    db = _db(tmp_path)
    with store.open_store(db) as con:
        con.execute("INSERT INTO schema_version VALUES (99, 'future', now()::TIMESTAMP)")
    assert main(["audit", "verify", "--db", str(db)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "schema version 99, newer than this OncoLens" in err[0]


def test_verify_runs_while_another_process_holds_the_store_open(tmp_path, capsys):
    """The app (another process) holds the store open for reading: a writable open would wait
    for it and then fail as busy; a read-only verify runs beside it."""
    import subprocess  # the other process, a real one
    import sys  # (the same)

    db = _db(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from analytics import store\n"
            "con = store.connect(sys.argv[1], read_only=True); print('held', flush=True); "
            "time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["audit", "verify", "--db", str(db)]) == 0
        assert capsys.readouterr().out.strip() == "ok, 3 events"
        with pytest.raises(store.StoreBusyError):  # what a writable open (the old verify) met
            store.connect(db, wait_s=0.3).close()
    finally:
        holder.kill()
        holder.wait()
