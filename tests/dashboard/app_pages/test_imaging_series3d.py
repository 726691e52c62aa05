"""The Imaging page's 3D read in the viewer (issue 21 items 5 and 6): a demo brain MR series read
in 3D is shown on its volume with the AI outline, the Grad-CAM map on request (the code of
``oncolens explain SERIES_DIR``) and the map's verdict; a refused series shows why, without overlays."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from analytics import store
from analytics.imaging.ingest import ingest_files
from analytics.imaging.queries import series_files
from models.inference.loader import ModelLoader
from models.volumes.write import SeriesHeader, write_series
from sample_data.demo_volumes import write_demo_volumes
from tests.dashboard.app_pages.test_imaging_page import overlay_names, viewers
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")
NOW = dt.datetime(2026, 1, 5, 9, 0)


@pytest.fixture(scope="module")
def series_db(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A demo store with one brain MR patient's series ingested (read in 3D), plus a series of
    noise for the same patient that the 3D model's input check refuses."""
    folder = tmp_path_factory.mktemp("series3d")
    db = Path(shutil.copy(demo_db, folder / "clinic.duckdb"))
    written = write_demo_volumes(db, folder / "volumes", patients=1)
    mr = [s for s in written.studies if s.modality == "MR"][0]
    files = sorted(mr.folder.glob("*.dcm"))
    noise = np.random.default_rng(3).uniform(0, 1200, (48, 96, 96)).astype(np.float32)
    header = SeriesHeader(
        modality="MR",
        patient_id=mr.patient_id,
        patient_name="Noise^Series",
        study_uid=mr.study_uid,
        series_uid=str(generate_uid()),
        frame_of_reference_uid=str(generate_uid()),
        study_date=mr.study_date,
        body_part="BRAIN",
        study_description="noise",
        series_description="noise (refused)",
        series_number=999,
        window=(600.0, 1200.0),
    )
    files += write_series(
        noise, folder / "noise", header, origin_lps=(0.0, 0.0, 0.0),
        pixel_spacing=(2.0, 2.0), slice_spacing=3.0,
    )  # fmt: skip
    report = ingest_files(db, files, ModelLoader(), now=NOW, workers=1)
    assert not report.failed
    with store.open_store(db, read_only=True) as con:
        reads = con.execute(
            "SELECT series_uid, refused IS NOT NULL FROM ai_volume_read WHERE person_id = ?",
            [mr.person_id],
        ).fetchall()
    assert sorted(r[1] for r in reads) == [False, True], "the noise series should be refused"
    # the stored UIDs are the de-identified copies' (ingest replaces them)
    read = next(uid for uid, refused in reads if not refused)
    return {"db": db, "pid": mr.person_id, "series": read}


def _series_page(env: dict, monkeypatch, which: str):
    monkeypatch.setenv("ONCOLENS_DB", str(env["db"]))
    at = open_page("imaging", patient=str(env["pid"]))
    # (the 2D read of a slice above may be refused: that is the 2D model's input check, not ours)
    assert not at.exception, at.exception
    box = at.selectbox(key="imaging_series_pick")
    wanted = [
        k for k, label in enumerate(box.options) if ("refused" in label) == (which == "noise")
    ]
    assert wanted, box.options
    box.set_value(wanted[0]).run()
    at.toggle(key="imaging_series_show").set_value(True).run()
    assert not at.exception, at.exception
    return at


def _series_viewer(at) -> dict:
    found = [s for s in viewers(at) if s["is_volume"]]
    assert len(found) == 1, [s["shape_zyx"] for s in viewers(at)]
    return found[0]


def test_a_series_read_in_3d_shows_its_outline_then_its_map_on_request(series_db, monkeypatch):
    at = _series_page(series_db, monkeypatch, "brain")
    spec = _series_viewer(at)
    assert spec["orientation_known"] and spec["shape_zyx"][0] > 3
    assert "not a medical device" in texts(at.caption)
    label = {m.label: m.value for m in at.metric}["3D read"]
    assert label in ("Lesion", "No lesion")
    layers = overlay_names(spec)
    assert "Saliency (Grad-CAM 3D)" not in layers  # computed only when asked
    if label == "Lesion":
        assert layers["AI outline"] is True
    assert "Grad-CAM 3D verdict" in texts(at.success) + texts(at.warning)
    assert "What it means" in texts(at.success) + texts(at.warning)
    at.button(key="imaging_series_saliency").click().run()
    assert not at.exception, at.exception
    spec = _series_viewer(at)
    heat = [o for o in spec["overlays"] if o["name"] == "Saliency (Grad-CAM 3D)"]
    assert heat and heat[0]["visible"] and 0 < heat[0]["opacity"] < 1
    assert "Map peak" in texts(at.caption)
    assert "100 %" not in texts(at.caption)  # never certainty
    # asked once: kept for this series and weights, the button gone
    assert not [b for b in at.button if b.key == "imaging_series_saliency"]
    at.run()
    assert "Saliency (Grad-CAM 3D)" in overlay_names(_series_viewer(at))


def test_a_refused_series_shows_the_reason_and_no_overlay(series_db, monkeypatch):
    at = _series_page(series_db, monkeypatch, "noise")
    spec = _series_viewer(at)
    assert spec["overlays"] == []
    assert "Refused by the input check" in texts(at.warning)
    assert not [b for b in at.button if b.key == "imaging_series_saliency"]


def test_the_files_of_a_series_are_given_for_its_own_patient_only(series_db):
    with store.open_store(series_db["db"], read_only=True) as con:
        mine = series_files(con, series_db["pid"], series_db["series"])
        other = series_files(con, series_db["pid"] + 1, series_db["series"])
    assert len(mine) > 3 and all(Path(f).is_file() for f in mine)
    assert other == []
