"""The Imaging page through AppTest: a demo mammogram and a brain slice with the AI read, bad files, no model,
and what the in-browser viewer is sent (its rendering is tested in Chromium: tests/e2e/test_viewer_browser.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from analytics import store
from analytics.imaging.ingest import ingest_files
from models.inference.registry import load_model
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from sample_data.demo_imaging import write_demo_images
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def imaging_db(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the demo store with demo mammograms, one ingested brain slice, one CT and one broken file."""
    return build_imaging_db(demo_db, tmp_path_factory.mktemp("imaging_app"))


def build_imaging_db(demo_db: Path, folder: Path) -> dict:
    """The ``imaging_db`` fixture's store in ``folder`` (other page tests build their own copy)."""
    db = Path(shutil.copy(demo_db, folder / "clinic.duckdb"))
    summary = write_demo_images(db, folder / "dicom", patients=3)
    with store.open_store(db, read_only=True) as con:
        brain_pid, brain_mrn = con.execute(
            "SELECT person_id, mrn FROM person ORDER BY person_id DESC LIMIT 1"
        ).fetchone()
    extra = folder / "extra"
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(5), True, lesion_diameter_mm=26.0),
        extra / "brain.dcm",
        patient_id=brain_mrn,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240105",
    )
    cache = {}
    report = ingest_files(
        db, [extra / "brain.dcm"], lambda n: cache.setdefault(n, load_model(n, device="cpu"))
    )
    assert len(report.stored) == 1
    return {
        "db": db,
        "mammo_pid": int(summary.person_ids[0]),
        "brain_pid": int(brain_pid),
        "folder": folder,
    }


def viewers(at) -> list[dict]:
    """The spec of every viewer on the page (AppTest sees the component's arguments, not its drawing)."""
    found = []
    for el in at.get("component_instance"):
        if el.proto.component_name.endswith("oncolens_viewer"):
            spec = json.loads(el.proto.json_args)["spec"]
            spec["bytes"] = {a.key: len(a.bytes) for a in el.proto.special_args}
            found.append(spec)
    return found


def overlay_names(spec: dict) -> dict[str, bool]:
    return {o["name"]: o["visible"] for o in spec["overlays"]}


@pytest.fixture
def env(imaging_db, monkeypatch):
    monkeypatch.setenv("ONCOLENS_DB", str(imaging_db["db"]))
    return imaging_db


def test_demo_mammogram_gets_the_ai_read_and_measurements(env):
    at = open_page("imaging", patient=str(env["mammo_pid"]))
    assert not at.exception and not at.error, texts(at.error)
    assert "not a medical device" in texts(at.caption)
    box = at.selectbox(key="imaging_source")
    mammograms = [
        k - 1 for k, label in enumerate(box.options) if " · MG · " in label
    ]  # values: -1 = upload
    assert mammograms, box.options
    box.set_value(mammograms[0]).run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Most likely"] in ("Normal", "Benign", "Malignant", "Uncertain")
    # temperature scaling made held-out calibration worse for this model: never called calibrated
    shown = texts(at.success) + texts(at.warning)
    assert "Probability" in shown or "Uncertain between" in shown
    assert "Calibrated probability" not in shown
    assert any("Mammography mass classifier v" in c.value for c in at.caption)
    assert "held-out AUC" in texts(at.caption) and "not calibrated" in texts(at.caption)
    assert "radiologist should confirm" in texts(at.info) and "calibrated)" not in texts(at.info)
    assert len(at.get("plotly_chart")) == 1  # the saliency map; the image is in the viewer
    (spec,) = viewers(at)
    assert not spec["is_volume"] and spec["shape_zyx"][0] == 1  # a 2D image: a one-slice volume
    assert spec["bytes"]["image"] > 1000
    layers = overlay_names(spec)
    assert layers.get("Saliency") is False  # offered, off until asked for
    assert not spec["orientation_known"]  # a mammogram has no patient orientation: no L/R labels
    if metrics["Most likely"] != "Normal":
        assert metrics["Longest diameter (RECIST 1.1)"].endswith(" mm")
        assert layers.get("AI outline") is True


def test_brain_slice_gets_the_tumour_read_with_its_outline(env):
    at = open_page("imaging", patient=str(env["brain_pid"]))
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Most likely"] == "Tumour"
    diameter = float(metrics["Longest diameter (RECIST 1.1)"].split()[0])
    assert diameter == pytest.approx(26.0, abs=6)
    table = at.dataframe[-1].value
    assert {"Longest diameter (RECIST 1.1)", "GLCM contrast"} <= set(table["feature"])


def test_the_viewer_gets_mr_presets_the_outline_and_the_truth_and_no_window_sliders(env):
    at = open_page("imaging", patient=str(env["brain_pid"]))
    assert not at.exception
    (spec,) = viewers(at)
    names = [p["name"] for p in spec["presets"]]
    assert names[0].startswith("Auto") and "File window" in names  # MR: no fixed scale
    assert all(p["width"] > 0 for p in spec["presets"])
    layers = overlay_names(spec)
    assert layers["AI outline"] is True and layers["Saliency"] is False
    # no slider round trip for window/level any more: it happens in the browser
    assert not [s for s in at.slider if "Level" in (s.label or "") or "Width" in (s.label or "")]
    assert "mm/px" in texts(at.caption)


