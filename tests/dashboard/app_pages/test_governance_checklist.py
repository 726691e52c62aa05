"""Governance page, "Checklists and dossier" tab (AppTest): counts per checklist, the table, the
missing-only filter, another model, and the dossier built, downloadable and audited."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analytics import store
from tests.dashboard.app_pages.test_pages import open_page

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def chk_db(demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("chk") / "clinic.duckdb"))
    trained_demo(db, bootstrap=2, folds=2)
    return db


def _checklist_frame(at):
    frames = [df.value for df in at.dataframe]
    found = [f for f in frames if {"checklist", "item", "status", "source"} <= set(f.columns)]
    assert found, [list(f.columns) for f in frames]
    return found[0]


def test_checklist_tab_counts_filters_and_builds_the_dossier(chk_db, monkeypatch) -> None:
    monkeypatch.setenv("ONCOLENS_DB", str(chk_db))
    at = open_page("governance", tab="Checklists and dossier")  # only the open tab runs (issue 23)
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["TRIPOD+AI"].endswith("of 52 answered") and metrics["DECIDE-AI"].endswith(
        "of 17 answered"
    )
    frame = _checklist_frame(at)
    assert len(frame) == 69 and set(frame["status"]) == {"answered", "missing"}
    answered = frame[frame["status"] == "answered"]
    assert answered["source"].str.len().gt(0).all()  # every answer names its source
    assert int(metrics["TRIPOD+AI"].split()[0]) == int((answered["checklist"] == "TRIPOD+AI").sum())

    at.toggle(key="chk_missing_treatment").set_value(True).run()
    only = _checklist_frame(at)
    assert len(only) == (frame["status"] == "missing").sum() and set(only["status"]) == {"missing"}

    at.selectbox(key="gov_checklist_model").set_value("mammography").run()
    assert not at.exception, at.exception
    assert any(m.label == "CLAIM" and m.value.endswith("of 42 answered") for m in at.metric)

    at.button(key="dossier_build_mammography").click().run()
    assert not at.exception, at.exception
    assert any(
        "dossier of mammography" in b.label
        for b in at.get("download_button")
        if hasattr(b, "label")
    )
    with store.open_store(chk_db, read_only=True) as con:
        events = con.execute(
            "SELECT count(*) FROM audit_event WHERE action = 'model_dossier' AND model_name = 'mammography'"
        ).fetchone()[0]
    assert events == 1

    # the treatment dossier reuses the page's loaded model and its cached subgroup audit
    at.selectbox(key="gov_checklist_model").set_value("treatment").run()
    at.button(key="dossier_build_treatment").click().run()
    assert not at.exception, at.exception
    with store.open_store(chk_db, read_only=True) as con:
        version = con.execute(
            "SELECT model_version FROM audit_event WHERE action = 'model_dossier' AND model_name = 'treatment'"
        ).fetchall()
    assert len(version) == 1 and version[0][0].startswith("xgb_pseudo-")


def test_the_3d_model_is_in_the_checklist_tab_with_its_reasons(chk_db, monkeypatch) -> None:
    """brain_mets_3d (issue 21): CLAIM from its own card; an item its card cannot answer is
    missing with the reason in 'source', not blank and not borrowed from a 2D card."""
    monkeypatch.setenv("ONCOLENS_DB", str(chk_db))
    at = open_page("governance", tab="Checklists and dossier")
    box = at.selectbox(key="gov_checklist_model")
    assert "brain_mets_3d" in box.options
    box.set_value("brain_mets_3d").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["CLAIM"].endswith("of 42 answered") and int(metrics["CLAIM"].split()[0]) > 20
    frame = _checklist_frame(at)
    row = frame[(frame["checklist"] == "CLAIM") & (frame["item"] == "36")].iloc[0]
    assert (
        row["status"] == "answered"
        and "lesion-level sensitivity" in row["answer / what would answer it"]
    )
    init = frame[(frame["checklist"] == "CLAIM") & (frame["item"] == "24")].iloc[0]
    assert init["status"] == "missing" and init["source"].startswith("not answered: the 3D card")
