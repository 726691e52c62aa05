"""Reporting checklists filled from evidence: an item answered from a card, turned missing when the card
loses the field, answered from the store's audit trail, every item wired to an answerer, JSON/CSV."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from analytics import store
from analytics.governance import audit
from analytics.governance.reporting.answers import ANSWERS
from analytics.governance.reporting.checklist import ANSWERED, MISSING, checklists_for, fill
from analytics.governance.reporting.evidence import (
    IMAGING,
    PREDICTION,
    VOLUME,
    Evidence,
    code_versions,
    saved_validations,
    store_facts,
)
from analytics.governance.reporting.items import BY_CHECKLIST, CLAIM, DECIDE_AI, TRIPOD_AI
from analytics.governance.reporting.volume_answers import VOLUME_ANSWERS

CARD = Path(__file__).resolve().parents[3] / "models" / "weights" / "mammography.json"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def facts(demo_db: Path) -> dict:
    with store.open_store(demo_db, read_only=True) as con:
        return store_facts(con, "mammography")


def _evidence(card: dict, facts: dict, **kw) -> Evidence:
    return Evidence(
        model="mammography",
        kind=IMAGING,
        card=card,
        card_source=str(CARD),
        store=facts,
        store_source="demo.duckdb",
        code=code_versions(),
        **kw,
    )


def test_every_item_has_an_answerer_and_nothing_else_does():
    for name, items in BY_CHECKLIST.items():
        assert [i.number for i in items] == list(ANSWERS[name]), name
    assert len(BY_CHECKLIST[TRIPOD_AI]) == 52 and len(BY_CHECKLIST[CLAIM]) == 42
    assert len(BY_CHECKLIST[DECIDE_AI]) == 17


def test_an_item_is_answered_from_the_card_and_turns_missing_without_its_field(card, facts):
    filled = fill(_evidence(card, facts))
    auc = filled.get(CLAIM, "36")
    assert auc.status == ANSWERED
    v = card["metrics"]["auc_malignant_vs_rest"]
    assert f"{v['value']:.3f}" in auc.answer and f"{v['ci_low']:.3f}" in auc.answer
    assert "auc_malignant_vs_rest" in auc.source

    stripped = copy.deepcopy(card)
    del stripped["metrics"]["auc_malignant_vs_rest"]
    del stripped["input_guard"]
    after = fill(_evidence(stripped, facts))
    assert after.get(CLAIM, "36").status == MISSING
    assert after.get(CLAIM, "36").to_json()["needs"]  # says what would answer it
    # robustness falls back to the weak spots, which the card still holds
    assert (
        after.get(CLAIM, "30").status == ANSWERED
        and "known_weak_spots" in after.get(CLAIM, "30").source
    )
    assert after.counts()[CLAIM][MISSING] == filled.counts()[CLAIM][MISSING] + 1
    assert card["metrics"]["auc_malignant_vs_rest"]  # the original card is untouched


def test_statements_no_data_holds_are_missing_until_the_card_records_them(card, facts):
    assert fill(_evidence(card, facts)).get(CLAIM, "42").status == MISSING
    funded = {**card, "reporting": {"funding": "Hospital research fund; no role in the analysis"}}
    answer = fill(_evidence(funded, facts)).get(CLAIM, "42")
    assert answer.status == ANSWERED and "Hospital research fund" in answer.answer
    assert answer.source == "model card: reporting.funding"


def test_use_items_are_answered_from_the_audit_trail(card, demo_db, tmp_path):
    db = Path(shutil.copy(demo_db, tmp_path / "used.duckdb"))
    with store.open_store(db, read_only=True) as con:
        before = fill(_evidence(card, store_facts(con, "mammography")))
    assert before.get(DECIDE_AI, "XII").status == MISSING
    for i in range(3):
        audit.record_event(
            db,
            actor=f"rad{i % 2}",
            role="oncologist",
            action="ai_read_shown",
            subject=str(i + 1),
            model_name="mammography",
            model_version="1.0.0",
        )
    audit.record_event(
        db, actor="x", role="oncologist", action="ai_read_shown", model_name="brain_mri"
    )
    with store.open_store(db, read_only=True) as con:
        after = fill(_evidence(card, store_facts(con, "mammography")))
    use = after.get(DECIDE_AI, "XII")
    assert use.status == ANSWERED and use.answer.startswith("3 audit events by 2 user(s)")
    assert "audit_event" in use.source
    assert after.get(DECIDE_AI, "XIII").answer.endswith("1.0.0")


def test_malformed_evidence_marks_only_its_item_missing(card, facts):
    broken = copy.deepcopy(card)
    broken["metrics"]["auc_malignant_vs_rest"] = {"value": "n/a", "ci_low": None, "ci_high": None}
    filled = fill(_evidence(broken, facts))
    item = filled.get(CLAIM, "36")
    assert item.status == MISSING and "could not be read" in item.source
    assert filled.get(CLAIM, "3").status == ANSWERED


def test_prediction_models_get_tripod_and_decide(facts):
    ev = Evidence(model="treatment", kind=PREDICTION, store=facts, code=code_versions())
    assert checklists_for(ev) == (TRIPOD_AI, DECIDE_AI)
    filled = fill(ev)
    # without a card, the store still answers the dates and the data-quality items
    assert filled.get(TRIPOD_AI, "5b").status == ANSWERED
    assert (
        filled.get(TRIPOD_AI, "7").status == ANSWERED
        and "data-quality checks" in filled.get(TRIPOD_AI, "7").answer
    )
    assert filled.get(TRIPOD_AI, "3b").status == MISSING


def test_json_and_csv_exports_hold_every_item(card, facts):
    filled = fill(_evidence(card, facts))
    data = filled.to_json()
    assert data["model"] == "mammography" and data["version"] == card["version"]
    assert len(data["items"]) == 42 + 17
    rows = list(csv.DictReader(io.StringIO(filled.to_csv())))
    assert len(rows) == 59 and {r["status"] for r in rows} == {ANSWERED, MISSING}
    missing = list(csv.DictReader(io.StringIO(filled.to_csv(only_missing=True))))
    assert len(missing) == sum(c[MISSING] for c in filled.counts().values())
    assert all(r["needs"] for r in missing)


def test_saved_validation_runs_are_read_and_a_broken_one_is_named(tmp_path):
    folder = tmp_path / "m"
    (folder / "validation").mkdir(parents=True)
    (folder / "validation" / "forecast.json").write_text('{"caveat": "simulated"}\n{"second": 1}\n')
    (folder / "validation" / "treatment.json").write_text("not json")
    runs = saved_validations(folder)
    assert runs["forecast"]["caveat"] == "simulated" and runs["forecast"]["file"].endswith(
        "forecast.json"
    )
    assert "treatment.json" in runs["_unreadable"]
    assert saved_validations(tmp_path / "absent") == {}


# --- a 3D model (a MONAI bundle): its own card, its own answerers ---------------------------------

BUNDLE = Path(__file__).resolve().parents[3] / "models" / "weights" / "brain_mets_3d"


def _volume_evidence(facts: dict, *, card: dict | None = None, saliency: bool = True) -> Evidence:
    built = json.loads((BUNDLE / "docs" / "card.json").read_text()) if card is None else card
    if saliency:
        built["saliency"] = json.loads((BUNDLE / "docs" / "saliency.json").read_text())
    return Evidence(
        model="brain_mets_3d",
        kind=VOLUME,
        card=built,
        card_source=str(BUNDLE / "docs" / "card.json"),
        store=facts,
        store_source="demo.duckdb",
        code=code_versions(),
        bundle={"metadata": json.loads((BUNDLE / "configs" / "metadata.json").read_text())},
    )


def test_every_volume_item_has_an_answerer():
    assert set(VOLUME_ANSWERS) == {CLAIM, DECIDE_AI}
    for name, answerers in VOLUME_ANSWERS.items():
        assert set(answerers) == {i.number for i in BY_CHECKLIST[name]}, name


def test_a_3d_card_answers_claim_from_its_own_figures(facts):
    ev = _volume_evidence(facts)
    assert checklists_for(ev) == (CLAIM, DECIDE_AI)
    filled = fill(ev)
    card = ev.card
    dice = card["metrics"]["dice"]
    metrics = filled.get(CLAIM, "28")
    assert metrics.status == ANSWERED and f"dice {dice['value']:.3f}" in metrics.answer
    assert (
        f"{dice['ci_low']:.3f}-{dice['ci_high']:.3f}" in metrics.answer and "HD95" in metrics.answer
    )
    sens = card["metrics"]["lesion_sensitivity"]
    assert f"lesion-level sensitivity {sens['value']:.2f}" in filled.get(CLAIM, "36").answer
    by_size = filled.get(CLAIM, "37").answer
    for band, v in card["metrics"]["sensitivity_by_size"].items():
        assert f"{band}: {v['found']} of {v['lesions']} found" in by_size
    assert "sanity check passed" in filled.get(CLAIM, "31").answer  # Grad-CAM
    assert "docs/saliency.json" in filled.get(CLAIM, "31").source
    assert str(card["input_guard"]["threshold"]) in filled.get(CLAIM, "30").answer
    assert "MR" in filled.get(CLAIM, "8").answer and "2 x 2 x 2 mm" in filled.get(CLAIM, "9").answer
    assert card["limitations"][0][:40] in filled.get(CLAIM, "38").answer
    assert "configs/metadata.json" in filled.get(CLAIM, "3").source
    assert filled.version == card["version"]
    # what a 3D card cannot answer is missing, and says why (never filled in)
    for number in ("13", "15", "17", "18", "21", "24", "26", "27", "32"):
        item = filled.get(CLAIM, number)
        assert item.status == MISSING and item.source.startswith("not answered"), number
    assert "probability floor" in filled.get(CLAIM, "26").source  # what the card does record
    # the 2D partition answer ("disjoint at the image level") is never claimed for 3D
    assert all("disjoint" not in a.answer for a in filled.answers)


def test_a_3d_item_turns_missing_without_its_field(facts):
    card = json.loads((BUNDLE / "docs" / "card.json").read_text())
    del card["metrics"]
    filled = fill(_volume_evidence(facts, card=card))
    for number in ("28", "29", "36", "37"):
        assert filled.get(CLAIM, number).status == MISSING, number
    no_maps = fill(_volume_evidence(facts, saliency=False))  # absent, or of other weights
    item = no_maps.get(CLAIM, "31")
    assert item.status == MISSING and "measured on these weights" in item.source


def test_3d_reads_in_the_store_answer_decide_ai_errors(demo_db: Path, tmp_path):
    db = Path(shutil.copy(demo_db, tmp_path / "reads.duckdb"))
    with store.open_store(db) as con:
        for uid, refused in (("1.2.3", None), ("1.2.4", "the input check refused it")):
            con.execute(
                "INSERT INTO ai_volume_read (series_uid, person_id, study_uid, study_date, modality, "
                "model_name, model_version, label, lesions, refused, guard_score, guard_threshold, "
                "input_check, read_at) VALUES (?, 1, '1.2', DATE '2026-01-05', 'MR', 'brain_mets_3d', "
                "'1.2.0', ?, 0, ?, 0.5, 1.5, '{}', TIMESTAMP '2026-01-05 09:00:00')",
                [uid, None if refused else "no lesion", refused],
            )
        facts = store_facts(con, "brain_mets_3d")
    filled = fill(_volume_evidence(facts))
    assert filled.get(DECIDE_AI, "VIII").answer == "2 3D reads filed, 1 refused by the input guard"
    assert filled.get(DECIDE_AI, "XIV").status == MISSING
    assert "brain_mets_3d" in filled.get(DECIDE_AI, "I").answer
