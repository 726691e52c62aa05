"""Governance page (AppTest), `oncolens validate subgroups` and `oncolens deidentify`: content, exit codes, JSON."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from analytics import store
from analytics.governance import audit
from analytics.treatment.decisions import make_decision, record_decision
from dashboard.cli.main import main
from dashboard.figures.governance import calibration_figure
from dashboard.panels.deid import deidentify_upload
from models.deid import deidentify as deid
from models.deid import pseudonyms
from models.inference.registry import load_model
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def gov_db(demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 300-patient demo store with a trained clinic model, audit events and one decision."""
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("gov") / "clinic.duckdb"))
    trained_demo(db, bootstrap=2, folds=2)
    for i in range(3):
        audit.record_event(
            db, actor=f"user{i}", role="oncologist", action="view_patient", subject=str(i + 1)
        )
    return db


def test_validate_subgroups_prints_the_audit_as_json(gov_db, capsys) -> None:
    code = main(
        [
            "validate",
            "subgroups",
            "--db",
            str(gov_db),
            "--n",
            "40",
            "--gap-bootstrap",
            "20",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    t = out["treatment"]
    assert t["patients"] > 200 and t["known_5y_status"] + t["censored_before_5y"] == t["patients"]
    attrs = {r["attribute"] for r in t["survival"]["by_group"]}
    assert {"age_band", "menopausal_status", "site", "stage"} <= attrs
    assert "sex" in t["five_year"]["skipped"]  # the demo clinic is all women: said, not hidden
    assert set(t["five_year"]["largest_gap"]) == {"auc", "tpr", "fpr", "calibration_gap"}
    for row in t["survival"]["by_group"]:
        assert row["n"] >= 1 and (row["harrell_c"] is None or 0 <= row["harrell_c"] <= 1)
    img = out["imaging"]
    assert set(img) == {"mammography", "brain_mri"}
    assert {r["attribute"] for r in img["mammography"]["by_group"]} == {
        "breast_density",
        "laterality",
        "lesion_size",
    }
    assert "no age" in img["mammography"]["note"]


def test_validate_subgroups_without_a_treatment_model_fails_with_a_message(
    demo_db, tmp_path, capsys
) -> None:
    db = Path(shutil.copy(demo_db, tmp_path / "bare.duckdb"))
    code = main(
        ["validate", "subgroups", "--db", str(db), "--n", "20", "--gap-bootstrap", "0", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and "error" in out["treatment"] and "mammography" in out["imaging"]
    assert main(["validate", "subgroups", "--db", str(db), "--threshold", "1.5"]) == 1


def test_governance_page_shows_cards_audit_saliency_trail_and_export(gov_db, monkeypatch) -> None:
    monkeypatch.setenv("ONCOLENS_DB", str(gov_db))
    with store.open_store(gov_db, read_only=True) as con:
        pid = con.execute("SELECT min(person_id) FROM person").fetchone()[0]
    record_decision(
        gov_db,
        make_decision(
            person_id=pid,
            model_version="v-test",
            recommended="endocrine",
            options=("endocrine", "chemotherapy"),
            chosen="chemotherapy",
            reason="patient preference",
            actor="dr",
        ),
    )
    # only the open tab is computed (issue 23): each tab opened by its link (?tab=...)
    tabs = {
        label: open_page("governance", tab=label)
        for label in (
            "Model cards",
            "Subgroup audit",
            "Saliency checks",
            "Audit trail",
            "Decisions",
        )
    }
    for at in tabs.values():
        assert not at.exception, at.exception

    def shown(at) -> str:
        return "\n".join(
            [
                texts(at.markdown),
                texts(at.caption),
                texts(at.info),
                texts(at.warning),
                *(e.label for e in at.expander),
            ]
        )

    cards = shown(tabs["Model cards"])
    assert "Mammography mass classifier" in cards and "Treatment: clinic model" in cards
    assert "Largest Harrell's C gap" not in cards  # the audit is not computed behind a closed tab
    audit_tab = shown(tabs["Subgroup audit"])
    assert "Largest Harrell's C gap" in audit_tab and "Largest AUC gap" in audit_tab
    saliency = shown(tabs["Saliency checks"])
    assert "saliency quality not measured" in saliency or "sanity threshold" in saliency
    frames = [df.value for df in tabs["Subgroup audit"].dataframe]
    groups = [f for f in frames if {"attribute", "group", "n", "harrell_c"} <= set(f.columns)]
    assert groups and {"age_band", "menopausal_status", "site"} <= set(groups[0]["attribute"])
    frames = [df.value for df in tabs["Audit trail"].dataframe]
    trail = [f for f in frames if {"event_id", "action", "actor"} <= set(f.columns)]
    assert trail and len(trail[0]) >= 3
    assert not any(
        f["subject"].astype(str).isin(["1", "2", "3"]).any() for f in trail
    )  # pseudonymised ids
    decisions = tabs["Decisions"]
    assert any(m.label == "Overridden" and m.value == "1" for m in decisions.metric)
    assert tabs["Audit trail"].get("download_button")  # export button


def test_audit_filters_narrow_the_trail(gov_db) -> None:
    from analytics.governance import board as governance

    with store.open_store(gov_db, read_only=True) as con:
        everything = governance.audit_events(con)
        one = governance.audit_events(con, actors=["user1"], actions=["view_patient"])
        none = governance.audit_events(
            con,
            since=everything["occurred_at"].max().date().replace(year=2000),
            until=everything["occurred_at"].max().date().replace(year=2001),
        )
    assert len(one) == 1 and one["actor"].iloc[0] == "user1" and len(everything) > 1 and none.empty


def test_calibration_figure_draws_groups_and_the_diagonal() -> None:
    import pandas as pd

    fig = calibration_figure(
        pd.DataFrame({"p": [0.2, 0.5], "o": [0.25, None], "g": ["a", "b"], "n": [10, 5]}),
        x="p",
        y="o",
        label="g",
        title="t",
        x_title="x",
        y_title="y",
    )
    assert len(fig.data) == 2 and list(fig.data[1].x) == [
        0.2
    ]  # the row without an observation is left out


def _phi_file(path: Path, patient_id: str) -> Path:
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(4), False, size=(96, 96)),
        path,
        patient_id=patient_id,
        patient_name="Doe^Jane",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240101",
    )
    return path


def test_deidentify_cli_writes_clean_copies_and_reports(tmp_path, capsys) -> None:
    src = _phi_file(tmp_path / "in" / "a.dcm", "MRN-998877")
    (tmp_path / "in" / "broken.dcm").write_bytes(b"not dicom")
    key = tmp_path / "k.key"
    code = main(
        [
            "deidentify",
            str(tmp_path / "in"),
            "--out",
            str(tmp_path / "out"),
            "--key-file",
            str(key),
            "--json",
        ]
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert code == 1  # one input failed; the other was still written
    ok = [r for r in lines if "error" not in r]
    assert len(ok) == 1 and len(lines) == 2
    raw = Path(ok[0]["out"]).read_bytes()
    assert (
        b"MRN-998877" not in raw
        and b"Doe^Jane" not in raw
        and src.read_bytes().count(b"MRN-998877") == 1
    )
    assert pydicom.dcmread(ok[0]["out"]).PatientID == pseudonyms.pseudonym(
        deid.load_or_create_key(key), "MRN-998877", pseudonyms.DICOM_FILES
    )
    assert main(["deidentify", str(src), "--out", str(src.parent)]) == 1  # never over the originals


def test_an_upload_is_deidentified_before_display(tmp_path) -> None:
    data = _phi_file(tmp_path / "u.dcm", "MRN-123123").read_bytes()
    clean, report = deidentify_upload(str(tmp_path / "clinic.duckdb"), data)
    assert b"MRN-123123" not in clean and b"Doe^Jane" not in clean and report.counts()["U"] >= 3
    assert (tmp_path / "clinic_deid.key").exists()


def test_imaging_subgroup_report_on_fresh_phantoms() -> None:
    from dashboard.services.subgroups import imaging_subgroup_report

    r = imaging_subgroup_report(load_model("brain_mri", device="cpu"), n=40, seed=5, bootstrap=10)
    groups = {r_["group"]: r_ for r_ in r["by_group"]}
    assert (
        groups["none"]["positives"] == 0 and groups["none"]["tpr"] is None
    )  # TPR undefined without lesions
    assert sum(g["n"] for g in groups.values()) == 40


def test_model_cards_tab_shows_3d_bundles_built_in_and_registered(
    gov_db, monkeypatch, tmp_path
) -> None:
    """The ethics board sees every 3D model: the built-in card's figures by lesion size, a
    registered bundle that ships no card as unmeasured, a broken one as broken (not hidden)."""
    monkeypatch.setenv("ONCOLENS_DB", str(gov_db))
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path))
    bare = tmp_path / "bundles" / "hospital_ct"
    (bare / "configs").mkdir(parents=True)
    (bare / "configs" / "metadata.json").write_text(
        json.dumps({"name": "Hospital CT nodules", "version": "0.3", "intended_use": "CT nodules"})
    )
    (bare / "oncolens.json").write_text(
        json.dumps({"sha256": "ab" * 32, "registered_at": "2026-12-01T10:00:00+00:00"})
    )
    broken = tmp_path / "bundles" / "broken"
    (broken / "configs").mkdir(parents=True)
    (broken / "configs" / "metadata.json").write_text("{not json")
    (broken / "oncolens.json").write_text("{}")
    at = open_page("governance", tab="Model cards")
    assert not at.exception, at.exception
    # as a reader sees them: the bundle's own words are Markdown-escaped in the label
    labels = [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", e.label) for e in at.expander]
    assert any(label.startswith("Imaging 3D: ") and "v1." in label for label in labels), labels
    assert "Imaging 3D: Hospital CT nodules v0.3" in labels and "Imaging 3D: broken v?" in labels
    shown = "\n".join([texts(at.markdown), texts(at.caption), texts(at.info), texts(at.warning)])
    assert "ships no card" in shown and "cannot be read" in shown
    assert "registered with `oncolens models add` on 2026-12-01" in shown
    frames = [df.value for df in at.dataframe if {"metric", "value"} <= set(df.value.columns)]
    rows = {m: v for f in frames for m, v in zip(f["metric"], f["value"], strict=True)}
    card = json.loads(
        (
            Path(__file__).resolve().parents[3] / "models/weights/brain_mets_3d/docs/card.json"
        ).read_text()
    )
    dice = card["metrics"]["dice"]
    assert rows["Dice, tumour (held-out volumes with a lesion)"].startswith(f"{dice['value']:.3f}")
    small = card["metrics"]["sensitivity_by_size"]["0-10 mm"]
    assert rows["sensitivity, lesions 0-10 mm"].startswith(
        f"{small['found']} of {small['lesions']}"
    )
    saliency = open_page("governance", tab="Saliency checks")
    assert not saliency.exception
    assert "brain_mets_3d (3D)" in texts(saliency.caption)


def test_a_registered_3d_card_for_other_weights_shows_no_figures_and_its_text_stays_plain(
    gov_db, monkeypatch, tmp_path
) -> None:
    """A third party's bundle: its card written for other weights than the pinned ones shows no
    figure; its own text renders no link; an empty size band says so instead of failing."""
    monkeypatch.setenv("ONCOLENS_DB", str(gov_db))
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path))
    builtin = Path(__file__).resolve().parents[3] / "models/weights/brain_mets_3d"
    card = json.loads((builtin / "docs/card.json").read_text())
    card["metrics"]["dice_by_size"]["0-10 mm"] = None  # no lesion of this size in its test set
    for name, pinned in (("other", "f" * 64), ("same", card["weights"]["sha256"])):
        root = tmp_path / "bundles" / name
        (root / "configs").mkdir(parents=True)
        (root / "docs").mkdir()
        (root / "configs" / "metadata.json").write_text(
            json.dumps(
                {
                    "name": f"Vendor {name}",
                    "version": "2.0",
                    "intended_use": "[click](http://x.invalid)",
                }
            )
        )
        (root / "docs" / "card.json").write_text(json.dumps(card))
        (root / "docs" / "saliency.json").write_bytes((builtin / "docs/saliency.json").read_bytes())
        (root / "oncolens.json").write_text(json.dumps({"sha256": pinned}))
    at = open_page("governance", tab="Model cards")
    assert not at.exception, at.exception
    warnings = texts(at.warning)
    assert warnings.count("written for other weights") == 1  # "other" only
    frames = [df.value for df in at.dataframe if {"metric", "value"} <= set(df.value.columns)]
    values = [v for f in frames for v in f["value"]]
    assert "no lesion of this size in the test set" in values
    assert "](http" not in texts(at.markdown)  # the link's syntax is escaped, not rendered
    saliency = texts(open_page("governance", tab="Saliency checks").info)
    assert "other (3D): saliency quality not measured yet" in saliency
    assert "volume_quality --write-card" in saliency
