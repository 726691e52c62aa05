"""Ingest keeps what each AI read saw (guard score, the ten image statistics) for drift monitoring,
for accepted and refused reads alike, with the study date as the drift window (issue 22 item 5)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from analytics import store
from analytics.governance.lifecycle.tables import STAT_COLUMNS
from analytics.imaging.ingest import ingest_files
from models.dicom.reader import read_dicom
from models.inference.guard import image_statistics
from models.inference.loader import ModelLoader
from models.inference.preprocess import to_tensor
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom


@pytest.fixture
def clinic(demo_db, tmp_path) -> tuple[Path, str]:
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db, read_only=True) as con:
        mrn = con.execute("SELECT mrn FROM person ORDER BY person_id LIMIT 1").fetchall()[0][0]
    return db, mrn


def test_accepted_and_refused_reads_keep_their_inputs(clinic, tmp_path) -> None:
    db, mrn = clinic
    files = []
    normal = phantoms.brain_mri(np.random.default_rng(10), True, lesion_diameter_mm=25.0)
    noise = np.random.default_rng(11).integers(0, 4000, normal.pixels.shape).astype(np.uint16)
    # the second image is noise behind a brain MR header: the input guard refuses it
    for i, (phantom, date) in enumerate(
        ((normal, "20250401"), (dataclasses.replace(normal, pixels=noise), "20250502"))
    ):
        path = tmp_path / f"brain{i}.dcm"
        write_phantom_dicom(
            phantom,
            path,
            patient_id=mrn,
            study_uid=generate_uid(),
            series_uid=generate_uid(),
            sop_instance_uid=generate_uid(),
            study_date=date,
        )
        files.append(path)
    report = ingest_files(db, files, ModelLoader())
    assert len(report.stored) == 2, report.failed
    with store.open_store(db, read_only=True) as con:
        rows = con.execute(
            "SELECT study_date, refused, score, model_name, "
            + ", ".join(STAT_COLUMNS)
            + " FROM ai_read_input ORDER BY study_date"
        ).fetchall()
    assert [str(r[0]) for r in rows] == ["2025-04-01", "2025-05-02"]
    assert all(r[3] == "brain_mri" and r[2] > 0 for r in rows)
    assert [r[1] for r in rows] == [False, True]  # the noise was refused, and still recorded
    # the stored statistics are those of the network input the guard measured
    expected = image_statistics(to_tensor(read_dicom(files[0]).pixels))[0]
    assert np.allclose(rows[0][4:], expected, rtol=1e-6)
    # the read that was given records the weights that made it (a sign-off binds to them)
    with store.open_store(db, read_only=True) as con:
        shas = con.execute("SELECT weights_sha256 FROM ai_finding").fetchall()
    card_sha = ModelLoader()("brain_mri").weights_sha256
    assert card_sha and shas == [(card_sha,)]
    # re-ingesting the same file replaces its row, never duplicates it
    ingest_files(db, files[:1], ModelLoader())
    with store.open_store(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ai_read_input").fetchall()[0][0] == 2
