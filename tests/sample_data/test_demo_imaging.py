"""Demo DICOM studies: files linked to store patients and studies, lesion sizes matching, idempotent re-runs.

Mammograms of existing MG studies, and brain MR studies the writer adds for patients with distant disease.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from analytics import store
from models.training.synthetic import max_feret_diameter_mm
from models.training.synthetic_dicom import mask_path_for
from sample_data import demo_imaging
from sample_data.demo_imaging import (
    BRAIN_CONCEPT,
    BRAIN_STUDIES_KEY,
    DEFAULT_BRAIN_PATIENTS,
    MANIFEST_NAME,
    DemoImagingError,
    series_uid_for,
    sop_uid_for,
    write_demo_images,
)

N_PATIENTS = 8


def _copy_store(demo_db: Path, folder: Path) -> Path:
    """A private copy of the session's demo store (this module writes rows into it).

    The generator's own brain MR studies (patients with brain metastases, issue 17) have no
    images; they are removed here so that every MR study and brain read counted below is this
    writer's.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(shutil.copy(demo_db, folder / "demo.duckdb"))
    with store.open_store(path) as con:
        con.execute("DELETE FROM measurement WHERE concept = ?", [BRAIN_CONCEPT])
        con.execute(
            "DELETE FROM imaging_series WHERE study_uid IN "
            "(SELECT study_uid FROM imaging_study WHERE modality = 'MR')"
        )
        con.execute("DELETE FROM imaging_study WHERE modality = 'MR'")
    return path


def _set_read(con, study_uid: str, mm: float, *, linked: bool = True, shift_days: int = 0) -> None:
    """Give a mammogram a radiology read of ``mm`` (the demo's mammograms after surgery have none)."""
    con.execute(
        "DELETE FROM measurement WHERE study_uid = ? AND concept = 'lesion_longest_diameter' "
        "AND source <> 'ai'",
        [study_uid],
    )
    con.execute(
        "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) SELECT (SELECT max(measurement_id) + 1 FROM measurement), person_id, "
        "study_date + ?::INTEGER, 'lesion_longest_diameter', ?, 'mm', 'radiology', "
        "CASE WHEN ? THEN study_uid END FROM imaging_study WHERE study_uid = ?",
        [shift_days, mm, linked, study_uid],
    )


def _tolerance(mm: float) -> float:
    return max(1.5, 0.10 * mm)


def _spacing(ds) -> tuple[float, float]:
    value = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    return float(value[0]), float(value[1])


def _mask_diameter(dcm: Path, ds) -> float:
    mask = np.asarray(Image.open(mask_path_for(dcm))) > 127
    return max_feret_diameter_mm(mask, _spacing(ds))


def _radiology_mm(con, study_uid: str) -> float:
    """The study's read; a mammogram without one shows the primary at diagnosis, else no lesion."""
    row = con.execute(
        "SELECT value FROM measurement WHERE study_uid = ? AND concept = 'lesion_longest_diameter' "
        "AND source <> 'ai'",
        [study_uid],
    ).fetchone()
    if row is not None:
        return row[0]
    return con.execute(
        "SELECT CASE WHEN s.study_date = c.diagnosis_date THEN c.tumour_size_mm ELSE 0 END "
        "FROM imaging_study s JOIN condition_occurrence c USING (person_id) WHERE s.study_uid = ?",
        [study_uid],
    ).fetchone()[0]


def _files(root: Path, modality: str | None = None) -> list[Path]:
    files = sorted(root.rglob("*.dcm"))
    if modality is None:
        return files
    return [p for p in files if pydicom.dcmread(p, stop_before_pixels=True).Modality == modality]


