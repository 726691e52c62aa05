"""Fixtures for the page tests: the app pointed at its own copy of the demo store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def app_db(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the 300-patient demo store: the pages write audit events into it."""
    path = tmp_path_factory.mktemp("app") / "app.duckdb"
    shutil.copyfile(demo_db, path)
    return path


@pytest.fixture
def app_env(app_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app (``$ONCOLENS_DB``) at the test store for one test."""
    monkeypatch.setenv("ONCOLENS_DB", str(app_db))
    return app_db
