"""``lifecycle.signed_off_entry``: what ``oncolens ingest`` (files or --dicomweb) and the Imaging
page's PACS pull print of a read, behind the ethics board's sign-off as ``oncolens predict``
prints it (review finding, fixgate): its ``approval`` always; where approval is required and the
version not approved, no label, probability or measurement, and ``withheld`` says why."""

from __future__ import annotations

import shutil
from pathlib import Path

from analytics import store
from analytics.governance import users
from analytics.governance.lifecycle import approvals
from dashboard.services import lifecycle

IMAGE = {
    "person_id": 1,
    "sop_instance_uid": "1.2.3",
    "ai": {
        "model": "mammography",
        "model_version": "0.0-not-a-card",
        "label": "malignant",
        "probability": 0.91,
        "longest_diameter_mm": 14.2,
    },
}
SERIES = {
    "kind": "volume",
    "person_id": 1,
    "study_uid": "1.2",
    "series_instance_uid": "1.2.4",
    "model": "brain_mets_3d",
    "model_version": "0.0-not-a-card",
    "label": "lesion",
    "probability": 0.99,
    "refused": None,
    "lesion": {"volume_ml": 2.4},
    "lesions": [{"volume_ml": 2.4}],
    "total_volume_ml": 2.4,
    "measurement": {"concept": "lesion_longest_diameter", "value_mm": 20.0, "source": "ai"},
}


def test_a_read_not_approved_is_marked_then_withheld_when_approval_is_required(demo_db, tmp_path):
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    statuses: dict = {}
    image = lifecycle.signed_off_entry(db, IMAGE, statuses)
    series = lifecycle.signed_off_entry(db, SERIES, statuses)
    assert image["ai"] == IMAGE["ai"] and series["lesions"] == SERIES["lesions"]
    assert image["approval"]["status"] == "not reviewed" and not image["approval"]["withheld"]
    assert "withheld" not in image and "withheld" not in series

    with store.open_store(db) as con:
        users.add_user(con, "admin-test", "admin", password="admin-test-password-1")
        approvals.set_require_approval(con, True, actor="admin-test")
    statuses = {}
    image = lifecycle.signed_off_entry(db, IMAGE, statuses)
    series = lifecycle.signed_off_entry(db, SERIES, statuses)
    assert image["ai"] == {"model": "mammography", "model_version": "0.0-not-a-card"}
    assert image["sop_instance_uid"] == "1.2.3" and image["withheld"]
    assert not {
        "label",
        "probability",
        "lesion",
        "lesions",
        "total_volume_ml",
        "measurement",
    } & set(series)
    assert series["series_instance_uid"] == "1.2.4" and series["approval"]["withheld"]
    assert len(statuses) == 2  # one lookup per model version


def test_refusals_and_notes_are_not_model_output_and_pass(demo_db, tmp_path):
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    refused = {**SERIES, "refused": "not a brain MR", "label": None}
    note = {"kind": "volume", "series_instance_uid": "1.2.5", "note": "no 3D model reads CT"}
    assert lifecycle.signed_off_entry(db, refused, {}) == refused
    assert lifecycle.signed_off_entry(db, note, {}) == note
    assert lifecycle.signed_off_entry(db, {"person_id": 1, "ai": None}, {}) == {
        "person_id": 1,
        "ai": None,
    }
