"""The process `oncolens serve` runs (dashboard/server.py): the sign-in page's imports and demo-account
check done before Streamlit listens, and nothing the other pages need (issue 23)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from analytics import store
from analytics.governance import users
from dashboard.cli import clinic

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("scipy", "torch", "sklearn", "shap", "lifelines", "pydicom", "onnxruntime", "kaleido")


def _preload_in_a_fresh_process(db: Path | None) -> dict:
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from dashboard import server\n"
        "from analytics.governance import users\n"
        f"done = server.preload({None if db is None else repr(str(db))} and Path({str(db)!r}))\n"
        "info = users._published_password_matches.cache_info()\n"
        "print(json.dumps({'done': done, 'checked': info.currsize,\n"
        f"    'heavy': [m for m in {HEAVY!r} if m in sys.modules],\n"
        "    'app': [m for m in ('pandas', 'duckdb', 'dashboard.resources', 'dashboard.session.auth',\n"
        "        'dashboard.session.landing', 'dashboard.session.state') if m in sys.modules]}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "No runtime found" not in out.stderr  # Streamlit's expected warnings are quieted
    return json.loads(out.stdout)


def test_the_served_process_imports_the_sign_in_page_and_checks_the_demo_accounts(tmp_path):
    db = tmp_path / "clinic.duckdb"
    store.connect(db, create=True).close()
    users.add_demo_accounts(db)
    got = _preload_in_a_fresh_process(db)
    assert got["done"] == ["imports", "demo accounts"]
    assert got["checked"] == len(users.DEMO_ACCOUNTS)  # remembered: the first visitor pays none
    assert got["app"] == [
        "pandas",
        "duckdb",
        "dashboard.resources",
        "dashboard.session.auth",
        "dashboard.session.landing",
        "dashboard.session.state",
    ]
    assert got["heavy"] == []  # the other pages' libraries still load in the background


def test_a_store_that_cannot_be_read_only_skips_the_accounts_check(tmp_path):
    missing = tmp_path / "nope.duckdb"
    assert _preload_in_a_fresh_process(missing)["done"] == ["imports"]
    assert not missing.exists()  # a read-only look creates nothing
    assert _preload_in_a_fresh_process(None)["done"] == ["imports"]


def test_oncolens_serve_starts_streamlit_through_the_preload(tmp_path):
    cmd = clinic.streamlit_command(tmp_path / "c.duckdb", 8501, "127.0.0.1")
    assert cmd[1:4] == ["-m", "dashboard.server", "run"]
    assert Path(cmd[4]).name == "app.py"
