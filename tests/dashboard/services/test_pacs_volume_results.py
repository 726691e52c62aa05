"""The Imaging page's and `ingest --dicomweb`'s path for a volume: a brain MR series pulled from a
real Orthanc is read once in 3D, filed de-identified, and its SEG and SR go back into the
hospital's own study, audited."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pydicom
import pytest
import requests

from analytics import store
from analytics.governance import users
from analytics.governance.lifecycle import approvals
from analytics.imaging import volumes
from dashboard.services.pacs_ingest import ingest_from_pacs
from models import pacs
from models.inference.loader import ModelLoader
from models.volumes.results import read_volume_report
from sample_data.demo_volumes import write_demo_volumes

pytestmark = pytest.mark.filterwarnings("ignore")


def test_a_pulled_series_is_read_in_3d_and_its_results_go_back(orthanc, demo_db, tmp_path) -> None:
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    written = write_demo_volumes(db, tmp_path / "volumes", patients=1)
    study = next(s for s in written.studies if s.modality == "MR")
    config = pacs.PacsConfig(orthanc.dicomweb, orthanc.username, orthanc.password)
    client = pacs.connect(config)
    files = sorted(study.folder.glob("*.dcm"))
    assert not pacs.store_datasets(client, [pydicom.dcmread(f) for f in files])["failed"]

    report = ingest_from_pacs(
        db, config, ModelLoader(), study_uids=[study.study_uid], send_results=True, actor="test"
    )
    assert not report.failed and len(report.stored) == len(files)
    (entry,) = report.volumes
    assert entry["model"] == "brain_mets_3d" and "send_error" not in entry
    if entry["refused"]:  # the guard's answer is a result: nothing is sent
        assert "sent" not in entry
        return
    sent = entry["sent"]
    assert sent["study_uid"] == study.study_uid  # the hospital's study, not the de-identified one
    found = {
        pacs._value(s, "Modality"): pacs._value(s, "SeriesInstanceUID")
        for s in client.search_for_series(study_instance_uid=study.study_uid)
    }
    assert set(found) == ({"MR", "SR", "SEG"} if entry["lesions"] else {"MR", "SR"})
    sr = pydicom.dcmread(
        io.BytesIO(
            pacs.retrieve_instance_bytes(client, study.study_uid, found["SR"], sent["report_uid"])
        )
    )
    groups = read_volume_report(sr)["groups"]
    if entry["lesions"]:
        assert [g["measurements"]["Volume"][0] for g in groups] == [
            pytest.approx(m["volume_ml"], abs=1e-3) for m in entry["lesions"]
        ]
        assert sent["segmentation_uid"] and found["SEG"]
    else:
        assert [g["finding"] for g in groups] == ["no-lesion"]
    with store.open_store(db, read_only=True) as con:
        assert len(volumes.patient_volume_reads(con, study.person_id)) == 1
        (details,) = con.execute(
            "SELECT details FROM audit_event WHERE action = 'ai_results_sent'"
        ).fetchall()[0]
        assert json.loads(details)["kind"] == "volume"
        assert json.loads(details)["report_uid"] == sent["report_uid"]


def test_an_unapproved_3d_read_is_not_sent_where_approval_is_required(
    orthanc, demo_db, tmp_path
) -> None:
    """Review finding (fixgate): "Send the AI read back" sent the SEG and SR of a model version
    the ethics board had not approved, though the admin required approval. Now nothing leaves:
    the entry says why, keeps no label or measurement, and no ``ai_results_sent`` is audited."""
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db) as con:
        users.add_user(con, "admin-test", "admin", password="admin-test-password-1")
        approvals.set_require_approval(con, True, actor="admin-test")
    written = write_demo_volumes(db, tmp_path / "volumes", patients=1)
    study = next(s for s in written.studies if s.modality == "MR")
    config = pacs.PacsConfig(orthanc.dicomweb, orthanc.username, orthanc.password)
    client = pacs.connect(config)
    # the demo study's UIDs are fixed: empty it of what another test (the one above) sent back
    auth = (orthanc.username, orthanc.password)
    for found in requests.post(
        f"{orthanc.url}/tools/lookup", data=study.study_uid, auth=auth, timeout=10
    ).json():
        requests.delete(f"{orthanc.url}{found['Path']}", auth=auth, timeout=10).raise_for_status()
    files = sorted(study.folder.glob("*.dcm"))
    assert not pacs.store_datasets(client, [pydicom.dcmread(f) for f in files])["failed"]

    report = ingest_from_pacs(
        db, config, ModelLoader(), study_uids=[study.study_uid], send_results=True, actor="test"
    )
    assert not report.failed and len(report.stored) == len(files)
    (entry,) = report.volumes
    assert not entry["refused"]  # a read, whose output the sign-off gates (a refusal is not)
    assert "sent" not in entry and entry["send_error"].startswith("not sent: ")
    assert entry["approval"]["withheld"] and entry["withheld"] in entry["send_error"]
    assert not {"label", "lesion", "lesions", "total_volume_ml"} & set(entry)
    found = {
        pacs._value(s, "Modality")
        for s in client.search_for_series(study_instance_uid=study.study_uid)
    }
    assert found == {"MR"}  # no SEG, no SR
    with store.open_store(db, read_only=True) as con:
        assert not con.execute(
            "SELECT count(*) FROM audit_event WHERE action = 'ai_results_sent'"
        ).fetchone()[0]
