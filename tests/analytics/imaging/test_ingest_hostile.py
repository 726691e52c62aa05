"""Crafted files against the ingest (issue 24): no path from file content, no patient's rows
touched by another patient's file, no original identifying text in the store, every run audited.

Real parts throughout: the demo store, the real models, pydicom files written by the phantom
writer and then altered the way an attacker would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.uid import generate_uid

from analytics import store
from analytics.governance import audit
from analytics.imaging.ingest import images_dir_for, ingest_files
from models.inference.loader import ModelLoader
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom

MARKERS = ("MRKACCESSION77", "MRKSTUDYDESC Jane Doe", "MRKSERIESDESC Jane Doe")


@pytest.fixture(scope="module")
def loader() -> ModelLoader:
    return ModelLoader()


@pytest.fixture
def clinic(demo_db, tmp_path) -> tuple[Path, list[tuple[int, str]]]:
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db, read_only=True) as con:
        people = con.execute(
            "SELECT person_id, mrn FROM person ORDER BY person_id LIMIT 2"
        ).fetchall()
    return db, people


def _brain(
    path: Path, mrn: str, *, sop: str | None = None, series: str | None = None, **edit
) -> Path:
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(3), True, lesion_diameter_mm=30.0),
        path,
        patient_id=mrn,
        study_uid=generate_uid(),
        series_uid=series or generate_uid(),
        sop_instance_uid=sop or generate_uid(),
        study_date="20250401",
    )
    if edit:
        ds = pydicom.dcmread(path)
        for keyword, (vr, value) in edit.items():
            tag = pydicom.datadict.tag_for_keyword(keyword)
            ds.add(DataElement(tag, vr, value))
        ds.save_as(path, enforce_file_format=False)
    return path


def _rows(db: Path, person_id: int) -> tuple[int, int, int]:
    with store.open_store(db, read_only=True) as con:
        return store.one_row(
            con.execute(
                "SELECT (SELECT count(*) FROM imaging_instance i JOIN imaging_series se USING (series_uid) "
                "JOIN imaging_study st USING (study_uid) WHERE st.person_id = ?), "
                "(SELECT count(*) FROM ai_finding WHERE person_id = ?), "
                "(SELECT count(*) FROM audit_event WHERE action = 'ingest')",
                [person_id, person_id],
            )
        )


def test_a_uid_holding_a_path_is_remapped_and_stays_in_the_image_folder(
    clinic, tmp_path, loader
) -> None:
    db, [(pid, mrn), _] = clinic
    f = _brain(
        tmp_path / "in" / "evil.dcm",
        mrn,
        SOPInstanceUID=("LO", "../../../../escaped"),
        StudyInstanceUID=("LO", "../../escaped_study"),
    )
    report = ingest_files(db, [f], loader)
    assert len(report.stored) == 1, report.failed
    images = images_dir_for(db).resolve()
    made = [p for p in tmp_path.rglob("*") if p.is_file() and "escaped" in p.name]
    assert made == []
    assert Path(report.stored[0]["stored_file"]).resolve().is_relative_to(images)
    assert not list(images.rglob("*.pending"))


def test_another_patients_instance_uid_is_refused_and_nothing_is_deleted(
    clinic, tmp_path, loader
) -> None:
    db, [(a, mrn_a), (b, mrn_b)] = clinic
    sop = generate_uid()
    first = ingest_files(db, [_brain(tmp_path / "a.dcm", mrn_a, sop=sop)], loader)
    assert len(first.stored) == 1
    stored_a = Path(first.stored[0]["stored_file"])
    bytes_a = stored_a.read_bytes()
    before = _rows(db, a)
    crafted = ingest_files(db, [_brain(tmp_path / "b.dcm", mrn_b, sop=sop)], loader)
    assert crafted.stored == []
    assert "SOP Instance UID is already stored for another patient" in crafted.failed[0]["error"]
    assert _rows(db, a)[:2] == before[:2] and stored_a.read_bytes() == bytes_a
    assert _rows(db, b)[:2] == (0, 0)


def test_two_patients_sharing_an_instance_uid_in_one_run_the_second_is_refused(
    clinic, tmp_path, loader
) -> None:
    db, [(a, mrn_a), (b, mrn_b)] = clinic
    sop = generate_uid()
    files = [_brain(tmp_path / "a.dcm", mrn_a, sop=sop), _brain(tmp_path / "b.dcm", mrn_b, sop=sop)]
    report = ingest_files(db, files, loader)
    assert [e["person_id"] for e in report.stored] == [a]
    assert len(report.failed) == 1 and "another patient" in report.failed[0]["error"]
    assert _rows(db, a)[0] == 1 and _rows(db, b)[0] == 0


def test_another_patients_series_is_refused(clinic, tmp_path, loader) -> None:
    db, [(a, mrn_a), (b, mrn_b)] = clinic
    series = generate_uid()
    assert ingest_files(db, [_brain(tmp_path / "a.dcm", mrn_a, series=series)], loader).stored
    report = ingest_files(db, [_brain(tmp_path / "b.dcm", mrn_b, series=series)], loader)
    assert (
        report.stored == []
        and "series is already stored for another patient" in report.failed[0]["error"]
    )


def test_no_original_identifying_text_reaches_the_store_and_the_run_is_audited(
    clinic, tmp_path, loader
) -> None:
    db, [(pid, mrn), _] = clinic
    f = _brain(
        tmp_path / "desc.dcm",
        mrn,
        AccessionNumber=("SH", MARKERS[0][:16]),
        StudyDescription=("LO", "BRAIN " + MARKERS[1]),
        SeriesDescription=("LO", MARKERS[2]),
    )
    events_before = _rows(db, pid)[2]
    report = ingest_files(db, [f], loader, actor="cli:tester")
    assert len(report.stored) == 1
    with store.open_store(db, read_only=True) as con:
        text_columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR'"
        ).fetchall()
        found = []
        for (
            schema,
            table,
            column,
        ) in text_columns:  # identifiers from the catalogue, values as parameters
            hits = con.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}" LIKE ?', ["%MRK%"]
            ).fetchone()[0]
            if hits:
                found.append(f"{table}.{column}")
        study = con.execute(
            "SELECT description, accession_number FROM imaging_study WHERE study_uid = ?",
            [report.stored[0]["study_uid"]],
        ).fetchone()
        event = con.execute(
            "SELECT actor, details FROM audit_event WHERE action = 'ingest' ORDER BY event_id DESC LIMIT 1"
        ).fetchone()
    assert found == []
    assert study == ("BRAIN", None)  # the coded term the model choice needs, no free text
    assert b"MRK" not in Path(report.stored[0]["stored_file"]).read_bytes()
    assert _rows(db, pid)[2] == events_before + 1
    assert event[0] == "cli:tester" and report.stored[0]["sha256"] in event[1]
    assert audit.verify_store(db).ok
