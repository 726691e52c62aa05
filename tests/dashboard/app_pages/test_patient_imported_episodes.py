"""The Patient page's setting banner for patients whose episodes came from an import (issue 17): a de
novo metastatic patient on her second line, and a patient in neoadjuvant therapy (no adjuvant model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analytics import store
from analytics.imports import tabular as imports
from tests.analytics.imports.test_episode_rows import EXAMPLES, RECORDS
from tests.dashboard.app_pages.test_pages import open_page, texts


@pytest.fixture(scope="module")
def imported(
    demo_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, int]]:
    """A copy of the demo store (data cut-off 2026-06-30) with the example patients and episodes."""
    path = tmp_path_factory.mktemp("imported_episodes") / "clinic.duckdb"
    shutil.copyfile(demo_db, path)
    files = [EXAMPLES / name for name in (*RECORDS, "episode.csv")]
    reports = imports.import_files(path, files, path.parent / "reports")
    assert all(r.error is None and not r.total("rejected") for r in reports)
    with store.open_store(path, read_only=True) as con:
        ids = dict(
            con.execute("SELECT mrn, person_id FROM person WHERE mrn LIKE 'EX-%'").fetchall()
        )
    return path, ids


def _banner(imported, monkeypatch, mrn: str):
    path, ids = imported
    monkeypatch.setenv("ONCOLENS_DB", str(path))
    at = open_page("patient", role="oncologist", patient=str(ids[mrn]))
    assert not at.exception and not at.error
    return at


def test_de_novo_patient_banner_says_so_and_shows_her_line(imported, monkeypatch):
    at = _banner(imported, monkeypatch, "EX-DENOVO-1")
    warnings = texts(at.warning).replace("\\", "")  # store text is markdown-escaped on the page
    assert "Metastatic breast cancer (de novo) · line 2: capecitabine since 2025-11-24" in warnings
    assert "Treatment model: out of scope." in warnings
    assert "recurrence 20" not in warnings  # never a recurrence she did not have
    lines = at.dataframe[0].value
    assert list(lines["line"]) == [1, 2] and list(lines["why it ended"]) == ["progression", ""]


def test_neoadjuvant_patient_banner_and_no_adjuvant_recommendation(imported, monkeypatch):
    at = _banner(imported, monkeypatch, "EX-NEO-1")
    info = texts(at.info).replace("\\", "")
    assert "Early breast cancer · neoadjuvant therapy since 2026-03-02" in info
    assert "Treatment model: out of scope." in info
    warning = texts(at.warning).replace("\\", "")
    assert "neoadjuvant therapy from 2026-03-02" in warning
    # what applies is said in her setting: no "line of therapy" she is not on
    assert "no model of this clinic covers her decision" in warning
    assert "current line" not in warning
    assert "Option chosen" not in [s.label for s in at.selectbox]  # no decision form