@pytest.fixture(scope="module")
def written(demo_db, tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_imaging")
    db = _copy_store(demo_db, folder)
    summary = write_demo_images(db, folder / "dicom", patients=N_PATIENTS, seed=5)
    return db, folder / "dicom", summary


def test_files_belong_to_the_store_patients_and_studies(written):
    db, root, summary = written
    files = _files(root)
    assert len(files) == len(summary.images) > N_PATIENTS
    assert summary.patients == N_PATIENTS
    with store.open_store(db, read_only=True) as con:
        for path in files:
            ds = pydicom.dcmread(path)
            person = con.execute(
                "SELECT person_id, strftime(birth_date, '%Y%m%d'), sex FROM person WHERE mrn = ?",
                [ds.PatientID],
            ).fetchone()
            assert person is not None, ds.PatientID
            assert (ds.PatientBirthDate, ds.PatientSex) == (person[1], person[2])
            study = con.execute(
                "SELECT person_id, strftime(study_date, '%Y%m%d'), accession_number, modality, description "
                "FROM imaging_study WHERE study_uid = ?",
                [ds.StudyInstanceUID],
            ).fetchone()
            assert study is not None and study[0] == person[0]
            assert (ds.StudyDate, ds.AccessionNumber, ds.Modality, ds.StudyDescription) == study[1:]
            assert path.relative_to(root).parts[:2] == (ds.PatientID, ds.StudyInstanceUID)
            assert path.name == f"{ds.SOPInstanceUID}.dcm"
            assert ds.Modality in ("MG", "MR")
    assert {im.modality for im in summary.images} == {"MG", "MR"}


def test_mask_diameter_matches_the_measurement_of_that_study(written):
    db, root, _ = written
    spans = []
    with store.open_store(db, read_only=True) as con:
        by_patient: dict[str, list[float]] = {}
        for path in _files(root, "MG"):
            ds = pydicom.dcmread(path)
            mask = Image.open(mask_path_for(path))
            assert mask.size == (ds.Columns, ds.Rows)
            measured = _radiology_mm(con, ds.StudyInstanceUID)
            drawn = _mask_diameter(path, ds)
            assert abs(drawn - measured) <= _tolerance(measured), (path, drawn, measured)
            by_patient.setdefault(ds.PatientID, []).append(measured)
        spans = [max(v) - min(v) for v in by_patient.values()]
    # the check above can tell studies apart: a patient's sizes differ by more than the tolerance
    assert max(spans) > 5.0


def test_baseline_and_latest_studies_are_written(written):
    db, root, summary = written
    with store.open_store(db, read_only=True) as con:
        for person_id in summary.person_ids:
            dates = [
                r[0]
                for r in con.execute(
                    "SELECT strftime(study_date, '%Y%m%d') FROM imaging_study WHERE person_id = ? AND modality = 'MG' "
                    "ORDER BY study_date",
                    [person_id],
                ).fetchall()
            ]
            mrn = con.execute("SELECT mrn FROM person WHERE person_id = ?", [person_id]).fetchone()[
                0
            ]
            got = sorted(
                ds.StudyDate
                for ds in (
                    pydicom.dcmread(p, stop_before_pixels=True) for p in (root / mrn).rglob("*.dcm")
                )
                if ds.Modality == "MG"
            )
            expected = dates if len(dates) <= 4 else [dates[0], *dates[-3:]]
            assert got == expected


def test_instance_rows_point_to_the_written_files(written):
    db, root, summary = written
    with store.open_store(db, read_only=True) as con:
        rows = con.execute(
            "SELECT i.sop_instance_uid, i.series_uid, i.file_path, i.rows, i.columns, i.pixel_spacing_mm, "
            "se.study_uid FROM imaging_instance i JOIN imaging_series se USING (series_uid)"
        ).fetchall()
    assert len(rows) == len(summary.images)
    for sop, series, file_path, n_rows, n_cols, spacing, study in rows:
        path = Path(file_path)
        assert path.is_absolute() and path.is_file() and path.is_relative_to(root)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID) == (
            sop,
            series,
            study,
        )
        assert (ds.Rows, ds.Columns) == (n_rows, n_cols)
        assert _spacing(ds) == pytest.approx((spacing, spacing))


