"""The 3D reads behind the ethics board's sign-off (issue 21), as 2D reads are (AppTest): the
Governance board lists the built-in 3D model with its pinned weights and records a decision on it;
on the Imaging page a stored series' 3D read and an uploaded series' 3D read carry the same
banner when not reviewed and are withheld (the volume shown, nothing of the read, audited) where
the admin requires approval; the stored 3D reads listed under the image likewise. Also the upload
items of the last review: a lone enhanced multi-frame volume is read in 3D, a file whose
identifiers cannot be read is listed with its reason, and the upload's identity and read events
share its id."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from highdicom.legacy import LegacyConvertedEnhancedMRImage
from pydicom.uid import generate_uid

from analytics import store
from analytics.governance import audit, users
from analytics.governance.lifecycle import approvals
from dashboard.panels.uploads import series as upload_panel
from models.volumes.cards import BUILTIN, BUILTIN_DIR
from tests.dashboard.app_pages.test_imaging_page import overlay_names, viewers
from tests.dashboard.app_pages.test_imaging_series3d import _matches, series_db  # noqa: F401
from tests.dashboard.app_pages.test_imaging_upload3d import _files, _upload, upload_env  # noqa: F401
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")
SHA = hashlib.sha256((BUILTIN_DIR / "models" / "model.ts").read_bytes()).hexdigest()
BANNER = "The brain_mets_3d model (version 1.2.0) has not been approved by the ethics board"
WITHHELD = "Output withheld: the brain_mets_3d model (version 1.2.0)"


def _copy(db: Path, folder: Path, *, board_user: bool = False) -> Path:
    """A copy of ``db`` (its image rows still point at the fixture's files) with a board member
    and an admin; ``board_user``: the AppTest user (``demo-user``) too, as a board member (the
    account a decision in the form needs; on other pages its role would end the session)."""
    out = Path(shutil.copy(db, folder / "clinic.duckdb"))
    with store.open_store(out) as con:
        users.add_user(con, "board-test", "ethics_board", password="board-test-password-1")
        users.add_user(con, "admin-test", "admin", password="admin-test-password-1")
        if board_user:
            users.add_user(con, "demo-user", "ethics_board", password="demo-user-password-1")
    return out


def _require(db: Path) -> None:
    with store.open_store(db) as con:
        approvals.set_require_approval(con, True, actor="admin-test")


def _approve(db: Path, version_id: str = SHA) -> None:
    with store.open_store(db) as con:
        approvals.decide(
            con,
            model_name=BUILTIN,
            model_version="1.2.0",
            version_id=version_id,
            decision="approved",
            comment="3D card and guard reviewed",
            actor="board-test",
        )


def _events(db: Path, action: str) -> list[tuple]:
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT subject, model_name, details FROM audit_event WHERE action = ? ORDER BY event_id",
            [action],
        ).fetchall()


def _stored_series(db: Path, pid: int, monkeypatch):
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    at = open_page("imaging", patient=str(pid))
    box = at.selectbox(key="imaging_source")
    (wanted,) = [
        k
        for k, label in zip(range(-1, len(box.options) - 1), box.options, strict=True)
        if "series of" in label and _matches(label, "brain")
    ]
    box.set_value(wanted).run()
    assert not at.exception, at.exception
    return at


def _read_column(at):
    """The column beside the volume's (the narrow one of ``st.columns([3, 1])``): where the 3D
    read is drawn, and the sign-off's banner or error with it."""
    columns = list(at.columns)
    [k] = [k for k, c in enumerate(columns) if any(s["is_volume"] for s in viewers(c))]
    assert (columns[k].weight, columns[k + 1].weight) == (0.75, 0.25), "not beside the volume"
    return columns[k + 1]


def _volume(at) -> dict:
    (spec,) = [s for s in viewers(at) if s["is_volume"]]
    return spec


def test_the_board_lists_the_3d_model_and_records_a_decision_on_its_weights(
    series_db,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    db = _copy(series_db["db"], tmp_path, board_user=True)
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    at = open_page("governance", role="ethics_board", tab="Sign-off")
    assert not at.exception, at.exception
    status = next(d.value for d in at.dataframe if {"status", "version id"} <= set(d.value.columns))
    row = status[status["model"] == BUILTIN].iloc[0]
    assert row["version"] == "1.2.0" and row["version id"] == SHA[:12]
    assert row["status"] == "not reviewed"
    versions = at.selectbox(key="signoff_version")
    index = next(i for i, label in enumerate(versions.options) if label.startswith(BUILTIN))
    versions.set_value(index)
    at.radio(key="signoff_decision").set_value("rejected")
    at.text_area(key="signoff_comment").input("HD95 interval too wide for clinical use")
    next(b for b in at.button if b.label == "Record the decision").click().run()
    assert not at.exception and not at.error, texts(at.error)
    ((_, model, details),) = _events(db, "model_rejected")
    assert model == BUILTIN and json.loads(details)["version_id"] == SHA
    status = next(d.value for d in at.dataframe if {"status", "version id"} <= set(d.value.columns))
    assert status[status["model"] == BUILTIN].iloc[0]["status"] == "rejected"
    with store.open_store(db, read_only=True) as con:
        assert audit.verify(con).ok


def test_a_stored_series_3d_read_carries_the_banner_and_is_withheld_when_required(
    series_db,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    db, pid = _copy(series_db["db"], tmp_path), series_db["pid"]
    at = _stored_series(db, pid, monkeypatch)
    assert BANNER in texts(at.warning)  # not reviewed: the read is shown under the warning
    assert {m.label for m in at.metric} >= {"3D read"}
    # in the read column beside the volume, not above it (where it pushed the viewer down)
    assert BANNER in texts(_read_column(at).warning)

    _require(db)
    shown_before = len(_events(db, "ai_read_shown"))
    at = _stored_series(db, pid, monkeypatch)
    assert WITHHELD in texts(at.error)
    assert WITHHELD in texts(_read_column(at).error)  # beside the volume, in red
    assert "3D read" not in {m.label for m in at.metric}  # nothing of the read
    spec = _volume(at)  # the volume itself is still shown, without the outline
    assert spec["shape_zyx"][0] > 3 and "AI outline" not in overlay_names(spec)
    assert not [b for b in at.button if b.key == "imaging_series_saliency"]  # no 3D saliency
    assert "No 3D AI read" not in texts(at.info)  # the error says why: no second box
    assert len(_events(db, "ai_read_shown")) == shown_before  # not shown, so not audited so
    withheld = _events(db, "output_withheld")
    assert (str(pid), BUILTIN) in {(s, m) for s, m, _ in withheld}
    # the list of her series read in 3D leaves out the withheld model's reads (refusals stay)
    listed = [d.value for d in at.dataframe if "read" in d.value.columns]
    assert all(set(frame["read"]) <= {"refused"} for frame in listed), listed

    _approve(db, "0" * 64)  # approved for other weights: still withheld, and said so
    at = _stored_series(db, pid, monkeypatch)
    assert "approved for different weights" in texts(at.error)
    _approve(db)
    at = _stored_series(db, pid, monkeypatch)
    assert "brain_mets_3d" not in texts(at.error) + texts(at.warning)
    assert {m.label for m in at.metric} >= {"3D read"}
    if {m.label: m.value for m in at.metric}["3D read"] == "Lesion":
        assert overlay_names(_volume(at))["AI outline"] is True


def test_an_uploaded_series_3d_read_is_withheld_when_required(
    upload_env,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    env = {**upload_env, "db": _copy(upload_env["db"], tmp_path)}
    at = _upload(env, monkeypatch, _files(env["brain"]))
    assert BANNER in texts(at.warning) and {m.label for m in at.metric} >= {"3D read"}
    assert BANNER in texts(_read_column(at).warning)
    _require(env["db"])
    before = len(_events(env["db"], "ai_read_shown"))
    at = _upload(env, monkeypatch, _files(env["brain"]))
    assert WITHHELD in texts(at.error)
    assert WITHHELD in texts(_read_column(at).error)
    assert "3D read" not in {m.label for m in at.metric}
    assert "AI outline" not in overlay_names(_volume(at))
    assert not [b for b in at.button if b.key == "imaging_series_saliency"]
    assert len(_events(env["db"], "ai_read_shown")) == before
    assert [m for s, m, _ in _events(env["db"], "output_withheld") if m == BUILTIN]


def _enhanced(paths: list[Path]) -> bytes:
    """The series as one enhanced multi-frame MR object (highdicom's legacy conversion)."""
    dss = [pydicom.dcmread(p) for p in paths]
    multi = LegacyConvertedEnhancedMRImage(dss, generate_uid(), 900, generate_uid(), 1)
    buf = io.BytesIO()
    multi.save_as(buf)
    return buf.getvalue()


class _Upload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


def test_a_lone_enhanced_multiframe_volume_is_read_in_3d(upload_env, monkeypatch):  # noqa: F811
    data = _enhanced(upload_env["brain"])
    assert not upload_panel.is_single_file([_Upload("enhanced.dcm", data)])
    # a single 2D image stays on the 2D path
    assert upload_panel.is_single_file([_Upload("mammo.dcm", upload_env["mammo"].read_bytes())])
    at = _upload(upload_env, monkeypatch, [("enhanced.dcm", data, "application/dicom")])
    pick = at.selectbox(key="imaging_upload_pick")
    n = len(upload_env["brain"])
    assert pick.options == [pick.options[0]] and pick.options[0].startswith(
        f"series of {n} images (3D) · MR"
    )
    assert _volume(at)["shape_zyx"][0] == n
    assert {m.label: m.value for m in at.metric}["3D read"] == "Lesion"
    assert "Most likely" not in {m.label for m in at.metric}  # no 2D read of a frame


def _broken_name(path: Path) -> bytes:
    """``path`` with its PatientName written as a 3-byte US element: a real damaged header, on
    which pydicom raises its own ``BytesLengthException`` (not a ``DicomReadError``) when the
    identity check reads the name."""
    ds = pydicom.dcmread(path)
    ds.PatientName = "X"
    buf = io.BytesIO()
    ds.save_as(buf)
    element = b"\x10\x00\x10\x00PN\x02\x00X "
    assert buf.getvalue().count(element) == 1
    return buf.getvalue().replace(element, b"\x10\x00\x10\x00US\x03\x00abc")


def test_a_file_whose_identifiers_cannot_be_read_is_listed_and_events_share_the_upload_id(
    upload_env,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """Found in review: the identity check caught DicomReadError only, so another error of the
    reader on one file was a traceback. That file is now listed with its reason and left out; the
    rest is checked, confirmed and shown, and both audit events carry the upload's id."""
    env = {**upload_env, "db": _copy(upload_env["db"], tmp_path)}
    files = [*_files(env["brain"]), ("broken.dcm", _broken_name(env["mammo"]), "application/dicom")]
    at = _upload(env, monkeypatch, files, patient=str(env["pid"]))
    n = len(env["brain"])
    assert f"patient id ({n} of {n} files)" in texts(at.error)  # the broken one is not counted
    [box] = [
        c
        for c in at.checkbox
        if c.label == f"I have checked: these {n} files belong to the open patient"
    ]
    box.check().run()
    assert not at.exception, at.exception
    assert "1 file(s) not read" in texts(at.warning)
    listed = texts(at.markdown).replace("\\", "")  # the list escapes Markdown's characters
    assert "broken.dcm: damaged DICOM file (BytesLengthException)" in listed
    assert "could not be checked against the open patient" in listed
    pick = at.selectbox(key="imaging_upload_pick")
    assert len(pick.options) == 1 and "(3D)" in pick.options[0]  # the broken file is not offered
    ((_, _, override),) = _events(env["db"], "upload_identity_override")
    shown = [json.loads(d) for _, m, d in _events(env["db"], "ai_read_shown") if m == BUILTIN]
    upload_id = json.loads(override)["upload_id"]
    assert len(upload_id) == 64 and shown[-1]["upload_id"] == upload_id
    assert "SOMEONE-ELSE" not in override + json.dumps(shown)


def test_a_single_file_whose_identifiers_cannot_be_read_is_a_message(upload_env, monkeypatch):  # noqa: F811
    at = _upload(
        upload_env,
        monkeypatch,
        [("broken.dcm", _broken_name(upload_env["mammo"]), "application/dicom")],
        patient=str(upload_env["pid"]),
    )
    assert "damaged DICOM file (BytesLengthException)" in texts(at.error)
    assert not viewers(at)


def _what_changed(fixture: dict, folder: Path, monkeypatch, *steps) -> tuple[str, str]:
    """The Patient page's "what changed" box on a first visit (a fresh copy: a visit is a look,
    after which the read is no longer new), after ``steps`` on the copy: its lines and captions."""
    folder.mkdir()
    db = _copy(fixture["db"], folder)
    with store.open_store(db) as con:  # read within the 90 days before the data's "today"
        con.execute("UPDATE ai_volume_read SET read_at = TIMESTAMP '2026-06-01 09:00'")
    for step in steps:
        step(db)
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    at = open_page("patient", patient=str(fixture["pid"]))
    assert not at.exception, at.exception
    return texts(at.markdown), texts(at.caption)


def test_the_patient_pages_what_changed_box_gates_the_3d_read_as_the_imaging_page_does(
    series_db,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """Review finding (fixgate): the box listed the 3D read's label and mL whatever the sign-off
    said. Not reviewed: listed, marked not approved; required: left out, and said so; approved
    (these weights) and required: listed without the mark."""
    lines, _ = _what_changed(series_db, tmp_path / "a", monkeypatch)
    (read,) = [line for line in lines.splitlines() if "3D AI read" in line]
    assert BUILTIN in read and "(model version not approved by the ethics board)" in read

    lines, captions = _what_changed(series_db, tmp_path / "b", monkeypatch, _require)
    assert "3D AI read" not in lines and " mL" not in lines
    assert "1 AI read not shown: the ethics board has not approved" in captions

    lines, captions = _what_changed(series_db, tmp_path / "c", monkeypatch, _require, _approve)
    (read,) = [line for line in lines.splitlines() if "3D AI read" in line]
    assert "not approved" not in read and "not shown" not in captions
