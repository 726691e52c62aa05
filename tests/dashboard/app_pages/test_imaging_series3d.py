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
from tests.dashboard.app_pages.test_pages import open_page, shown

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
    # a CT series (no 3D model reads CT) and an MR series whose files go missing after filing,
    # each in a study of its own
    extra = {}
    for name, modality in (("ct chest", "CT"), ("files gone", "MR")):
        extra[name] = SeriesHeader(
            modality=modality,
            patient_id=mr.patient_id,
            patient_name="Extra^Series",
            study_uid=str(generate_uid()),
            series_uid=str(generate_uid()),
            frame_of_reference_uid=str(generate_uid()),
            study_date=mr.study_date - dt.timedelta(days=400),
            body_part="CHEST" if modality == "CT" else "BRAIN",
            study_description=name,
            series_description=name,
        )
        values = np.random.default_rng(7).uniform(0, 900, (8, 64, 64)).astype(np.int16)
        files += write_series(
            values, folder / name, extra[name], origin_lps=(0.0, 0.0, 0.0),
            pixel_spacing=(2.0, 2.0), slice_spacing=3.0,
        )  # fmt: skip
    report = ingest_files(db, files, ModelLoader(), now=NOW, workers=1)
    assert not report.failed
    with store.open_store(db, read_only=True) as con:
        reads = con.execute(
            "SELECT series_uid, refused IS NOT NULL FROM ai_volume_read WHERE person_id = ?",
            [mr.person_id],
        ).fetchall()
        gone = con.execute(
            "SELECT i.file_path FROM imaging_instance i WHERE i.series_uid = (SELECT series_uid "
            "FROM imaging_instance JOIN imaging_series USING (series_uid) WHERE modality = 'MR' "
            "GROUP BY series_uid HAVING count(*) = 8) ORDER BY i.file_path LIMIT 2"
        ).fetchall()
    assert sorted(r[1] for r in reads) == [False, True, True], "noise is refused (two series)"
    assert len(gone) == 2
    for (path,) in gone:  # two files of the filed series disappear from the image folder
        Path(path).unlink()
    # the stored UIDs are the de-identified copies' (ingest replaces them)
    read = next(uid for uid, refused in reads if not refused)
    return {"db": db, "pid": mr.person_id, "series": read}


def _series_page(env: dict, monkeypatch, which: str):
    monkeypatch.setenv("ONCOLENS_DB", str(env["db"]))
    at = open_page("imaging", patient=str(env["pid"]))
    assert not at.exception, at.exception
    box = at.selectbox(key="imaging_source")
    # each series is offered once, for its 3D read: the noise series has 48 images
    series = [label for label in box.options if "series of" in label]
    assert len(series) == 4 and not [label for label in box.options if "· image " in label]
    wanted = [
        k
        for k, label in zip(range(-1, len(box.options) - 1), box.options, strict=True)
        if "series of" in label and _matches(label, which)
    ]
    assert len(wanted) == 1, box.options
    box.set_value(wanted[0]).run()
    assert not at.exception, at.exception
    return at


def _matches(label: str, which: str) -> bool:
    """The picker's entry of one series (ingest keeps no description of the extra studies)."""
    if which == "ct chest":
        return " · CT · " in label
    if which == "files gone":
        return " · MR · " in label and "of 8 images" in label
    return " · MR brain" in label and ("of 48 images" in label) == (which == "noise")


def _series_viewer(at) -> dict:
    found = [s for s in viewers(at) if s["is_volume"]]
    assert len(found) == 1, [s["shape_zyx"] for s in viewers(at)]
    return found[0]