def test_the_app_reader_opens_the_files(written):
    from models.dicom.reader import read_dicom

    _, root, _ = written
    path = _files(root)[0]
    image = read_dicom(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert image.patient_id == ds.PatientID
    assert image.spacing_mm == pytest.approx(_spacing(ds))


def test_same_seed_same_files_and_no_duplicate_rows(demo_db, tmp_path, written):
    _, first_root, first = written
    db = _copy_store(demo_db, tmp_path)
    again = write_demo_images(db, tmp_path / "dicom", patients=N_PATIENTS, seed=5)
    assert again.person_ids == first.person_ids
    for a, b in zip(_files(first_root), _files(tmp_path / "dicom"), strict=True):
        assert a.relative_to(first_root) == b.relative_to(tmp_path / "dicom")
        assert a.read_bytes() == b.read_bytes()
    write_demo_images(db, tmp_path / "dicom", patients=N_PATIENTS, seed=5)
    with store.open_store(db, read_only=True) as con:
        n, distinct = con.execute(
            "SELECT count(*), count(DISTINCT sop_instance_uid) FROM imaging_instance"
        ).fetchone()
        n_series = con.execute("SELECT count(*) FROM imaging_series").fetchone()[0]
        n_studies = con.execute("SELECT count(*) FROM imaging_study").fetchone()[0]
        n_mr, n_brain_reads = con.execute(
            "SELECT (SELECT count(*) FROM imaging_study WHERE modality = 'MR'),"
            " (SELECT count(*) FROM measurement WHERE concept = ?)",
            [BRAIN_CONCEPT],
        ).fetchone()
        n_meas, distinct_meas = con.execute(
            "SELECT count(*), count(DISTINCT measurement_id) FROM measurement"
        ).fetchone()
    assert n == distinct == len(again.images)
    assert n_series == n_studies  # the demo's own series were used, one per brain study added
    assert n_mr == n_brain_reads == len(again.brain_images) > 0
    assert n_meas == distinct_meas
    other = write_demo_images(
        _copy_store(demo_db, tmp_path / "other"),
        tmp_path / "other" / "dicom",
        patients=N_PATIENTS,
        seed=6,
    )
    assert other.person_ids != first.person_ids


def test_fewer_patients_remove_the_earlier_runs_files_and_rows(demo_db, tmp_path):
    db = _copy_store(demo_db, tmp_path)
    root = tmp_path / "dicom"
    (root / "keep.txt").parent.mkdir(parents=True)
    (root / "keep.txt").write_text("not ours")
    big = write_demo_images(db, root, patients=4, seed=5)
    small = write_demo_images(db, root, patients=2, seed=5)
    assert small.person_ids == big.person_ids[:2]
    # brain patients are chosen among the imaged ones first, so they may change too
    assert (
        small.removed_files
        == 2 * len({im.path for im in big.images} - {im.path for im in small.images})
        > 0
    )
    files = _files(root)
    assert {p.relative_to(root).parts[0] for p in files} == {im.patient_id for im in small.images}
    assert len(files) == len(small.images)
    assert (root / "keep.txt").read_text() == "not ours"
    dropped = {im.patient_id for im in big.images} - {im.patient_id for im in small.images}
    assert not any((root / mrn).exists() for mrn in dropped)
    manifest = json.loads((root / MANIFEST_NAME).read_text())["files"]
    assert sorted(manifest) == sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("keep.txt", MANIFEST_NAME)
    )
    with store.open_store(db, read_only=True) as con:
        paths = [r[0] for r in con.execute("SELECT file_path FROM imaging_instance").fetchall()]
    assert sorted(paths) == sorted(str(im.path) for im in small.images)


def test_changed_measurements_are_drawn_and_zero_means_no_lesion(demo_db, tmp_path):
    db = _copy_store(demo_db, tmp_path)
    root = tmp_path / "dicom"
    first = write_demo_images(db, root, patients=2, seed=5)
    a, b, c = first.images[:3]
    with store.open_store(db) as con:
        _set_read(con, a.study_uid, 0.0)
        _set_read(con, b.study_uid, 33.3)
        # no study link: the nearest measurement within two weeks is used
        _set_read(con, c.study_uid, 17.5, linked=False, shift_days=3)
    again = write_demo_images(db, root, patients=2, seed=5)
    assert again.person_ids == first.person_ids
    drawn = {im.study_uid: im for im in again.images}
    for image, expected in ((a, 0.0), (b, 33.3), (c, 17.5)):
        ds = pydicom.dcmread(image.path)
        assert drawn[image.study_uid].measured_mm == expected
        assert abs(_mask_diameter(image.path, ds) - expected) <= _tolerance(expected)
    assert not (np.asarray(Image.open(mask_path_for(a.path))) > 0).any()


def test_a_study_without_a_series_gets_one(demo_db, tmp_path):
    db = _copy_store(demo_db, tmp_path)
    first = write_demo_images(db, tmp_path / "dicom", patients=1, seed=5)
    study = first.images[0].study_uid
    with store.open_store(db) as con:
        con.execute("DELETE FROM imaging_instance")
        con.execute("DELETE FROM imaging_series WHERE study_uid = ?", [study])
    again = write_demo_images(db, tmp_path / "dicom", patients=1, seed=5)
    image = next(im for im in again.images if im.study_uid == study)
    assert image.series_uid == series_uid_for(study)
    assert image.sop_instance_uid == sop_uid_for(study)
    assert (
        pydicom.dcmread(image.path, stop_before_pixels=True).SeriesInstanceUID == image.series_uid
    )
    with store.open_store(db, read_only=True) as con:
        row = con.execute(
            "SELECT study_uid, modality FROM imaging_series WHERE series_uid = ?",
            [image.series_uid],
        ).fetchone()
    assert row == (study, "MG")


