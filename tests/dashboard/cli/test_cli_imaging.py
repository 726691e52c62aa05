"""`oncolens predict`, `ingest` and `validate imaging`: the contract's JSON, exit codes, the store rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from analytics import store
from dashboard.cli.main import main
from models.deid import deidentify as deid
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom

pytestmark = pytest.mark.filterwarnings("ignore")


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("cli_images")
    rng = np.random.default_rng
    for name, ph in (
        ("mg.dcm", phantoms.mammogram(rng(1), "malignant", lesion_diameter_mm=22.0)),
        ("mr.dcm", phantoms.brain_mri(rng(2), True, lesion_diameter_mm=28.0)),
    ):
        write_phantom_dicom(
            ph,
            f / name,
            patient_id="P1",
            study_uid=generate_uid(),
            series_uid=generate_uid(),
            sop_instance_uid=generate_uid(),
            study_date="20250301",
        )
    return f


def test_predict_json_walks_folders_and_exits_zero(folder, capsys) -> None:
    assert main(["predict", str(folder), "--json"]) == 0
    out = _lines(capsys.readouterr().out)
    assert [Path(r["file"]).name for r in out] == ["mg.dcm", "mr.dcm"]  # masks skipped, sorted
    for r in out:
        assert {
            "file",
            "model",
            "model_version",
            "label",
            "probabilities",
            "lesion",
            "latency_ms",
            "input_check",
            "refused",
            "uncertain_between",
            "weak_spots",
            "calibrated",
        } <= r.keys()
        assert r["input_check"]["in_distribution"] is True and r["refused"] is None
    assert out[1]["model"] == "brain_mri" and out[1]["lesion"]["longest_diameter_mm"] > 10


def test_predict_reports_bad_files_and_exits_non_zero(folder, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 200)
    assert main(["predict", str(folder / "mr.dcm"), str(bad), "--json"]) == 1
    captured = capsys.readouterr()
    good, err = _lines(captured.out)
    assert good["label"] == "tumour"
    assert err["file"] == str(bad) and err["error"] and "Traceback" not in captured.err
    assert main(["predict", str(folder / "mr.dcm")]) == 0
    assert "tumour" in capsys.readouterr().out


def test_predict_with_a_forced_model_and_with_no_files(folder, tmp_path, capsys) -> None:
    assert main(["predict", str(folder / "mr.dcm"), "--model", "mammography", "--json"]) == 1
    assert "MG" in _lines(capsys.readouterr().out)[0]["error"]
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty")]) == 1
    assert "no files" in capsys.readouterr().err


def test_ingest_files_a_study_with_its_ai_finding_once(demo_db, folder, tmp_path, capsys) -> None:
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db, read_only=True) as con:
        person_id, mrn = con.execute(
            "SELECT person_id, mrn FROM person ORDER BY person_id LIMIT 1"
        ).fetchone()
        before = con.execute("SELECT count(*) FROM measurement").fetchone()[0]
    f = tmp_path / "in" / "brain.dcm"
    study = generate_uid()
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(3), True, lesion_diameter_mm=30.0),
        f,
        patient_id=mrn,
        study_uid=study,
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20250401",
    )
    stranger = tmp_path / "in" / "stranger.dcm"
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(4), False),
        stranger,
        patient_id="NOBODY",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20250401",
    )
    for _ in range(2):  # the second run replaces, never duplicates
        assert main(["ingest", str(tmp_path / "in"), "--db", str(db)]) == 1
        out = _lines(capsys.readouterr().out)
        stored = [r for r in out if "error" not in r]
        failed = [r for r in out if "error" in r]
        assert len(stored) == 1 and stored[0]["person_id"] == person_id
        assert (
            len(failed) == 1
            and "not in the store" in failed[0]["error"]
            and "NOBODY" not in failed[0]["error"]
        )
    # filed de-identified: the store's key remaps the UIDs, the same way on every run
    key = deid.load_or_create_key(deid.key_path_for_store(db))
    assert stored[0]["study_uid"] == deid.remap_uid(study, key) != study
    assert stored[0]["deidentification"]["counts"]["U"] >= 3
    study = stored[0]["study_uid"]
    with store.open_store(db, read_only=True) as con:
        s = con.execute(
            "SELECT person_id, modality FROM imaging_study WHERE study_uid = ?", [study]
        ).fetchall()
        assert s == [(person_id, "MR")]
        f_rows = con.execute(
            "SELECT predicted_class, probability, longest_diameter_mm FROM ai_finding WHERE person_id = ?",
            [person_id],
        ).fetchall()
        assert (
            len(f_rows) == 1
            and f_rows[0][0] == "tumour"
            and f_rows[0][2] == pytest.approx(30, abs=6)
        )
        m = con.execute(
            "SELECT value, unit, source FROM measurement WHERE study_uid = ? AND source = 'ai'",
            [study],
        ).fetchall()
        assert len(m) == 1 and m[0][1] == "mm"
        assert con.execute("SELECT count(*) FROM measurement").fetchone()[0] == before + 1
        path = con.execute(
            "SELECT file_path FROM imaging_instance JOIN imaging_series USING (series_uid) "
            "WHERE study_uid = ?",
            [study],
        ).fetchone()[0]
        assert (
            Path(path) == Path(stored[0]["stored_file"])
            and Path(path).parent.parent.parent.name == "clinic_images"
        )
    kept = Path(path).read_bytes()
    assert (
        mrn.encode() not in kept
        and b"Demo^Patient" not in kept
        and stored[0]["study_uid"].encode() in kept
    )
    ds = pydicom.dcmread(path)
    assert ds.PatientID == str(person_id) and ds.PatientIdentityRemoved == "YES"
    assert f.exists()  # the original is read, never changed or moved


def test_ingest_needs_a_store_and_files(tmp_path, folder, capsys) -> None:
    assert main(["ingest", str(folder), "--db", str(tmp_path / "missing.duckdb")]) == 1
    assert "oncolens demo" in capsys.readouterr().err
    assert main(["ingest", "--db", str(tmp_path / "x.duckdb")]) == 1


def test_validate_imaging_gives_honest_figures_per_model(validated_imaging) -> None:
    out = validated_imaging  # `oncolens validate imaging --n 80 --json`, run once for this and test_cli_volumes
    # the 2D models here; the 3D ones (issue 21) are checked in tests/dashboard/cli/test_cli_volumes.py
    assert {"mammography", "brain_mri"} <= set(out)
    for r in (out["mammography"], out["brain_mri"]):
        assert (
            0.5 < r["auc"]["value"] <= 1.0
            and r["auc"]["ci_low"] <= r["auc"]["value"] <= r["auc"]["ci_high"]
        )
        assert 0 <= r["ece"] < 0.3 and 0 < r["lesion_dice"]["value"] <= 1
        assert r["n"] == 80 and len(r["weights_sha256"]) == 64
        # issue 18: the guard per model, and calibration before/after with whether it is applied
        g = r["guard"]
        assert g["auroc"] >= 0.99 and g["refusal_rate_out_of_distribution"] == 1.0
        assert g["refusal_rate_in_distribution"] <= 0.02 and not g["let_through"]
        assert {"ece_before_calibration", "ece_after_calibration"} <= r.keys()
        assert r["calibration_applied"] is False  # made held-out ECE worse for both demo models
        assert r["ece"] == r["ece_before_calibration"]


_PREDICT_AND_LIST_MODULES = """
import json, sys
from dashboard.cli.main import main
code = main(["predict", *sys.argv[2:], "--json", "--db", sys.argv[1]])
heavy = ("torch", "captum", "monai", "sklearn", "pandas", "duckdb", "analytics.store", "shap")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_predict_of_2d_images_imports_no_torch_nor_analytics_libraries(folder, tmp_path):
    """Issue 23: `oncolens predict` of 2D images reads on ONNX Runtime and NumPy; PyTorch, Captum,
    MONAI, scikit-learn and pandas (and the store, without one) cost seconds of its start and are
    never imported. Run in a fresh process, whose modules are what the command loaded."""
    import os
    import subprocess
    import sys

    from models.inference.registry import load_model

    for name in ("mammography", "brain_mri"):  # the graphs (and temperatures) in this cache
        load_model(name, device="cpu")
    root = Path(__file__).resolve().parents[3]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "ONCOLENS_CACHE": os.environ.get("ONCOLENS_CACHE", ""),
    }
    if not env["ONCOLENS_CACHE"]:
        del env["ONCOLENS_CACHE"]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _PREDICT_AND_LIST_MODULES,
            str(tmp_path / "none.duckdb"),
            str(folder),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    got = json.loads(lines[-1])
    assert got == {"code": 0, "loaded": []}, out.stderr[-2000:]
    reads = [json.loads(line) for line in lines[:-1]]
    assert [Path(r["file"]).name for r in reads] == ["mg.dcm", "mr.dcm"]
    assert all(r["label"] for r in reads)


def test_the_default_store_path_is_the_stores_own(monkeypatch, tmp_path):
    """`db_path` works the default out without importing the store; it must be the store's."""
    import argparse

    from dashboard.cli.common import db_path

    for env in (None, str(tmp_path / "x.duckdb"), "~/y.duckdb"):
        if env is None:
            monkeypatch.delenv("ONCOLENS_DB", raising=False)
        else:
            monkeypatch.setenv("ONCOLENS_DB", env)
        assert db_path(argparse.Namespace(db=None)) == store.default_db_path()
    assert db_path(argparse.Namespace(db=tmp_path / "z.duckdb")) == tmp_path / "z.duckdb"