def test_the_demo_volume_is_offered_and_shown_without_an_ai_read(env):
    at = open_page("imaging", patient=str(env["brain_pid"]))
    box = at.selectbox(key="imaging_source")
    assert box.options[-1].startswith("Demo volume")
    box.set_value(-2).run()
    assert not at.exception and not at.error
    (spec,) = viewers(at)
    assert spec["is_volume"] and spec["shape_zyx"] == [64, 128, 128]
    assert spec["orientation_known"] and 0 < spec["start_slice"] < 64
    assert overlay_names(spec) == {"True outline (phantom)": True}
    assert "Most likely" not in {m.label for m in at.metric}  # no AI read of a phantom volume
    assert "not a patient" in texts(at.info)


def test_without_the_built_viewer_the_page_says_so_and_shows_a_static_picture(
    env, monkeypatch, tmp_path
):
    from dashboard.components.viewer import component

    monkeypatch.setattr(component, "BUILD_DIR", tmp_path / "no-build")
    at = open_page("imaging", patient=str(env["brain_pid"]))
    assert not at.exception
    assert "make viewer" in texts(at.error)
    assert not viewers(at) and len(at.get("plotly_chart")) == 2  # the static image + saliency
    assert "Most likely" in {m.label for m in at.metric}  # the read is still given


def test_clinic_view_lists_images_and_defaults_to_the_newest(env):
    at = open_page("imaging")
    assert not at.exception
    options = at.selectbox(key="imaging_source").options
    assert options[0] == "Upload DICOM files (an image, a series or a zip)" and len(options) > 3
    assert at.selectbox(key="imaging_source").value == 0  # the newest image, not the upload
    assert "Most recent images in the clinic" in texts(at.subheader)


def test_a_ct_is_shown_without_an_ai_read_and_a_broken_file_gets_a_message(env, tmp_path):
    db = env["db"]
    ct = Path(shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"DICM" * 10)
    with store.open_store(db) as con:
        sid = con.execute(
            "SELECT study_uid FROM imaging_study WHERE person_id = 5 LIMIT 1"
        ).fetchone()[0]
        con.execute("INSERT INTO imaging_series VALUES ('9.9.1', ?, 'CT', 'CHEST', 'test')", [sid])
        con.execute(
            "INSERT INTO imaging_instance VALUES ('9.9.1.1', '9.9.1', ?, 128, 128, 0.66)", [str(ct)]
        )
        con.execute(
            "INSERT INTO imaging_instance VALUES ('9.9.1.2', '9.9.1', ?, 128, 128, 0.66)",
            [str(broken)],
        )
    try:
        at = open_page("imaging", patient="5")
        box = at.selectbox(key="imaging_source")
        seen = {"ai": False, "ct": False, "broken": False}
        for index in range(len(box.options) - 2):  # the images (not the upload, not the demo)
            at.selectbox(key="imaging_source").set_value(index).run()
            assert not at.exception
            if "cannot be shown" in texts(at.error):
                seen["broken"] = True
                assert not viewers(at)
            elif "no model for this image" in texts(at.warning).lower():
                seen["ct"] = True
                (spec,) = viewers(at)  # shown, not read
                assert not spec["overlays"] and spec["units"] == "HU"
                names = [p["name"] for p in spec["presets"]]
                assert names[0] == "File window"
                assert {"Soft tissue (40/400)", "Lung (-600/1500)", "Bone (400/1800)"} <= set(names)
                assert spec["orientation_known"]  # CT_small has orientation and position
        assert seen["ct"] and seen["broken"]
    finally:
        with store.open_store(db) as con:
            con.execute("DELETE FROM imaging_instance WHERE series_uid = '9.9.1'")
            con.execute("DELETE FROM imaging_series WHERE series_uid = '9.9.1'")


def test_a_missing_model_is_a_message_not_a_crash(env, monkeypatch, tmp_path):
    from models.inference import registry

    monkeypatch.setattr(registry, "BUNDLED_WEIGHTS", tmp_path)
    at = open_page("imaging", patient=str(env["brain_pid"]))
    assert not at.exception
    assert "cannot run" in texts(at.error) and "models.training.train" in texts(at.error)


def test_a_study_link_opens_that_study(env):
    with store.open_store(env["db"], read_only=True) as con:
        images = resources_images(con, int(env["mammo_pid"]))
    assert len(images) >= 2, "the fixture patient needs two images"
    last = images.iloc[-1]
    at = open_page("imaging", patient=str(env["mammo_pid"]), study=str(last["study_uid"]))
    assert not at.exception
    assert at.selectbox(key="imaging_source").value == len(images) - 1
    at = open_page("imaging", patient=str(env["mammo_pid"]), study="1.2.3.not.here")
    assert (
        not at.exception and at.selectbox(key="imaging_source").value == -1
    )  # says so, shows none
    assert "has no image files on record" in texts(at.warning)


def resources_images(con, person_id: int):
    from analytics.imaging.queries import patient_images

    return patient_images(con, person_id)


def test_imaging_page_defines_its_terms_in_tooltips(env):
    from tests.dashboard.app_pages.test_experience import defines

    at = open_page("imaging", patient=str(env["mammo_pid"]))
    box = at.selectbox(key="imaging_source")
    box.set_value(next(k - 1 for k, label in enumerate(box.options) if " · MG · " in label)).run()
    assert not at.exception
    wanted = {
        "calibrated probability",
        "AUC",
        "calibration",
        "saliency",
        "sanity check",
        "pointing game",
    }
    assert defines(at, *wanted) == wanted
    most_likely = next(m for m in at.metric if m.label == "Most likely")
    assert "**calibrated probability**" in most_likely.help