def test_lesions_that_cannot_be_drawn_pass_the_patient_over(demo_db, tmp_path, monkeypatch):
    db = _copy_store(demo_db, tmp_path)
    first = write_demo_images(db, tmp_path / "a", patients=3, seed=5, brain_patients=0)
    monkeypatch.setattr(demo_imaging, "MAX_DRAWABLE_MM", 1.6)  # only 0 mm lesions fit now
    none = write_demo_images(db, tmp_path / "b", patients=3, seed=5, brain_patients=0)
    assert none.person_ids == () and none.passed_over > 0 and _files(tmp_path / "b") == []
    assert first.patients == 3


def test_bad_arguments_are_refused(demo_db, tmp_path):
    db = _copy_store(demo_db, tmp_path)
    with pytest.raises(DemoImagingError, match="whole number"):
        write_demo_images(db, tmp_path / "dicom", patients=-1)
    with pytest.raises(DemoImagingError, match="brain-imaged patients must be a whole number"):
        write_demo_images(db, tmp_path / "dicom", brain_patients=1.5)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DemoImagingError, match="is a file"):
        write_demo_images(db, blocker)
    with pytest.raises(store.MissingDatabaseError):
        write_demo_images(tmp_path / "nope.duckdb", tmp_path / "dicom")


def test_a_large_lesion_is_drawn_at_its_size_or_the_patient_is_passed_over(demo_db, tmp_path):
    db = _copy_store(demo_db, tmp_path)
    first = write_demo_images(db, tmp_path / "dicom", patients=2, seed=5, brain_patients=0)
    large, huge = first.images[0], first.images[-1]
    assert large.person_id != huge.person_id
    with store.open_store(db) as con:
        # wider than most phantom breasts allow: other breasts are tried until one fits
        _set_read(con, large.study_uid, 100.0)
        # wider than any: that patient cannot be imaged at her sizes
        _set_read(con, huge.study_uid, 180.0)
    again = write_demo_images(db, tmp_path / "dicom", patients=2, seed=5, brain_patients=0)
    assert large.person_id in again.person_ids and huge.person_id not in again.person_ids
    image = next(im for im in again.images if im.study_uid == large.study_uid)
    ds = pydicom.dcmread(image.path)
    assert abs(_mask_diameter(image.path, ds) - 100.0) <= _tolerance(100.0)


# --------------------------------------------------------------------------- brain MR studies


def _distant_disease(con, person_id: int) -> tuple[str | None, str]:
    """(date of recurrence or stage IV diagnosis, or None; diagnosis date) as YYYYMMDD."""
    return con.execute(
        "SELECT coalesce((SELECT strftime(min(event_date), '%Y%m%d') FROM outcome_event WHERE person_id = ?1 "
        "AND event_type = 'recurrence'), (SELECT strftime(min(diagnosis_date), '%Y%m%d') FROM condition_occurrence "
        "WHERE person_id = ?1 AND stage = 'IV')), (SELECT strftime(min(diagnosis_date), '%Y%m%d') "
        "FROM condition_occurrence WHERE person_id = ?1)",
        [person_id],
    ).fetchone()


def test_brain_mr_studies_show_metastases_at_their_measured_size(written):
    from models.dicom.reader import read_dicom

    db, root, summary = written
    brain = summary.brain_images
    assert len(summary.brain_person_ids) == DEFAULT_BRAIN_PATIENTS
    assert {im.person_id for im in brain} == set(summary.brain_person_ids)
    met_patients = set()
    with store.open_store(db, read_only=True) as con:
        for im in brain:
            assert im.modality == "MR" and im.body_part == "BRAIN"
            image = read_dicom(im.path)
            assert (image.modality, image.body_part, image.patient_id) == (
                "MR",
                "BRAIN",
                im.patient_id,
            )
            study = con.execute(
                "SELECT person_id, modality, description, strftime(study_date, '%Y%m%d') FROM imaging_study "
                "WHERE study_uid = ?",
                [im.study_uid],
            ).fetchone()
            assert study[:2] == (im.person_id, "MR") and study[2].startswith(
                "MR brain with contrast"
            )
            assert con.execute(
                "SELECT modality, body_part FROM imaging_series WHERE series_uid = ? "
                "AND study_uid = ?",
                [im.series_uid, im.study_uid],
            ).fetchone() == ("MR", "BRAIN")
            reads = con.execute(
                "SELECT concept, value, unit, source FROM measurement WHERE study_uid = ?",
                [im.study_uid],
            ).fetchall()
            assert reads == [
                (BRAIN_CONCEPT, im.measured_mm, "mm", "radiology")
            ]  # never the breast series
            ds = pydicom.dcmread(im.path)
            drawn = _mask_diameter(im.path, ds)
            assert abs(drawn - im.measured_mm) <= _tolerance(im.measured_mm), (
                im.path,
                drawn,
                im.measured_mm,
            )
            # within her observation period, after diagnosis; a metastasis only with distant disease, after it
            event, diagnosis = _distant_disease(con, im.person_id)
            start, end = con.execute(
                "SELECT strftime(start_date, '%Y%m%d'), strftime(end_date, '%Y%m%d') "
                "FROM observation_period WHERE person_id = ?",
                [im.person_id],
            ).fetchone()
            assert max(start, diagnosis) <= study[3] <= end
            assert event is not None  # this store has plenty of recurrences to prefer
            if im.measured_mm > 0:
                assert 5.0 <= im.measured_mm <= 31.0 and study[3] >= event
                met_patients.add(im.person_id)
            else:
                assert not (np.asarray(Image.open(mask_path_for(im.path))) > 0).any()
    assert 0 < len(met_patients) < len(summary.brain_person_ids)  # about half
    # patients with mammograms and distant disease come first
    with store.open_store(db, read_only=True) as con:
        imaged_advanced = [p for p in summary.person_ids if _distant_disease(con, p)[0] is not None]
    assert set(imaged_advanced[:DEFAULT_BRAIN_PATIENTS]) <= set(summary.brain_person_ids)


