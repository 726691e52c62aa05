"""`oncolens recommend` and `validate gbsg2 | treatment | treatment-csv`: the JSON contract, bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from lifelines.datasets import load_gbsg2

from analytics import store
from dashboard.cli.main import main
from dashboard.cli.treatment import _print_treatment_report

RECOMMEND_KEYS = {
    "patient_id",
    "model_version",
    "options",
    "recommended",
    "benefit",
    "benefit_ci",
    "shap",
}


@pytest.fixture(scope="module")
def clinic(demo_db, tmp_path_factory):
    """A copy of the demo store with its clinic model trained (few bootstrap refits: fast)."""
    db = tmp_path_factory.mktemp("treat") / "clinic.duckdb"
    shutil.copyfile(demo_db, db)
    assert main(["recommend", "--train", "--db", str(db), "--bootstrap", "3"]) == 0
    return db


def _in_scope(db, k: int = 0) -> str:
    """The ``k``-th patient in early disease without recurrence: the treatment model's scope (issue 17)."""
    with store.open_store(db, read_only=True) as con:
        return str(
            con.execute(
                "SELECT person_id FROM person WHERE person_id NOT IN (SELECT person_id FROM outcome_event) "
                "ORDER BY person_id LIMIT 1 OFFSET ?",
                [k],
            ).fetchall()[0][0]
        )


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_train_writes_weights_and_a_card_beside_the_store(clinic):
    folder = clinic.with_name("clinic_models")
    card = json.loads((folder / "treatment_outcome.json").read_text())
    assert (folder / "treatment_outcome.npz").exists()
    assert card["learner"]["name"] == "xgb_pseudo" and card["learner"]["bootstrap"] == 3
    assert len(card["weights"]["sha256"]) == 64 and card["version"].endswith(
        card["weights"]["sha256"][:12]
    )
    assert {"xgb_pseudo", "xgb_cox", "cox_ph"} <= set(card["metrics"]["learners"])
    assert card["training"]["patients"] > 250 and "not randomised" in " ".join(card["caveats"])


def test_recommend_prints_the_contract(clinic, capsys):
    pid = _in_scope(clinic)
    assert main(["recommend", pid, "--db", str(clinic), "--json"]) == 0
    out = _json(capsys)
    assert RECOMMEND_KEYS <= set(out) and out["patient_id"] == int(pid) and out["in_scope"] is True
    assert [o["treatment"] for o in out["options"]] == [
        "endocrine",
        "chemotherapy",
        "chemo_endocrine",
    ]
    for o in out["options"]:
        assert set(o) >= {"treatment", "rfs_5y", "rfs_5y_ci", "rmst_days"}
        assert o["rfs_5y_ci"][0] <= o["rfs_5y"] <= o["rfs_5y_ci"][1] and 0 <= o["rfs_5y"] <= 1
        assert 0 < o["rmst_days"] <= out["horizon_days"]
    lo, hi = out["benefit_ci"]
    assert lo <= out["benefit"] <= hi and out["benefit"] >= 0
    assert (out["recommended"] is None) == (lo <= 0)
    if out["recommended"] is None:
        assert out["statement"].startswith("no clear difference")
    shap = out["shap"]
    assert shap["base_value"] + sum(c["shap"] for c in shap["contributions"]) == pytest.approx(
        out["benefit"], abs=1e-5
    )
    assert {c["feature"] for c in shap["contributions"]} >= {
        "Tumour size (mm)",
        "Positive lymph nodes (count)",
    }


def test_recommend_loads_instead_of_refitting(clinic, capsys, monkeypatch):
    from analytics.treatment.model import outcome_model as treatment_outcome_model

    def refuse(*args, **kwargs):
        raise AssertionError("recommend refitted the model")

    monkeypatch.setattr(treatment_outcome_model.OutcomeModel, "fit", refuse)
    assert main(["recommend", _in_scope(clinic, 1), "--db", str(clinic)]) == 0
    assert "5-year RFS" in capsys.readouterr().out


def test_unknown_patient_and_bad_id(clinic, capsys):
    assert main(["recommend", "987654", "--db", str(clinic), "--json"]) == 1
    assert "no patient with id 987654" in capsys.readouterr().err
    assert main(["recommend", "seven", "--db", str(clinic)]) == 1
    assert "whole number" in capsys.readouterr().err
    assert main(["recommend", "--db", str(clinic)]) == 2
    assert "--train" in capsys.readouterr().err


def test_missing_model_says_how_to_train(demo_db, tmp_path, capsys):
    db = tmp_path / "untrained.duckdb"
    shutil.copyfile(demo_db, db)
    assert main(["recommend", "3", "--db", str(db)]) == 1
    assert "oncolens recommend --train" in capsys.readouterr().err


