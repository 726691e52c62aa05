"""Fail closed (issue 24): with the store held by another process (DuckDB's file lock), every page
shows one plain message, never a traceback, and no patient record; a record whose view cannot be
audited is not shown.

The lock is real: a second Python process opens the store for writing and keeps it open.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import resources
from dashboard.session import auth

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "dashboard" / "app.py"
PAGES = ("home", "patient", "imaging", "worklist", "cohorts", "governance")
HOLD = "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(600)"


@pytest.fixture
def own_store(app_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo store that only this test uses (no cached results from other tests)."""
    db = Path(shutil.copyfile(app_db, tmp_path / "held.duckdb"))
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    monkeypatch.setattr(
        resources, "READ_WAIT_S", 0.3
    )  # the lock is not released: no need to wait long
    return db


@pytest.fixture
def held(own_store: Path) -> Iterator[Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(own_store)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield own_store
    finally:
        proc.kill()  # the process this test started, by its handle
        proc.wait()


def _open(page: str, role: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state[auth.SESSION_KEY] = auth.Session("demo-user", role, "password", time.time())
    at.query_params.update(query)
    at.run()
    if page != "home" and not at.exception:
        try:
            at.switch_page(f"app_pages/{page}.py").run()
        except Exception:  # noqa: BLE001 - a page the failed run never registered: the entry page's message stands
            pass
    return at


def _all_text(at: AppTest) -> str:
    parts = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "metric",
        "dataframe",
        "table",
        "info",
        "warning",
    ):
        for element in getattr(at, kind, []):
            parts.append(str(getattr(element, "value", "")))
    return "\n".join(parts)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_fails_closed_while_another_process_holds_the_store(held, page) -> None:
    role = "oncologist" if "oncologist" in auth.PAGES[page] else sorted(auth.PAGES[page])[0]
    at = _open(page, role, patient="42")
    assert not at.exception, [e.value for e in at.exception]
    messages = " ".join(str(e.value) for e in at.error)
    assert messages, "the user is told why nothing is shown"
    assert "Traceback" not in messages and 'File "' not in messages
    assert "MRN00000042" not in _all_text(at)


def test_a_record_whose_view_cannot_be_audited_is_not_shown(own_store) -> None:
    warm = _open("patient", "oncologist", patient="42")  # caches the record while the store is free
    assert "MRN00000042" in _all_text(warm)
    warm.run()  # its view is audited now: this run writes nothing and caches the store as it stays
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(own_store)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        at = _open(
            "patient", "oncologist", patient="42"
        )  # a new session: its view is not audited yet
    finally:
        proc.kill()
        proc.wait()
    assert not at.exception
    assert "MRN00000042" not in _all_text(at)
    errors = [str(e.value) for e in at.error]
    assert any("not shown because its view could not be written" in e for e in errors), errors