def test_brain_studies_are_replaced_by_a_rerun(demo_db, tmp_path):
    db = _copy_store(demo_db, tmp_path)
    root = tmp_path / "dicom"

    def brain_rows(con):
        return con.execute(
            "SELECT s.study_uid, s.person_id, m.value, i.file_path FROM imaging_study s "
            "JOIN imaging_series se USING (study_uid) JOIN imaging_instance i USING (series_uid) "
            "JOIN measurement m ON m.study_uid = s.study_uid AND m.concept = ? AND m.source = 'radiology' "
            "WHERE s.modality = 'MR' ORDER BY s.study_uid",
            [BRAIN_CONCEPT],
        ).fetchall()

    first = write_demo_images(db, root, patients=2, seed=5, brain_patients=3)
    expected = sorted(
        (im.study_uid, im.person_id, im.measured_mm, str(im.path)) for im in first.brain_images
    )
    ai_study = first.brain_images[0].study_uid
    with store.open_store(db) as con:
        assert brain_rows(con) == expected
        n_rows = con.execute("SELECT count(*) FROM measurement").fetchone()[0]
        # an AI read of the same pixels is kept when the study is written again
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) SELECT max(measurement_id) + 1, ?, DATE '2020-01-01', ?, 9.9, 'mm', "
            "'ai', ? FROM measurement",
            [first.brain_images[0].person_id, BRAIN_CONCEPT, ai_study],
        )
    again = write_demo_images(db, root, patients=2, seed=5, brain_patients=3)
    assert again.brain_images == first.brain_images
    with store.open_store(db, read_only=True) as con:
        assert brain_rows(con) == expected
        assert con.execute("SELECT count(*) FROM measurement").fetchone()[0] == n_rows + 1

    other = write_demo_images(db, root, patients=2, seed=6, brain_patients=3)
    assert not {im.study_uid for im in other.brain_images} & {
        im.study_uid for im in first.brain_images
    }
    with store.open_store(db, read_only=True) as con:
        assert brain_rows(con) == sorted(
            (im.study_uid, im.person_id, im.measured_mm, str(im.path)) for im in other.brain_images
        )
        assert (
            con.execute(
                "SELECT count(*) FROM measurement WHERE study_uid = ?", [ai_study]
            ).fetchone()[0]
            == 0
        )
        assert json.loads(
            con.execute(
                "SELECT value FROM clinic_metadata WHERE key = ?", [BRAIN_STUDIES_KEY]
            ).fetchone()[0]
        ) == [im.study_uid for im in other.brain_images]
    assert not any(im.path.exists() for im in first.brain_images)
    assert sorted(_files(root, "MR")) == sorted(im.path for im in other.brain_images)

    write_demo_images(db, root, patients=0)
    with store.open_store(db, read_only=True) as con:
        assert (
            con.execute("SELECT count(*) FROM imaging_study WHERE modality = 'MR'").fetchone()[0]
            == 0
        )
        assert (
            con.execute(
                "SELECT count(*) FROM measurement WHERE concept = ?", [BRAIN_CONCEPT]
            ).fetchone()[0]
            == 0
        )
        assert (
            con.execute(
                "SELECT count(*) FROM clinic_metadata WHERE key = ?", [BRAIN_STUDIES_KEY]
            ).fetchone()[0]
            == 0
        )
        assert con.execute("SELECT count(*) FROM measurement").fetchone()[0] == n_rows - len(
            first.brain_images
        )
    assert _files(root) == []
