"""The ingest de-identifies in its worker processes (issue 23: ``prepare_and_scan`` with the store's
key, the person id spliced in by the writer, ``models.deid.deferred``). The store, the report and
every stored copy must be what the writer's own de-identification gives (the path before, still
taken where a copy cannot be deferred): compared on demo images and on files of the store's patients
in every uncompressed transfer syntax, a deflated one (de-identified by the writer), one without
the preamble (refused by the de-identifier either way), one of a patient not in the store, and a
file given twice; the workers' folder of copies is gone afterwards."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from analytics import store
from analytics.imaging import ingest
from models.deid import deferred
from models.deid import deidentify as deid
from models.inference.loader import ModelLoader
from models.inference.read import iter_dicom_paths
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
SYNTAXES = ("CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm")


@pytest.fixture(scope="module")
def inputs(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ingest_deid_workers")
    db = Path(shutil.copy(demo_db, root / "clinic.duckdb"))
    write_demo_images(db, root / "images", patients=2, seed=5)
    with store.open_store(db, read_only=True) as con:
        mrn = con.execute("SELECT mrn FROM person ORDER BY person_id LIMIT 1").fetchall()[0][0]
    extra = root / "extra"
    extra.mkdir()
    files = []
    for k, name in enumerate(SYNTAXES):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.PatientID = mrn
        ds.StudyDate = "20250301"
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(extra / f"syntax{k}.dcm")
        files.append(extra / f"syntax{k}.dcm")
    bare = extra / "no_preamble.dcm"  # the reader takes it (forced); the de-identifier does not
    bare.write_bytes((extra / "syntax0.dcm").read_bytes()[128:])
    stranger = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stranger.SOPInstanceUID = generate_uid()
    stranger.save_as(extra / "stranger.dcm")  # a patient the store does not have
    demo = list(iter_dicom_paths([root / "images"]))
    files = [*demo, *files, bare, extra / "stranger.dcm", demo[0]]  # the first file twice
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


def _copies(db: Path) -> dict[str, bytes]:
    images = ingest.images_dir_for(db)
    return {str(p.relative_to(images)): p.read_bytes() for p in sorted(images.rglob("*.dcm"))}


def test_copies_made_in_the_workers_are_those_the_writer_makes(inputs, tmp_path) -> None:
    db, files = inputs
    load = ModelLoader()
    workers, writer = _store(db, tmp_path / "workers"), _store(db, tmp_path / "writer")
    now = dt.datetime(2026, 12, 3, 9)
    report = ingest.ingest_files(workers, files, load, now=now, workers=2)
    before = ingest._ingest_files(
        writer, files, load, now=now, images_dir=None, actor="system", source="files",
        workers=1, key=None, spool=None,
    )  # fmt: skip
    assert len(report.stored) > len(SYNTAXES) and report.failed
    assert [
        str(e).replace(str(workers.parent), "<store>") for e in report.stored + report.failed
    ] == [str(e).replace(str(writer.parent), "<store>") for e in before.stored + before.failed]
    assert any("not de-identified" in f["error"] for f in report.failed)  # the bare file
    assert any("not in the store" in f["error"] for f in report.failed)
    assert _tables(workers) == _tables(writer)
    assert _copies(workers) == _copies(writer) and len(_copies(workers)) >= len(SYNTAXES)
    assert not [p for p in workers.parent.iterdir() if p.name.startswith(".clinic_ingest-")]


def test_the_workers_defer_every_copy_they_can(inputs, tmp_path) -> None:
    db, files = inputs
    key = deid.load_or_create_key(deid.key_path_for_store(db))
    entries = ingest.prepare_and_scan(files, ModelLoader(), key=key, spool=tmp_path)[0].entries
    made = {
        Path(f).name: e.deid for f, e in zip(files, entries, strict=True) if not isinstance(e, dict)
    }
    assert all(made[f"syntax{k}.dcm"] and made[f"syntax{k}.dcm"].spooled for k in range(3))
    assert made["syntax3.dcm"] is None  # deflated: the writer de-identifies it
    assert (
        made["no_preamble.dcm"] and made["no_preamble.dcm"].error
    )  # refused, reported by the writer
    spooled = [e.deid.spooled for e in entries if not isinstance(e, dict) and e.deid is not None]
    spooled = [s for s in spooled if s is not None]
    assert len(spooled) == len(set(spooled)) == len(list(tmp_path.iterdir()))


def test_a_copy_that_cannot_be_finished_is_de_identified_in_full(tmp_path) -> None:
    """Where ``fill_in`` finds the splice missed its elements (here: a copy told the wrong encoding,
    whose placeholder patterns lie only in the pixel data), the writer stores the bytes of its own
    path, never the placeholder or changed pixels (review of issue 23)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    pixels = bytearray(ds.PixelData)
    at = 64
    for element in deferred._elements(deferred.PLACEHOLDER, (False, True), ("iso8859",)):
        pixels[at : at + len(element)] = element
        at += len(element) + 16
    ds.PixelData = bytes(pixels)
    source = tmp_path / "crafted.dcm"
    ds.save_as(source, enforce_file_format=True)
    key = bytes(range(32))
    (spool := tmp_path / "spool").mkdir()
    entry = ingest.prepare_and_scan([source], ModelLoader(), key=key, spool=spool)[0].entries[0]
    assert not isinstance(entry, dict) and entry.deid is not None and entry.deid.copy is not None
    assert entry.deid.copy.encoding == (True, True)  # the transfer syntax's
    missed = dataclasses.replace(
        entry.deid, copy=dataclasses.replace(entry.deid.copy, encoding=(False, True))
    )
    want = deid.to_bytes(deid.deidentify(source, key, patient_id="42")[0])
    for made in (entry.deid, missed):
        images = tmp_path / f"images{made is missed}"
        target, sha = ingest._stage_deidentified(made, entry.deid.report, entry, 42, images, key)
        assert ingest._pending(target).read_bytes() == want


def test_the_spool_of_an_ingest_killed_before_it_could_clean_up_goes_at_the_next_ingest(
    inputs, tmp_path
) -> None:
    """A SIGKILLed ingest leaves its folder of de-identified copies; the next ingest of that store
    removes it, and only it: a folder of a running process or of another host stays."""
    db = _store(inputs[0], tmp_path / "store")
    beside = db.parent
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    prefix = ingest._spool_prefix(db)
    dead = beside / f"{prefix}{killed.pid}-abc123"
    alive = beside / f"{prefix}{os.getpid()}-def456"
    elsewhere = beside / f".clinic_ingest-another.host+{killed.pid}-ghi789"
    # a host whose name starts with this one's ("worker" and "worker-12")
    longer = beside / f"{prefix[:-1]}-12+{killed.pid}-jkl012"
    for folder in (dead, alive, elsewhere, longer):
        folder.mkdir()
        (folder / "copy.dcm").write_bytes(b"de-identified copy")
    report = ingest.ingest_files(db, inputs[1][:2], ModelLoader(), workers=1)
    assert report.stored
    assert not dead.exists() and alive.exists() and elsewhere.exists() and longer.exists()
    # and this ingest's own folder is gone too
    left = {p.name for p in beside.iterdir() if p.name.startswith(".clinic_ingest-")}
    assert left == {alive.name, elsewhere.name, longer.name}