def test_patient_with_missing_covariates_is_refused(clinic, tmp_path, capsys):
    db = tmp_path / "gap.duckdb"
    shutil.copyfile(clinic, db)
    with store.open_store(db) as con:
        con.execute(
            "INSERT INTO person VALUES (5000, 'MRN5000', 'A', 'B', '1970-01-01', 'F', 'North', 'pre')"
        )
    args = [
        "recommend",
        "5000",
        "--db",
        str(db),
        "--model-dir",
        str(clinic.with_name("clinic_models")),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "patient 5000 lacks" in err and "Tumour size (mm)" in err and "Traceback" not in err


def test_validate_treatment_against_the_truth(clinic, capsys):
    assert (
        main(
            [
                "validate",
                "treatment",
                "--db",
                str(clinic),
                "--folds",
                "3",
                "--bootstrap",
                "3",
                "--json",
            ]
        )
        == 0
    )
    out = _json(capsys)
    truth = out["truth"]
    for key in (
        "fraction_recommended_truly_best",
        "policy_value_gain",
        "pehe",
        "best_single_option",
    ):
        assert key in truth
    assert 0 <= truth["fraction_recommended_truly_best"] <= 1 and 0 < truth["pehe"] < 0.5
    assert truth["oracle_value_rfs_5y"] >= truth["policy_value_rfs_5y"]
    assert out["shap"]["additivity_max_error"] < 1e-5
    _print_treatment_report(out)  # the plain-text report of the same figures
    text = capsys.readouterr().out
    assert "kept: xgb_pseudo" in text and "everyone: chemo_endocrine" in text and "PEHE" in text


def test_validate_treatment_needs_the_simulation_truth(clinic, tmp_path, capsys):
    db = tmp_path / "real.duckdb"
    shutil.copyfile(clinic, db)
    with store.open_store(db) as con:
        con.execute("DROP TABLE truth.potential_outcome")
    assert main(["validate", "treatment", "--db", str(db), "--folds", "3", "--bootstrap", "2"]) == 1
    assert "no simulation truth" in capsys.readouterr().err


def test_validate_gbsg2_reports_learners_policies_and_caveat(capsys):
    assert main(["validate", "gbsg2", "--folds", "3", "--bootstrap", "2", "--json"]) == 0
    out = _json(capsys)
    assert out["data"]["patients"] == 686
    learners = out["learners"]
    assert 0.62 < learners["xgb_pseudo"]["harrell_c"]["mean"] < 0.74
    assert 0.62 < learners["cox_ph"]["harrell_c"]["mean"] < 0.74
    assert "xgb_pseudo_minus_this" in learners["cox_ph"]
    policies = {r["policy"]: r for r in out["recommendation"]["followed_vs_not"]}
    everyone = policies["everyone: hormonal therapy"]
    assert everyone["hazard_ratio"] == pytest.approx(0.69, abs=0.03)  # crude HR of horTh in GBSG2
    assert (
        everyone["hazard_ratio_ci"][0] < everyone["hazard_ratio"] < everyone["hazard_ratio_ci"][1]
    )
    assert "logrank_p" in policies["model (best predicted option)"]
    assert "not randomised" in out["caveats"][0]
    assert out["published"]["c_index_approx"]["deepsurv"] == 0.67


def _gbsg2_csv(tmp_path):
    path = tmp_path / "trial.csv"
    load_gbsg2().to_csv(path, index=False)
    return path


def test_validate_treatment_csv(tmp_path, capsys):
    path = _gbsg2_csv(tmp_path)
    args = [
        "validate",
        "treatment-csv",
        str(path),
        "--treatment",
        "horTh",
        "--time",
        "time",
        "--event",
        "cens",
        "--covariates",
        "age",
        "tsize",
        "pnodes",
        "progrec",
        "estrec",
        "--folds",
        "3",
        "--bootstrap",
        "2",
        "--json",
    ]
    assert main(args) == 0
    out = _json(capsys)
    assert out["data"]["options"] == {"no": 440, "yes": 246}
    assert len(out["recommendation"]["followed_vs_not"]) == 3


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (
            ["--treatment", "hormones", "--time", "time", "--event", "cens"],
            1,
            "--treatment 'hormones'",
        ),
        (["--treatment", "horTh", "--time", "time", "--event", "tgrade"], 1, "must hold 0/1"),
        (
            ["--treatment", "horTh", "--time", "time", "--event", "cens", "--covariates", "bmi"],
            1,
            "covariate 'bmi'",
        ),
        (["--treatment", "horTh", "--time", "time"], 2, "usage"),
    ],
)
def test_validate_treatment_csv_bad_columns(tmp_path, capsys, extra, code, message):
    assert main(["validate", "treatment-csv", str(_gbsg2_csv(tmp_path)), *extra]) == code
    assert message in capsys.readouterr().err


def test_errors_reach_the_shell_without_a_traceback(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dashboard.cli.main",
            "validate",
            "treatment-csv",
            str(tmp_path / "none.csv"),
            "--treatment",
            "a",
            "--time",
            "b",
            "--event",
            "c",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 1 and "no file at" in r.stderr and "Traceback" not in r.stderr
