"""The Imaging page's upload of several files or a zip (issue 21 item 1): a brain MR series uploaded
slice by slice or zipped is one 3D read (de-identified first, audited, nothing stored), a broken
series beside it is listed with its reason, a 2D image beside it keeps its 2D read, the identity
check covers every file, and bad uploads (junk, an empty zip, a zip bomb) are messages."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from analytics import store
from models.training import synthetic as phantoms2d
from models.training.synthetic_dicom import write_phantom_dicom
from models.volumes import phantoms
from models.volumes.write import SeriesHeader, write_series
from tests.dashboard.app_pages.test_imaging_page import overlay_names, viewers
from tests.dashboard.app_pages.test_pages import open_page, shown

pytestmark = pytest.mark.filterwarnings("ignore")
DICOM = "application/dicom"


def _series(folder: Path, patient_id: str, values: np.ndarray, vol=None, **kw) -> list[Path]:
    header = SeriesHeader(
        "MR", patient_id, "UPLOAD^TEST", generate_uid(), generate_uid(), generate_uid(),
        dt.date(2026, 1, 5), "BRAIN", "brain mr", "axial t1 post",
    )  # fmt: skip
    return write_series(
        values,
        folder,
        header,
        origin_lps=vol.origin_lps if vol is not None else (0.0, 0.0, 0.0),
        pixel_spacing=(vol.spacing_mm[1], vol.spacing_mm[2]) if vol is not None else (2.0, 2.0),
        slice_spacing=vol.spacing_mm[0] if vol is not None else 3.0,
        **kw,
    )


@pytest.fixture(scope="module")
def upload_env(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the demo store, a held-out brain MR series with a 26 mm metastasis (the size the
    card says the model finds), a series with a missing slice, a mammogram and a text file."""
    folder = tmp_path_factory.mktemp("upload3d")
    db = Path(shutil.copy(demo_db, folder / "clinic.duckdb"))
    with store.open_store(db, read_only=True) as con:
        pid, mrn = con.execute(
            "SELECT person_id, mrn FROM person ORDER BY person_id LIMIT 1"
        ).fetchone()
    rng = np.random.default_rng([4242, 1])  # the seed stream of tests/models/volumes' brain_volume
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 26.0), 26.0)
    brain = _series(folder / "brain", "SOMEONE-ELSE", vol.values, vol)
    gap = _series(folder / "gap", "SOMEONE-ELSE", np.full((6, 32, 32), 300, np.int16))
    gap[3].unlink()  # a missing slice: refused with the reason, never read
    mammo = write_phantom_dicom(
        phantoms2d.mammogram(np.random.default_rng(3), "normal"),
        folder / "mammo.dcm",
        patient_id="SOMEONE-ELSE",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240105",
    )
    return {
        "db": db,
        "pid": int(pid),
        "mrn": str(mrn),
        "brain": brain,
        "gap": [p for p in gap if p.exists()],
        "mammo": mammo,
    }


def _files(paths: list[Path]) -> list[tuple[str, bytes, str]]:
    return [(p.name, p.read_bytes(), DICOM) for p in paths]


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _upload(env: dict, monkeypatch, files, **query: str):
    monkeypatch.setenv("ONCOLENS_DB", str(env["db"]))
    at = open_page("imaging", **query)
    at.selectbox(key="imaging_source").set_value(-1).run()
    at.file_uploader(key="imaging_upload").set_value(files).run()
    assert not at.exception, at.exception
    return at


def _counts(db: Path) -> tuple[int, int, int]:
    with store.open_store(db, read_only=True) as con:
        return (
            con.execute("SELECT count(*) FROM imaging_instance").fetchone()[0],
            con.execute("SELECT count(*) FROM ai_volume_read").fetchone()[0],
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action IN ('ai_read_shown', 'ai_read_refused') "
                "AND details LIKE '%upload%'"
            ).fetchone()[0],
        )


