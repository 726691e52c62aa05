"""The `oncolens` command: exit codes, JSON output, clear errors, and `serve` for real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from analytics import store
from dashboard.cli.main import main


def oncolens(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashboard.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_demo_writes_a_store_and_prints_json(tmp_path):
    db = tmp_path / "clinic.duckdb"
    r = oncolens("demo", "--patients", "40", "--db", str(db), "--seed", "5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["patients"] == 40 and out["seed"] == 5 and out["rows"]["person"] == 40
    with store.open_store(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM condition_occurrence").fetchone()[0] == 40


def test_demo_refuses_an_existing_store_then_replaces_it_with_force(tmp_path):
    db = tmp_path / "clinic.duckdb"
    assert oncolens("demo", "--patients", "10", "--db", str(db)).returncode == 0
    r = oncolens("demo", "--patients", "12", "--db", str(db))
    assert r.returncode == 1 and "--force" in r.stderr and "Traceback" not in r.stderr
    assert oncolens("demo", "--patients", "12", "--db", str(db), "--force").returncode == 0
    with store.open_store(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM person").fetchone()[0] == 12


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--patients", "0"], 1, "at least 1"),
        (["--patients", "-3"], 1, "at least 1"),
        (["--patients", "many"], 2, "whole number"),
    ],
)
def test_demo_bad_patient_counts(tmp_path, args, code, message):
    r = oncolens("demo", *args, "--db", str(tmp_path / "x.duckdb"))
    assert r.returncode == code and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_demo_unwritable_path(tmp_path):
    (tmp_path / "file").write_text("x")
    r = oncolens("demo", "--patients", "5", "--db", str(tmp_path / "file" / "x.duckdb"))
    assert r.returncode == 1 and "cannot create folder" in r.stderr and "Traceback" not in r.stderr


CONTRACT = (
    "demo",
    "serve",
    "ingest",
    "predict",
    "explain",
    "recommend",
    "forecast",
    "cohort",
    "import",
    "validate",
    "report",
    "users",
    "audit",
    "deidentify",
    "checklist",
    "dossier",
)


@pytest.mark.parametrize("command", CONTRACT)
def test_every_command_of_the_contract_exists_with_help(command, capsys):
    with pytest.raises(SystemExit) as help_exit:
        main([command, "--help"])
    assert help_exit.value.code == 0
    assert capsys.readouterr().out.startswith("usage: oncolens " + command)


def test_serve_refuses_missing_and_foreign_files(tmp_path):
    r = oncolens("serve", "--db", str(tmp_path / "nope.duckdb"))
    assert r.returncode == 1 and "oncolens demo" in r.stderr
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    r = oncolens("serve", "--db", str(bad))
    assert r.returncode == 1 and "not" in r.stderr and "Traceback" not in r.stderr


def test_serve_open_asks_streamlit_for_a_browser_only_where_there_is_one(tmp_path):
    """`make run` passes --open: a desktop gets the app in its browser, a server without a display does not."""
    from dashboard.cli.clinic import browser_at_hand, streamlit_command

    assert browser_at_hand({}, "darwin") and browser_at_hand({}, "win32")
    assert browser_at_hand({"DISPLAY": ":0"}, "linux") and browser_at_hand(
        {"WAYLAND_DISPLAY": "w-0"}, "linux"
    )
    assert not browser_at_hand({}, "linux")

    def option(cmd, name):
        return cmd[cmd.index(name) + 1]

    shown = streamlit_command(tmp_path / "c.duckdb", 8501, "127.0.0.1", open_browser=True)
    quiet = streamlit_command(tmp_path / "c.duckdb", 8501, "127.0.0.1")
    assert (
        option(shown, "--server.headless") == "false"
        and option(quiet, "--server.headless") == "true"
    )
    assert (
        option(shown, "--server.showEmailPrompt") == "false"
    )  # never a first-run prompt in the way


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_starts_the_app_on_localhost(demo_db):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dashboard.cli.main",
            "serve",
            "--db",
            str(demo_db),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                ).read()
                break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
