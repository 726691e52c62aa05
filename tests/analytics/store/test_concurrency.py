"""App and CLI side by side: two real processes write the same store without lock errors or lost rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from analytics import store
from analytics.governance import audit

APP_LIKE = textwrap.dedent(
    """
    import sys
    from analytics.governance import audit
    from analytics import store
    db, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        audit.record_event(db, actor="app", action="view_patient", subject=str(i))
        with store.open_store(db, read_only=True) as con:       # a page render between writes
            con.execute("SELECT count(*) FROM person").fetchone()
    """
)

CLI_LIKE = textwrap.dedent(
    """
    import sys, time
    from analytics import store
    db, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        with store.open_store(db) as con:                      # an import: one short transaction each
            con.execute("BEGIN")
            con.execute("INSERT INTO audit_event (occurred_at, actor, action, subject) "
                        "VALUES (now()::TIMESTAMP, 'cli', 'import_batch', ?)", [str(i)])
            time.sleep(0.005)
            con.execute("COMMIT")
    """
)


def _spawn(code: str, db, n: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(db), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_write_without_errors_or_loss(tmp_path):
    db = tmp_path / "shared.duckdb"
    store.connect(db, create=True).close()
    n = 40
    procs = [_spawn(APP_LIKE, db, n), _spawn(CLI_LIKE, db, n)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with store.open_store(db, read_only=True) as con:
        counts = dict(
            con.execute("SELECT actor, count(*) FROM audit_event GROUP BY actor").fetchall()
        )
        ids = [r[0] for r in con.execute("SELECT event_id FROM audit_event").fetchall()]
    assert counts == {"app": n, "cli": n}
    assert len(set(ids)) == 2 * n


def test_writer_waits_for_a_long_transaction_then_succeeds(tmp_path):
    db = tmp_path / "held.duckdb"
    store.connect(db, create=True).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from analytics import store\n"
            "con = store.connect(sys.argv[1]); print('held', flush=True); time.sleep(1.5); con.close()",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    event_id = audit.record_event(db, actor="app", action="accept", wait_s=30)
    waited = time.monotonic() - started
    holder.wait(timeout=30)
    assert event_id == 1
    assert waited > 0.5  # it really had to wait for the other process


def test_busy_store_gives_a_clear_error_after_the_wait(tmp_path):
    db = tmp_path / "busy.duckdb"
    store.connect(db, create=True).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from analytics import store\n"
            "con = store.connect(sys.argv[1]); print('held', flush=True); time.sleep(5)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(store.StoreBusyError, match="held by another process"):
            store.connect(db, wait_s=0.3)
    finally:
        holder.kill()
        holder.wait()