def test_a_series_uploaded_file_by_file_is_one_3d_read_audited_and_not_stored(
    upload_env, monkeypatch
):
    before = _counts(upload_env["db"])
    junk = ("notes.txt", b"not a DICOM file at all", "text/plain")
    at = _upload(
        upload_env,
        monkeypatch,
        [*_files(upload_env["brain"]), *_files([upload_env["mammo"]]), junk],
    )
    pick = at.selectbox(key="imaging_upload_pick")
    assert len(pick.options) == 2, pick.options  # one volume, one 2D image: never 94 slices
    assert pick.options[0].startswith(f"series of {len(upload_env['brain'])} images (3D) · MR")
    assert "(2D)" in pick.options[1]
    # de-identified before display, and said so for the whole upload
    assert f"{len(upload_env['brain']) + 1} file(s) de-identified before display" in shown(
        at.success
    )
    assert "Nothing is stored unless you ingest" in shown(at.success)
    # the 3D read, exactly as a stored series shows it
    (spec,) = [s for s in viewers(at) if s["is_volume"]]
    assert spec["shape_zyx"][0] == len(upload_env["brain"]) and spec["orientation_known"]
    assert {m.label: m.value for m in at.metric}["3D read"] == "Lesion"
    assert overlay_names(spec)["AI outline"] is True
    assert "not a medical device" in shown(at.caption)
    assert "input check" in shown(at.caption)
    assert "Grad-CAM 3D verdict" in shown(at.success) + shown(at.warning)
    # the junk is listed with its reason, the rest is shown
    assert "1 file(s) not read" in shown(at.warning)
    assert "notes.txt: not a DICOM file" in shown(at.markdown)
    # the saliency map on request, from the uploaded volume
    at.button(key="imaging_series_saliency").click().run()
    assert not at.exception, at.exception
    (spec,) = [s for s in viewers(at) if s["is_volume"]]
    assert "Saliency (Grad-CAM 3D)" in overlay_names(spec)
    # audited once (hash of the de-identified series), nothing filed in the store
    after = _counts(upload_env["db"])
    assert after[:2] == before[:2], "an upload is not stored"
    assert after[2] == before[2] + 1
    with store.open_store(upload_env["db"], read_only=True) as con:
        model, sha, details = con.execute(
            "SELECT model_name, inputs_sha256, details FROM audit_event "
            "WHERE details LIKE '%upload%' ORDER BY occurred_at DESC LIMIT 1"
        ).fetchone()
    assert model == "brain_mets_3d" and len(sha) == 64 and '"kind":"volume"' in details
    # the 2D image beside it keeps its 2D read
    at.selectbox(key="imaging_upload_pick").set_value(-1).run()
    assert not at.exception, at.exception
    assert "Most likely" in {m.label for m in at.metric}
    assert not [s for s in viewers(at) if s["is_volume"]]


def test_a_zip_with_a_broken_series_shows_the_good_one_and_lists_the_broken_one(
    upload_env, monkeypatch
):
    archive = _zip(
        {f"study/brain/{p.name}": p.read_bytes() for p in upload_env["brain"]}
        | {f"study/gap/{p.name}": p.read_bytes() for p in upload_env["gap"]}
        | {"study/README.txt": b"hello"}
    )
    at = _upload(upload_env, monkeypatch, ("study.zip", archive, "application/zip"))
    pick = at.selectbox(key="imaging_upload_pick")
    assert len(pick.options) == 1 and "(3D)" in pick.options[0]
    warning = shown(at.warning)
    assert "1 series refused and 1 file(s) not read" in warning
    listed = shown(at.markdown)
    assert "incomplete series" in listed and "study.zip › " in listed  # the reason and where
    assert "README.txt: not a DICOM file" in listed
    assert "study/" not in listed  # folders inside the archive are never shown (names of people)
    assert {m.label: m.value for m in at.metric}["3D read"] == "Lesion"


def test_a_zip_holding_only_a_refused_series_is_a_message_listing_why(upload_env, monkeypatch):
    """Found in review: nothing to pick (every series refused) ended in StopIteration. Now an error
    says so and the list says why; the archive's folder (named after the patient, as exports do)
    is not shown, nor is anything rendered as Markdown from the names."""
    archive = _zip({f"DOE^JANE [x](http://a)/{p.name}": p.read_bytes() for p in upload_env["gap"]})
    at = _upload(upload_env, monkeypatch, ("export.zip", archive, "application/zip"))
    assert "Nothing in this upload can be shown: 1 series refused" in shown(at.error)
    listed = shown(at.markdown)
    assert "incomplete series" in listed and "export.zip › " in listed
    assert "DOE" not in listed + shown(at.error) and "http://a" not in listed
    assert not viewers(at) and not [s for s in at.selectbox if s.key == "imaging_upload_pick"]


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        (
            "empty.zip",
            lambda env: _zip({}),
            "holds no file to read (empty.zip: an empty zip archive)",
        ),
        (
            "bomb.zip",
            lambda env: _zip({"a.dcm": bytes(64 << 20)}),  # 64 MiB of zeros: about 1000 to 1
            "refused as a possible zip bomb",
        ),
        ("junk.zip", lambda env: _zip({"a.txt": b"x", "b.bin": b"\x00" * 300}), "No DICOM image"),
    ],
)
def test_bad_uploads_are_a_message_never_a_traceback(upload_env, monkeypatch, name, make, message):
    at = _upload(upload_env, monkeypatch, (name, make(upload_env), "application/zip"))
    assert message in shown(at.error)
    assert not viewers(at)


