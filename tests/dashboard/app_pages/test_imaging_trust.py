"""Imaging reads to trust (issue 18) through the CLI, ingest and the page: refusals, uncertain reads,
the explained class, study links and uploads of another patient.

One refused file (a photograph behind a valid brain-MR header) must get the same answer from
``oncolens predict --json``, ``oncolens ingest`` (an ``ai_refusal`` row, no finding, no
measurement) and the Imaging page (the image, the reason, no outline, no read).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from analytics import store
from dashboard.cli.main import main
from models.dicom.reader import read_dicom
from models.inference.read import UNCERTAIN_MARGIN, read_image
from models.inference.registry import load_model
from models.training import ood
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from tests.dashboard.app_pages.test_imaging_page import build_imaging_db, viewers
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def trust_db(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Its own copy of the Imaging page's test store (these tests ingest into it)."""
    return build_imaging_db(demo_db, tmp_path_factory.mktemp("imaging_trust"))


@pytest.fixture
def env(trust_db, monkeypatch):
    monkeypatch.setenv("ONCOLENS_DB", str(trust_db["db"]))
    return trust_db


def _mrn(db: Path, person_id: int) -> str:
    with store.open_store(db, read_only=True) as con:
        return str(
            con.execute("SELECT mrn FROM person WHERE person_id = ?", [person_id]).fetchone()[0]
        )


def _camera_behind_brain_tags(path: Path, patient_id: str) -> Path:
    camera = next(i for i in ood.ood_images("brain_mri") if i.name == "camera")
    ood.write_ood_dicom(camera, "brain_mri", path)
    import pydicom  # local: only this helper rewrites a header

    ds = pydicom.dcmread(path)
    ds.PatientID = patient_id
    ds.save_as(path)
    return path


