"""`oncolens demo` trains the clinic's treatment model, skips it on request, and never keeps a stale one."""

from __future__ import annotations

import json
from pathlib import Path

from analytics.treatment.model.files import model_paths
from dashboard.cli.main import main
from tests.dashboard.cli.conftest import copy_clinic
from tests.dashboard.cli.test_cli import oncolens


def test_demo_trains_the_model_and_force_no_model_removes_the_replaced_one(
    demo_150, tmp_path, capsys
):
    """The demos run as a user runs them (a process each); the two ``recommend`` checks call the
    CLI's ``main`` in this process (a CLI start is ~4 CPU-s of imports, and what they check is the
    code, the printed version and the one-line hint)."""
    # `oncolens demo --patients 150 --images 0 --json`, run once for this and test_cli_worklist
    built = Path(demo_150["db"])
    model = demo_150["summary"]["treatment_model"]
    assert model["model_dir"] == str(built.with_name("clinic_models"))
    assert model["model_version"].startswith("xgb_pseudo-") and model["train_s"] > 0
    db = copy_clinic(built, tmp_path)  # this test replaces the store: its own copy
    folder = tmp_path / "clinic_models"
    weights, card = model_paths(folder)
    assert json.loads(card.read_text())["version"] == model["model_version"] and weights.exists()
    code = main(["recommend", "3", "--db", str(db), "--json"])
    rec = capsys.readouterr()
    assert code == 0, rec.err
    assert json.loads(rec.out)["model_version"] == model["model_version"]

    r = oncolens(
        "demo",
        "--patients",
        "120",
        "--seed",
        "2",
        "--images",
        "0",
        "--db",
        str(db),
        "--force",
        "--no-model",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert "--no-model" in json.loads(r.stdout)["treatment_model"]["skipped"]
    assert not weights.exists() and not card.exists()  # no model of the replaced clinic
    assert "removed the replaced store's treatment model" in r.stderr
    code = main(["recommend", "3", "--db", str(db)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "oncolens recommend --train" in err[0]


def test_demo_too_small_for_a_model_still_succeeds_and_says_why(tmp_path):
    db = tmp_path / "tiny.duckdb"
    r = oncolens("demo", "--patients", "20", "--images", "0", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "No treatment model: too few usable patients" in r.stdout
    assert not (tmp_path / "tiny_models" / "treatment_outcome.json").exists()
