"""The model dossier and checklist service, and `oncolens checklist` / `oncolens dossier`: every section in
the PDF's text, the treatment model's TRIPOD+AI answers, the audit event, refusals with one line."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader

from analytics import store
from dashboard.cli.main import main
from dashboard.services import dossier

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def clinic_db(demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 300-patient demo store with a trained clinic model (its card now carries calibration)."""
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("dossier") / "clinic.duckdb"))
    trained_demo(db, bootstrap=2, folds=2)
    return db


def _pdf_text(path: Path) -> str:
    """The PDF's words with single spaces: where a justified line wraps depends on which renderer drew
    the figures before it (kaleido or matplotlib), so a phrase may span two lines."""
    return " ".join(" ".join(page.extract_text() for page in PdfReader(path).pages).split())


def test_treatment_dossier_has_every_section_and_is_audited(clinic_db, tmp_path, capsys):
    out = tmp_path / "treatment.pdf"
    assert main(["dossier", "treatment", "--db", str(clinic_db), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    text = _pdf_text(out)
    for heading in dossier.SECTIONS:
        assert heading in text, heading
    card = json.loads((clinic_db.with_name("clinic_models") / "treatment_outcome.json").read_text())
    assert card["version"] in text and card["weights"]["sha256"][:40] in text
    # the deployed choice and its reason, the calibration and its sign convention
    assert (
        "Why this one" in text and card["metrics"]["learners"]["selection"]["why_kept"][:30] in text
    )
    assert "Kaplan-Meier" in text and "opposite signs" in text
    assert "TRIPOD+AI" in text and "DECIDE-AI" in text
    with store.open_store(clinic_db, read_only=True) as con:
        row = con.execute(
            "SELECT model_name, model_version, inputs_sha256 FROM audit_event WHERE action = 'model_dossier'"
        ).fetchall()
    assert row == [("treatment", card["version"], result["sha256"])]
    assert result["checklist"]["TRIPOD+AI"]["answered"] > 30
    # reading a dossier is not use of the model: DECIDE-AI's exposure item stays missing
    assert (
        dossier.model_checklist("treatment", clinic_db).get("DECIDE-AI", "XII").status == "missing"
    )


def test_the_treatment_card_calibration_answers_tripod_12f_and_turns_missing_without_it(
    clinic_db, tmp_path
):
    filled = dossier.model_checklist("treatment", clinic_db)
    item = filled.get("TRIPOD+AI", "12f")
    assert item.status == "answered" and item.source == "model card: calibration"
    assert "none applied" in item.answer  # the recalibration decision is stated
    # a copy of the store whose card lost its calibration
    db = Path(shutil.copy(clinic_db, tmp_path / "copy.duckdb"))
    models = tmp_path / "copy_models"
    shutil.copytree(clinic_db.with_name("clinic_models"), models)
    card = json.loads((models / "treatment_outcome.json").read_text())
    del card["calibration"]
    (models / "treatment_outcome.json").write_text(json.dumps(card))
    assert dossier.model_checklist("treatment", db).get("TRIPOD+AI", "12f").status == "missing"


def test_imaging_dossier_without_phantoms_says_so(clinic_db, tmp_path):
    out = tmp_path / "mammo.pdf"
    result = dossier.write_dossier("mammography", clinic_db, out, actor="t", role=None, phantoms=0)
    text = _pdf_text(out)
    for heading in dossier.SECTIONS:
        assert heading in text, heading
    assert "Refusal by kind" in text and "integrated_gradients" in text  # input guard, saliency
    assert "run with phantoms > 0" in text
    assert result["checklist"]["CLAIM"]["answered"] >= 25


def test_forecast_checklist_reads_a_saved_validation_run(clinic_db, tmp_path):
    db = Path(shutil.copy(clinic_db, tmp_path / "f.duckdb"))
    shutil.copytree(clinic_db.with_name("clinic_models"), tmp_path / "f_models")
    before = dossier.model_checklist("forecast", db)
    assert before.get("TRIPOD+AI", "12f").status == "missing"
    run = {
        "tumour": {
            "design": "held-out readings",
            "overall": {
                "readings": 10,
                "mae_mm": {"tgi": 1.0, "locf": 2.0, "trend": 3.0},
                "coverage_80": 0.8,
                "coverage_95": 0.95,
                "uncalibrated": {"coverage_80": 0.7, "coverage_95": 0.9},
            },
        },
        "caveat": "simulated clinic",
    }
    (tmp_path / "f_models" / "validation").mkdir()
    (tmp_path / "f_models" / "validation" / "forecast.json").write_text(json.dumps(run) + "\n")
    after = dossier.model_checklist("forecast", db)
    item = after.get("TRIPOD+AI", "12f")
    assert item.status == "answered" and "0.70 before, 0.80 after" in item.answer
    assert after.get("TRIPOD+AI", "26").answer == "simulated clinic"
    # the forecast has no card of its own: its intended use is missing, not borrowed
    assert after.get("TRIPOD+AI", "3b").status == "missing"


def test_checklist_cli_prints_json_csv_and_refuses_an_unknown_model(clinic_db, capsys):
    assert main(["checklist", "treatment", "--db", str(clinic_db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["counts"]) == {"TRIPOD+AI", "DECIDE-AI"} and len(data["items"]) == 52 + 17
    assert main(["checklist", "brain_mri", "--db", str(clinic_db), "--csv", "--missing"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and all(r["status"] == "missing" and r["needs"] for r in rows)
    assert main(["checklist", "nope", "--db", str(clinic_db)]) == 1
    err = capsys.readouterr().err
    assert (
        "unknown model 'nope'" in err
        and "Traceback" not in err
        and len(err.strip().splitlines()) == 1
    )
    assert main(["dossier", "treatment", "--db", str(clinic_db), "--out", "x.txt"]) == 1
    assert main(["checklist", "treatment", "--db", str(clinic_db.with_name("absent.duckdb"))]) == 1


def test_a_saved_subgroup_audit_answers_the_fairness_items(clinic_db, tmp_path, capsys):
    """The real `oncolens validate subgroups --json` output, saved where the evidence is read."""
    db = Path(shutil.copy(clinic_db, tmp_path / "s.duckdb"))
    shutil.copytree(clinic_db.with_name("clinic_models"), tmp_path / "s_models")
    assert dossier.model_checklist("treatment", db).get("TRIPOD+AI", "14").status == "missing"
    args = [
        "validate",
        "subgroups",
        "--db",
        str(db),
        "--n",
        "20",
        "--gap-bootstrap",
        "10",
        "--json",
    ]
    assert main(args) == 0
    (tmp_path / "s_models" / "validation").mkdir()
    (tmp_path / "s_models" / "validation" / "subgroups.json").write_text(capsys.readouterr().out)
    filled = dossier.model_checklist("treatment", db)
    for number in ("14", "12d", "23b"):
        item = filled.get("TRIPOD+AI", number)
        assert item.status == "answered" and "subgroups.json" in item.source, number
    assert "Harrell's C" in filled.get("TRIPOD+AI", "14").answer  # the largest gaps, named


def test_forecast_dossier_without_a_validation_run_says_what_would_answer(clinic_db, tmp_path):
    out = tmp_path / "forecast.pdf"
    dossier.write_dossier("forecast", clinic_db, out, actor="t", role=None)
    text = _pdf_text(out)
    for heading in dossier.SECTIONS:
        assert heading in text, heading
    assert "No forecast validation run saved" in text and "has no card of its own" in text


def test_a_store_without_a_treatment_model_still_gets_a_dossier_that_says_so(demo_db, tmp_path):
    db = Path(shutil.copy(demo_db, tmp_path / "bare.duckdb"))
    out = tmp_path / "bare.pdf"
    result = dossier.write_dossier("treatment", db, out, actor="t", role=None)
    text = _pdf_text(out)
    assert "No treatment model card" in text and "Not computed" in text
    assert result["version"] is None and result["checklist"]["TRIPOD+AI"]["missing"] > 40


def test_the_3d_model_has_a_checklist_and_a_dossier_from_its_own_card(demo_db, tmp_path, capsys):
    """Issue 21 leftovers: brain_mets_3d is governed like the others, from the figures its card has
    (Dice and HD95 with intervals, lesions found by size, guard, limits); what it lacks is missing."""
    from models.volumes.cards import BUILTIN_DIR

    assert "brain_mets_3d" in dossier.model_names()
    db = Path(shutil.copy(demo_db, tmp_path / "volume.duckdb"))
    card = json.loads((BUILTIN_DIR / "docs" / "card.json").read_text())
    assert main(["checklist", "brain_mets_3d", "--db", str(db), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["version"] == card["version"] and set(result["counts"]) == {"CLAIM", "DECIDE-AI"}
    items = {(r["checklist"], r["item"]): r for r in result["items"]}
    assert items[("CLAIM", "28")]["status"] == "answered"
    assert items[("CLAIM", "24")]["status"] == "missing"
    assert items[("CLAIM", "24")]["source"].startswith("not answered")
    out = tmp_path / "volume.pdf"
    assert main(["dossier", "brain_mets_3d", "--db", str(db), "--out", str(out)]) == 0
    text = _pdf_text(out)
    for heading in dossier.SECTIONS:
        assert heading in text, heading
    dice = card["metrics"]["dice"]
    assert f"{dice['ci_low']:.3f}-{dice['ci_high']:.3f}" in text and "HD95 (mm)" in text
    assert "By the lesion's longest diameter" in text and "Lesion-free volumes read clear" in text
    assert card["weights"]["sha256"][:40] in text
    assert "No calibration on record" in text and "no subgroup audit exists for 3D models" in text
    assert "brain upside down" in text  # the guard's must-refuse scores
    assert card["limitations"][0][:50] in text
    assert "Saliency methods" in text  # docs/saliency.json: measured on these weights
    assert "Expected calibration error" not in text and "Reliability" not in text  # no 2D figure


def test_a_registered_bundle_is_governed_too(tmp_path, monkeypatch, demo_db):
    """A bundle registered with `oncolens models add` appears in the checklists and the dossier;
    its weights are answered from the sha256 pinned at registration."""
    from models.volumes import bundle as bundles

    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path / "models"))
    source = tmp_path / "src" / "site_mets"
    shutil.copytree(bundles.BUILTIN_DIR, source)
    (source / "docs" / "card.json").unlink()  # a third party's bundle without our card
    (source / "docs" / "saliency.json").unlink()
    bundles.register(source)
    assert dossier.model_names()[-2:] == ("brain_mets_3d", "site_mets")
    filled = dossier.model_checklist("site_mets", Path(demo_db))
    weights = filled.get("DECIDE-AI", "VI")
    assert weights.status == "answered" and "pinned at registration" in weights.answer
    assert filled.get("CLAIM", "28").status == "missing"  # no card: no figures, none invented
    assert filled.get("CLAIM", "31").status == "missing"
    assert filled.get("CLAIM", "8").status == "answered"  # the input contract of its metadata
    data = dossier.gather_dossier("site_mets", Path(demo_db), generated_by="t", phantoms=0)
    rows = dict(data.sections[0].rows)
    assert "Registered" in rows and "pinned" in rows["Registered"]
    # found in review: facts of our own card were stated for a third party's bundle too
    said = " ".join(p for section in data.sections for p in section.paragraphs)
    assert "MNI152" not in said and "Out of scope: not recorded" in said