def test_cli_ingest_and_page_agree_on_a_refused_file(env, tmp_path, capsys):
    db, pid = env["db"], env["brain_pid"]
    refused = _camera_behind_brain_tags(tmp_path / "camera.dcm", _mrn(db, pid))
    good = tmp_path / "good.dcm"
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(5), True, lesion_diameter_mm=26.0),
        good,
        patient_id="X",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240105",
    )
    # (1) predict: a refusal is a result, counted as a failed input; the other file is read
    assert main(["predict", str(refused), str(good), "--json"]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    by_file = {Path(r["file"]).name: r for r in lines}
    cli = by_file["camera.dcm"]
    assert cli["label"] is None and cli["refused"] and "error" not in cli
    assert cli["input_check"]["in_distribution"] is False
    assert cli["input_check"]["score"] > cli["input_check"]["threshold"]
    assert cli["lesion"] is None and cli["probabilities"] == {}
    assert by_file["good.dcm"]["label"] == "tumour" and by_file["good.dcm"]["refused"] is None
    # (2) ingest: the image is filed, the refusal stored, no finding and no AI measurement
    assert main(["ingest", str(refused), "--db", str(db)]) == 0
    entry = json.loads(capsys.readouterr().out.splitlines()[0])
    assert entry["ai"] is None and entry["refused"] == cli["refused"]
    assert entry["input_check"]["score"] == pytest.approx(cli["input_check"]["score"], abs=1e-3)
    with store.open_store(db, read_only=True) as con:
        rows = con.execute(
            "SELECT model_name, score, threshold, reason FROM ai_refusal WHERE sop_instance_uid = ?",
            [entry["sop_instance_uid"]],
        ).fetchall()
        findings = con.execute(
            "SELECT count(*) FROM ai_finding WHERE sop_instance_uid = ?",
            [entry["sop_instance_uid"]],
        ).fetchone()[0]
    assert rows and rows[0][0] == "brain_mri" and rows[0][3] == cli["refused"]
    assert rows[0][1] == pytest.approx(cli["input_check"]["score"], abs=1e-3)
    assert findings == 0
    # (3) the page: the image with the reason, no read, no outline, no saliency map
    at = open_page("imaging", patient=str(pid))
    box = at.selectbox(key="imaging_source")
    seen = False
    for index in range(len(box.options) - 2):  # the images (not the upload, not the demo volume)
        at.selectbox(key="imaging_source").set_value(index).run()
        assert not at.exception
        if "No AI read" in texts(at.error):
            seen = True
            assert cli["refused"] in texts(at.error)
            assert "Most likely" not in {m.label for m in at.metric}
            assert not at.get("plotly_chart")  # no saliency figure
            (spec,) = viewers(at)  # the image, with no outline and no saliency overlay
            assert not any(o["name"] in ("AI outline", "Saliency") for o in spec["overlays"])
            assert "nothing to explain" in texts(at.caption)
    assert seen


def _uncertain_phantom(tmp_path: Path) -> Path:
    """A seeded mammogram whose read has its top two classes within the margin (searched, seeded)."""
    model = load_model("mammography", device="cpu")
    for i, p in enumerate(phantoms.sample_mammograms(80, 4711)):
        path = write_phantom_dicom(
            p,
            tmp_path / f"m{i}.dcm",
            patient_id="UNCERTAIN",
            study_uid=generate_uid(),
            series_uid=generate_uid(),
            sop_instance_uid=generate_uid(),
            study_date="20240105",
        )
        ai = read_image(model, read_dicom(path))
        if ai.uncertain_between is not None:
            return path
    raise AssertionError("no uncertain read among 80 seeded phantoms")


def test_an_uncertain_read_renders_as_uncertain(env, tmp_path):
    path = _uncertain_phantom(tmp_path)
    at = open_page("imaging")
    at.selectbox(key="imaging_source").set_value(-1).run()
    at.file_uploader(key="imaging_upload").set_value(
        ("m.dcm", path.read_bytes(), "application/dicom")
    ).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Most likely"] == "Uncertain"
    warning = texts(at.warning)
    assert "Uncertain between" in warning and f"{UNCERTAIN_MARGIN:.0%}" in warning
    assert warning.count("%") >= 3  # both numbers and the margin
    assert "Calibrated probability" not in texts(at.success) + warning  # calibration not applied


def _target_box(at):
    return next(s for s in at.selectbox if s.key and s.key.startswith("saliency_target_"))


def test_the_explained_class_resets_with_the_image_and_model(env):
    at = open_page("imaging")
    box = at.selectbox(key="imaging_source")
    mg = next(k - 1 for k, label in enumerate(box.options) if " · MG · " in label)
    mr = next(k - 1 for k, label in enumerate(box.options) if " · MR · " in label)
    at.selectbox(key="imaging_source").set_value(mg).run()
    target = _target_box(at)
    assert len(target.options) == 3
    target.set_value(1).run()  # "benign"
    assert _target_box(at).value == 1
    at.selectbox(key="imaging_source").set_value(mr).run()
    assert not at.exception
    target = _target_box(at)
    assert len(target.options) == 2  # the brain model's classes, not the mammography's
    assert "benign" not in " ".join(target.options).lower()
    assert "(AI read)" in target.options[target.value]  # starts again at the new read's label


def test_a_study_link_is_the_study_shown_or_the_page_says_it_has_none(env):
    from analytics.imaging.queries import patient_images

    with store.open_store(env["db"], read_only=True) as con:
        images = patient_images(con, int(env["mammo_pid"]))
    assert len(images) >= 2
    first, last = images.iloc[0], images.iloc[-1]
    at = open_page("imaging", patient=str(env["mammo_pid"]), study=str(first["study_uid"]))
    at.selectbox(key="imaging_source").set_value(0).run()
    # the same session follows another link: the linked study wins over the kept choice
    at.query_params["study"] = str(last["study_uid"])
    at.run()
    assert at.selectbox(key="imaging_source").value == len(images) - 1
    at.query_params["study"] = "1.2.3.not.here"
    at.run()
    assert not at.exception
    assert "has no image files on record" in texts(at.warning)
    assert at.selectbox(key="imaging_source").value == -1  # no other study in its place
    assert not at.get("plotly_chart") and not viewers(at)


def test_an_upload_of_another_patient_is_refused_unless_confirmed_and_audited(env, tmp_path):
    pid = env["mammo_pid"]
    path = write_phantom_dicom(
        phantoms.mammogram(np.random.default_rng(3), "normal"),
        tmp_path / "other.dcm",
        patient_id="SOMEONE-ELSE",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240105",
    )
    at = open_page("imaging", patient=str(pid))
    at.selectbox(key="imaging_source").set_value(-1).run()
    at.file_uploader(key="imaging_upload").set_value(
        ("other.dcm", path.read_bytes(), "application/dicom")
    ).run()
    assert not at.exception
    assert "This file may belong to another patient" in texts(at.error)
    assert "patient id" in texts(at.error) and "It is not shown or read" in texts(at.error)
    assert not viewers(at)  # not shown, not read
    with store.open_store(env["db"], read_only=True) as con:
        before = con.execute(
            "SELECT count(*) FROM audit_event WHERE action = 'upload_identity_override'"
        ).fetchone()[0]
    label = "I have checked: this image belongs to the open patient"  # one file: "this image"
    [box] = [c for c in at.checkbox if c.label == label]
    box.check().run()
    assert not at.exception
    assert viewers(at)  # shown on confirmation
    with store.open_store(env["db"], read_only=True) as con:
        rows = con.execute(
            "SELECT subject, details FROM audit_event WHERE action = 'upload_identity_override'"
        ).fetchall()
    assert len(rows) == before + 1
    assert rows[-1][0] == str(pid) and "patient id" in rows[-1][1]
    assert "SOMEONE-ELSE" not in rows[-1][1]  # field names, never the identifiers
    # the open patient's own file needs no confirmation
    own = write_phantom_dicom(
        phantoms.mammogram(np.random.default_rng(4), "normal"),
        tmp_path / "own.dcm",
        patient_id=_mrn(env["db"], pid),
        patient_name="",  # the writer's default "Demo^Patient" is not this patient's name
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240105",
    )
    at = open_page("imaging", patient=str(pid))
    at.selectbox(key="imaging_source").set_value(-1).run()
    at.file_uploader(key="imaging_upload").set_value(
        ("own.dcm", own.read_bytes(), "application/dicom")
    ).run()
    assert not at.exception and "another patient" not in texts(at.error)
    assert viewers(at)
