"""`oncolens audit anchor` and `audit verify --anchor` on real DuckDB files (issue 24)."""

from __future__ import annotations

import json

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