def test_a_series_read_in_3d_shows_its_outline_then_its_map_on_request(series_db, monkeypatch):
    at = _series_page(series_db, monkeypatch, "brain")
    spec = _series_viewer(at)
    assert spec["orientation_known"] and spec["shape_zyx"][0] > 3
    assert "not a medical device" in shown(at.caption)
    label = {m.label: m.value for m in at.metric}["3D read"]
    assert label in ("Lesion", "No lesion")
    layers = overlay_names(spec)
    assert "Saliency (Grad-CAM 3D)" not in layers  # computed only when asked
    if label == "Lesion":
        assert layers["AI outline"] is True
    assert "Grad-CAM 3D verdict" in shown(at.success) + shown(at.warning)
    assert "What it means" in shown(at.success) + shown(at.warning)
    at.button(key="imaging_series_saliency").click().run()
    assert not at.exception, at.exception
    spec = _series_viewer(at)
    heat = [o for o in spec["overlays"] if o["name"] == "Saliency (Grad-CAM 3D)"]
    assert heat and heat[0]["visible"] and 0 < heat[0]["opacity"] < 1
    assert "Map peak" in shown(at.caption)
    assert "100 %" not in shown(at.caption)  # never certainty
    # asked once: kept for this series and weights, the button gone
    assert not [b for b in at.button if b.key == "imaging_series_saliency"]
    at.run()
    assert "Saliency (Grad-CAM 3D)" in overlay_names(_series_viewer(at))


def test_a_refused_series_shows_the_reason_and_no_overlay(series_db, monkeypatch):
    at = _series_page(series_db, monkeypatch, "noise")
    spec = _series_viewer(at)
    assert spec["overlays"] == []
    assert "Refused by the input check" in shown(at.warning)
    assert not [b for b in at.button if b.key == "imaging_series_saliency"]


def test_the_files_of_a_series_are_given_for_its_own_patient_only(series_db):
    with store.open_store(series_db["db"], read_only=True) as con:
        mine = series_files(con, series_db["pid"], series_db["series"])
        other = series_files(con, series_db["pid"] + 1, series_db["series"])
    assert len(mine) > 3 and all(Path(f).is_file() for f in mine)
    assert other == []


def test_a_ct_volume_no_3d_model_reads_is_offered_once_and_shown_without_a_read(
    series_db, monkeypatch
):
    """Found a volume by its headers (no 3D read on record): one entry, the volume in the viewer,
    and why there is no AI read; never its slices as 2D images."""
    at = _series_page(series_db, monkeypatch, "ct chest")
    spec = _series_viewer(at)
    assert spec["shape_zyx"] == [8, 64, 64] and spec["overlays"] == []
    assert "No 3D AI read of this series" in shown(at.info)
    assert "no 3D model reads CT volumes" in shown(at.info)
    assert not [m for m in at.metric if m.label == "3D read"]


def test_a_series_whose_files_are_gone_says_so_and_shows_no_volume(series_db, monkeypatch):
    """Issue 21 leftovers, item 5: two of its eight files were removed after filing; a volume
    rebuilt from the rest would not be the series that was read, so none is shown."""
    at = _series_page(series_db, monkeypatch, "files gone")
    assert not [s for s in viewers(at) if s["is_volume"]]
    warning = shown(at.warning)
    assert "This series cannot be shown in 3D" in warning
    assert "2 of the series' 8 files are missing from the image folder" in warning
    assert not [m for m in at.metric if m.label == "3D read"]


def test_the_patient_page_shows_a_3d_card_only_beside_reads_of_its_own_version(
    series_db, monkeypatch, tmp_path
):
    """After a model upgrade her earlier reads keep their version: the installed card's figures
    (another version's weights) are not put beside them."""
    from tests.dashboard.app_pages.test_pages import shown

    def caption(db: Path) -> str:
        monkeypatch.setenv("ONCOLENS_DB", str(db))
        at = open_page("patient", patient=str(series_db["pid"]))
        assert not at.exception, at.exception
        return next(c for c in shown(at.caption).split("\n") if "3D reads (AI" in c)

    now = caption(series_db["db"])
    assert "Card: Dice" in now and "not the installed version" not in now
    old = Path(shutil.copy(series_db["db"], tmp_path / "older_reads.duckdb"))
    with store.open_store(old) as con:
        con.execute("UPDATE ai_volume_read SET model_version = '0.9.0'")
    before = caption(old)
    assert "brain_mets_3d 0.9.0 is not the installed version" in before
    assert "Card: Dice" not in before
