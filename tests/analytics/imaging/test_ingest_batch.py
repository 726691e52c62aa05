"""analytics.imaging.ingest.prepare_files: files read and AI-read in worker processes give what
reading them here gives, with the single read's results and the same failures; a folder ingest
with worker processes stores the same findings."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from analytics import store
from analytics.imaging.ingest import ingest_files, prepare_files
from models.inference.batch import map_files
from models.inference.loader import ModelLoader
from models.inference.read import iter_dicom_paths, predict_file
from sample_data.demo_imaging import write_demo_images

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def clinic(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ingest_batch")
    db = Path(shutil.copy(demo_db, root / "clinic.duckdb"))
    write_demo_images(db, root / "images", patients=3, seed=6)
    good = next(iter_dicom_paths([root / "images"]))
    ds = pydicom.dcmread(good)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), dtype=np.uint16).tobytes()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(root / "images" / "blank.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "images" / "ct.dcm")
    (root / "images" / "random.dcm").write_bytes(np.random.default_rng(2).bytes(4000))
    return db, root / "images"


def _summary(entry) -> dict:
    if isinstance(entry, dict):
        return entry
    ai = entry.ai
    return {
        "file": str(entry.file),
        "sop": entry.sop_uid,
        "note": entry.ai_note,
        "label": None if ai is None else ai.label,
        "probabilities": None if ai is None else ai.probabilities,
        "lesion": None if ai is None else ai.lesion_summary(),
        "refused": None if ai is None else ai.refused,
    }


def test_prepared_in_workers_equals_prepared_here_and_the_single_read(clinic) -> None:
    _, folder = clinic
    files = list(iter_dicom_paths([folder]))
    here = [_summary(e) for e in prepare_files(files, ModelLoader())]
    in_workers = [_summary(e) for e in map_files(prepare_files, files, workers=2, chunk=3)]
    assert in_workers == here
    by_name = {Path(e["file"]).name: e for e in here}
    assert "same value" in by_name["blank.dcm"]["error"]  # the sanity gate: not filed
    assert "no model" in by_name["ct.dcm"]["note"]  # filed without an AI read, as before
    assert by_name["random.dcm"]["error"]
    load = ModelLoader()
    for path in files:
        single = predict_file(path, load)
        entry = by_name[path.name]
        if "label" in single and single.get("label") is not None:
            assert entry["label"] == single["label"]
            assert entry["probabilities"] == single["probabilities"]
            assert entry["lesion"] == single["lesion"]


def test_folder_ingest_with_workers_stores_the_same_findings(clinic, tmp_path: Path) -> None:
    db, folder = clinic
    files = list(iter_dicom_paths([folder]))
    findings = []
    for workers in (1, 2):
        copy = Path(shutil.copy(db, tmp_path / f"w{workers}.duckdb"))
        report = ingest_files(copy, files, ModelLoader(), workers=workers)
        failed = {Path(f["file"]).name: f["error"] for f in report.failed}
        assert set(failed) == {"blank.dcm", "random.dcm", "ct.dcm"}
        assert "not in the store" in failed["ct.dcm"]  # pydicom's CT is nobody in this clinic
        with store.open_store(copy, read_only=True) as con:
            findings.append(
                con.execute(
                    "SELECT person_id, model_name, predicted_class, probability, longest_diameter_mm "
                    "FROM ai_finding ORDER BY person_id, probability"
                ).fetchall()
            )
    assert findings[0] == findings[1] and findings[0]
