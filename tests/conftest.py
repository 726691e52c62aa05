"""Shared fixtures: one small demo store per test session, built by the real generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from sample_data.demo import write_demo

DEMO_PATIENTS = 300
DEMO_SEED = 7


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "demo.duckdb"
    write_demo(path, patients=DEMO_PATIENTS, seed=DEMO_SEED)
    return path