def test_several_junk_files_are_a_message(upload_env, monkeypatch):
    at = _upload(
        upload_env, monkeypatch, [("a.txt", b"a", "text/plain"), ("b.txt", b"", "text/plain")]
    )
    error = shown(at.error)
    assert "No DICOM image in this upload" in error and "a.txt: not a DICOM file" in error
    assert "b.txt: an empty file" in error


def test_every_file_of_the_upload_is_checked_against_the_open_patient(upload_env, monkeypatch):
    """The series carries another patient id: nothing is de-identified, read or shown until the
    user confirms; the confirmation is audited with the field names and counts only."""
    at = _upload(
        upload_env, monkeypatch, _files(upload_env["brain"]), patient=str(upload_env["pid"])
    )
    error = shown(at.error)
    n = len(upload_env["brain"])
    assert f"Some or all of the {n} files of this upload may belong to another patient" in error
    assert f"patient id ({n} of {n} files)" in error and "None of them is shown or read" in error
    assert "This file" not in error  # the wording of one file, not of a series
    assert not viewers(at) and not [s for s in at.selectbox if s.key == "imaging_upload_pick"]
    [box] = [
        c
        for c in at.checkbox
        if c.label == f"I have checked: these {n} files belong to the open patient"
    ]
    box.check().run()
    assert not at.exception, at.exception
    assert [s for s in viewers(at) if s["is_volume"]]
    with store.open_store(upload_env["db"], read_only=True) as con:
        subject, details = con.execute(
            "SELECT subject, details FROM audit_event WHERE action = 'upload_identity_override' "
            "ORDER BY occurred_at DESC LIMIT 1"
        ).fetchone()
    assert subject == str(upload_env["pid"]) and f"({n} of {n} files)" in details
    assert "SOMEONE-ELSE" not in details


def test_a_volume_the_model_cannot_read_is_shown_with_the_reason(upload_env, tmp_path, monkeypatch):
    """An oblique MR stack: a volume by the rule, but the 3D model reads axis-aligned volumes only;
    the volume is shown with why there is no read, never a traceback."""
    tilt = (1.0, 0.0, 0.0, 0.0, float(np.cos(0.3)), float(np.sin(0.3)))
    values = np.random.default_rng(9).integers(0, 900, (8, 32, 32)).astype(np.int16)
    oblique = _series(tmp_path / "oblique", "SOMEONE-ELSE", values, orientation=tilt)
    at = _upload(upload_env, monkeypatch, _files(oblique))
    assert "reads axis-aligned volumes" in shown(at.info)
    assert [s for s in viewers(at) if s["is_volume"]]
    assert not [m for m in at.metric if m.label == "3D read"]


def test_a_series_that_lost_an_end_slice_to_the_identity_check_is_not_read_in_3d(
    upload_env, monkeypatch
):
    """Found in review: a slice whose identifiers cannot be read is left out; at an end of the
    stack no gap shows, so the series was read in 3D one slice short, silently. Now the series is
    refused with the reason naming the file (as ``oncolens ingest`` refuses a crashed slice's
    series); the 2D image beside it is still read."""
    brain = sorted(
        upload_env["brain"], key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    end = brain[-1]
    ds = pydicom.dcmread(end)
    ds.PatientName = "X"
    buf = io.BytesIO()
    ds.save_as(buf)
    element = b"\x10\x00\x10\x00PN\x02\x00X "
    assert buf.getvalue().count(element) == 1
    broken = buf.getvalue().replace(element, b"\x10\x00\x10\x00US\x03\x00abc")  # pydicom raises
    files = [*_files(brain[:-1]), (end.name, broken, DICOM), *_files([upload_env["mammo"]])]
    at = _upload(upload_env, monkeypatch, files, patient=str(upload_env["pid"]))
    kept = len(files) - 1  # the broken file is left out, not confirmed
    [box] = [
        c
        for c in at.checkbox
        if c.label == f"I have checked: these {kept} files belong to the open patient"
    ]
    box.check().run()
    assert not at.exception, at.exception
    pick = at.selectbox(key="imaging_upload_pick")
    assert len(pick.options) == 1 and "(2D)" in pick.options[0], pick.options  # no 3D read
    assert not [s for s in viewers(at) if s["is_volume"]]
    assert "1 series refused and 1 file(s) not read" in shown(at.warning)
    listed = shown(at.markdown).replace("\\", "")  # the list escapes Markdown's characters
    n = len(brain)
    assert f"incomplete series: 1 of its {n} images could not be read" in listed
    assert f"could not be checked: {end.name}" in listed and "not read in 3D" in listed
    assert f"{end.name}: damaged DICOM file" in listed
