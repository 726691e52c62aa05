"""The ingest writer gathers its rows and writes each table with one statement per ingest
(``analytics.imaging.rows``, issue 23). The tables it leaves must be those that filing the same files
one ingest at a time leaves (where no batching can reorder anything): the same studies, series,
instances, findings, refusals, AI measurements and read inputs, with the same finding ids, across a
re-ingest, a file given twice, a refused read that undoes the measurement of an earlier file of
its study, and files that are refused (a patient not in the store). (The per-row writer it replaces
passed the same tests/analytics/imaging tests; docs/benchmarks.md has the before/after comparison of
every table on a demo ingest.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from analytics import store
from analytics.imaging.ingest import ingest_files
from models.deid import deidentify as deid
from models.inference.loader import ModelLoader
from models.inference.read import iter_dicom_paths
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from sample_data.demo_imaging import write_demo_images

pytestmark = pytest.mark.filterwarnings("ignore")
TABLES = {
    "imaging_study": "study_uid",
    "imaging_series": "series_uid",
    "imaging_instance": "sop_instance_uid",
    "ai_finding": "finding_id",
    "ai_refusal": "sop_instance_uid, model_name",
    "measurement": "measurement_id",
    "ai_read_input": "sop_instance_uid, model_name",
}


@pytest.fixture(scope="module")
def inputs(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ingest_rows")
    db = Path(shutil.copy(demo_db, root / "clinic.duckdb"))
    write_demo_images(db, root / "images", patients=3, seed=4)
    with store.open_store(db, read_only=True) as con:
        mrn = con.execute("SELECT mrn FROM person ORDER BY person_id LIMIT 1").fetchall()[0][0]
    normal = phantoms.brain_mri(np.random.default_rng(10), True, lesion_diameter_mm=25.0)
    noise = np.random.default_rng(11).integers(0, 4000, normal.pixels.shape).astype(np.uint16)
    study = generate_uid()  # one study: the refused noise image undoes the lesion's measurement
    extra = []
    for i, phantom in enumerate((normal, dataclasses.replace(normal, pixels=noise))):
        path = root / "extra" / f"brain{i}.dcm"
        path.parent.mkdir(exist_ok=True)
        write_phantom_dicom(
            phantom, path, patient_id=mrn, study_uid=study, series_uid=generate_uid(),
            sop_instance_uid=generate_uid(), study_date="20250401",
        )  # fmt: skip
        extra.append(path)
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "extra" / "ct.dcm")  # nobody's
    demo = list(iter_dicom_paths([root / "images"]))
    files = [*demo, *extra, root / "extra" / "ct.dcm", demo[0]]  # the first file twice
    deid.load_or_create_key(deid.key_path_for_store(db))
    return db, files


def _store(db: Path, where: Path) -> Path:
    where.mkdir()
    copy = Path(shutil.copy(db, where / db.name))
    shutil.copy(deid.key_path_for_store(db), deid.key_path_for_store(copy))  # the same UIDs
    return copy


def _tables(db: Path) -> dict[str, list[tuple]]:
    folder = str(db.parent)
    with store.open_store(db, read_only=True) as con:
        return {
            table: [
                tuple(str(v).replace(folder, "<store>") if isinstance(v, str) else v for v in row)
                for row in con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            ]
            for table, order in TABLES.items()
        }


def test_one_ingest_leaves_the_tables_that_one_file_at_a_time_leaves(inputs, tmp_path) -> None:
    db, files = inputs
    load = ModelLoader()
    batched, single = _store(db, tmp_path / "batched"), _store(db, tmp_path / "single")
    before = _tables(batched)
    for now in (dt.datetime(2026, 12, 1, 9), dt.datetime(2026, 12, 2, 9)):
        report = ingest_files(batched, files, load, now=now)
        reports = [ingest_files(single, [f], load, now=now) for f in files]
        assert [e["sop_instance_uid"] for e in report.stored] == [
            e["sop_instance_uid"] for r in reports for e in r.stored
        ]
        assert report.failed == [f for r in reports for f in r.failed]
        assert any(e.get("refused") for e in report.stored) and report.failed
    after, other = _tables(batched), _tables(single)
    # measurement ids: one ingest numbers its AI measurements on from the largest id when it
    # starts (as before); filed one at a time, an id freed by a refusal's delete is numbered
    # again; the rest of each row is compared, and the ids must stay unique (no key holds them)
    ids = [row[0] for row in after["measurement"] if row[6] == "ai"]
    assert ids and len(set(ids)) == len(ids)
    # each AI measurement names the read that wrote it (schema 16: the sign-off's key)
    made_by = {(f[3], f[4], f[9]) for f in after["ai_finding"]}
    for row in (r for r in after["measurement"] if r[6] == "ai"):
        assert row[10] is not None and (row[8], row[9], row[10]) in made_by, row
    for tables in (after, other):
        tables["measurement"] = sorted(row[1:] for row in tables["measurement"])
    assert after == other
    for table in ("imaging_instance", "ai_finding", "ai_refusal", "measurement", "ai_read_input"):
        assert len(after[table]) > len(before[table]), table  # the ingest wrote to every table
