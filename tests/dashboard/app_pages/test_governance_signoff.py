"""Sign-off in the app (AppTest): the Lineage, Sign-off and Drift tabs, a board member's decision,
the admin's setting, the banner on the Patient and Imaging pages and in the report, withholding."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.uid import generate_uid
from pypdf import PdfReader

from analytics import store
from analytics.governance import audit, users
from analytics.governance.lifecycle import approvals
from analytics.imaging.ingest import ingest_files
from dashboard.services import lifecycle
from dashboard.services.report import report_bytes
from models.inference.loader import ModelLoader
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def signoff_db(demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo store with its clinic model and one ingested brain slice."""
    folder = tmp_path_factory.mktemp("signoff_app")
    db = Path(shutil.copy(demo_db, folder / "clinic.duckdb"))
    card = trained_demo(db, bootstrap=2, folds=2)
    with store.open_store(db, read_only=True) as con:
        brain_pid, brain_mrn = con.execute(
            "SELECT person_id, mrn FROM person ORDER BY person_id DESC LIMIT 1"
        ).fetchone()
        patient = con.execute(
            "SELECT min(person_id) FROM cohort_base WHERE NOT event AND diagnosis_date > "
            "(SELECT max(diagnosis_date) FROM cohort_base) - INTERVAL 3 YEAR"
        ).fetchall()[0][0]
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(5), True, lesion_diameter_mm=26.0),
        folder / "brain.dcm",
        patient_id=brain_mrn,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240105",
    )
    assert len(ingest_files(db, [folder / "brain.dcm"], ModelLoader()).stored) == 1
    return {
        "db": db,
        "version": card["version"],
        "patient": int(patient),
        "brain": int(brain_pid),
    }


@pytest.fixture
def env(signoff_db, monkeypatch, tmp_path) -> dict:
    """A fresh copy per test (decisions and the setting change the store), with its model folder."""
    db = Path(shutil.copy(signoff_db["db"], tmp_path / "clinic.duckdb"))
    shutil.copytree(signoff_db["db"].with_name("clinic_models"), tmp_path / "clinic_models")
    images = signoff_db["db"].with_name("clinic_images")
    shutil.copytree(images, tmp_path / "clinic_images")
    with store.open_store(db) as con:  # the rows point at the copied images
        con.execute(
            "UPDATE imaging_instance SET file_path = replace(file_path, ?, ?)",
            [str(images), str(tmp_path / "clinic_images")],
        )
        # decisions and the setting need active accounts with the stored role (not a claim)
        users.add_user(con, "board-test", "ethics_board", password="board-test-password-1")
        users.add_user(con, "admin-test", "admin", password="admin-test-password-1")
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    return {**signoff_db, "db": db}


def _account(db: Path, role: str) -> None:
    """The AppTest session's user (``demo-user``) as a stored account with ``role``."""
    with store.open_store(db) as con:
        users.add_user(con, "demo-user", role, password="demo-user-password-1")


def _sha(db: Path, name: str, version: str) -> str:
    """The weights' sha256 of the current card of this model version (what a decision binds to)."""
    found = lifecycle.version_ids(db)[(name, version)]
    assert found
    return found


def _decide(db: Path, name: str, version: str, decision: str = "approved") -> None:
    with store.open_store(db) as con:
        approvals.decide(
            con,
            model_name=name,
            model_version=version,
            version_id=_sha(db, name, version),
            decision=decision,
            comment="reviewed",
            actor="board-test",
            role="ethics_board",
        )


def _require(db: Path, value: bool = True) -> None:
    with store.open_store(db) as con:
        approvals.set_require_approval(con, value, actor="admin-test", role="admin")


def test_lineage_signoff_and_drift_tabs_for_the_board(env):
    _account(env["db"], "ethics_board")
    # only the open tab is computed (issue 23): each opened by its link (?tab=...)
    lineage = open_page("governance", role="ethics_board", tab="Lineage")
    drift = open_page("governance", role="ethics_board", tab="Drift")
    at = open_page("governance", role="ethics_board", tab="Sign-off")
    for page in (lineage, drift, at):
        assert not page.exception, page.exception
    frames = [d.value for d in lineage.dataframe]
    registry = next(f for f in frames if "version id (sha256 of weights)" in f.columns)
    assert {"mammography", "brain_mri", "treatment", "forecast"} <= set(registry["model"])
    counts = next(f for f in frames if {"table", "rows"} <= set(f.columns))
    assert not {"app_secret", "sign_in_throttle", "app_user"} & set(counts["table"])
    status = next(d.value for d in at.dataframe if {"status", "version id"} <= set(d.value.columns))
    assert set(status["status"]) == {"not reviewed"}
    assert {"Tests run", "Alerts"} <= {m.label for m in drift.metric}
    assert "PSI > 0.2" in texts(drift.caption) and "Kolmogorov" not in texts(drift.error)
    assert not [m for m in at.metric if m.label == "Tests run"]  # the drift tab did not run
    # a new window (the drift tab is a fragment; the clinic model's part cached apart): the same
    # reports as the CLI's ``lifecycle.drift`` for that window, in one call
    from analytics.governance.lifecycle import drift_data

    for window in ("year", "month"):
        drift.button_group(key="drift_freq").set_value(window).run()
        assert not drift.exception, drift.exception
        reports, _ = lifecycle.drift(env["db"], window)
        expected = sum(r.tests_run for r in reports if r.monitored != drift_data.IN_SAMPLE)
        shown = next(m for m in drift.metric if m.label == "Tests run")
        assert int(str(shown.value).replace(",", "")) == expected
        # every report's figures per window, as the CLI computes them for this window
        tables = [r.rows for r in reports if r.tests_run and not r.rows.empty]
        frames = [d.value for d in drift.dataframe][-len(tables) :] if tables else []
        assert len(frames) == len(tables)
        for frame, table in zip(frames, tables, strict=True):
            pd.testing.assert_frame_equal(
                frame.reset_index(drop=True), table.reset_index(drop=True)
            )
    # a decision through the form: a chained event, shown in the status table
    versions = at.selectbox(key="signoff_version")
    # AppTest lists the formatted labels; the widget's value is the index
    index = next(i for i, label in enumerate(versions.options) if label.startswith("treatment"))
    versions.set_value(index)
    at.radio(key="signoff_decision").set_value("rejected")
    at.text_area(key="signoff_comment").input("calibration table sign disagrees; explain first")
    next(b for b in at.button if b.label == "Record the decision").click().run()
    assert not at.exception and not at.error, texts(at.error)
    with store.open_store(env["db"], read_only=True) as con:
        sha = _sha(env["db"], "treatment", env["version"])
        status = approvals.approval(con, "treatment", env["version"], sha)
        assert status.status == "rejected" and status.decided_by == "demo-user"
        assert audit.verify(con).ok


def test_the_form_refuses_an_empty_comment_and_other_roles_see_no_form(env):
    _account(env["db"], "ethics_board")
    at = open_page("governance", role="ethics_board", tab="Sign-off")
    next(b for b in at.button if b.label == "Record the decision").click().run()
    assert "needs a comment" in texts(at.error)
    with store.open_store(env["db"]) as con:  # the same user, now an administrator
        con.execute("UPDATE app_user SET role = 'admin' WHERE username = 'demo-user'")
    admin = open_page("governance", role="admin", tab="Sign-off")
    assert not [b for b in admin.button if b.label == "Record the decision"]
    assert "Members of the ethics board record" in texts(admin.info)


def test_the_admin_requires_approval_and_it_is_audited(env):
    _account(env["db"], "admin")
    at = open_page("governance", role="admin", tab="Sign-off")
    at.toggle(key="signoff_require").set_value(True).run()
    assert not at.exception
    with store.open_store(env["db"], read_only=True) as con:
        assert approvals.require_approval(con)
        assert (
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'setting_changed' AND actor = 'demo-user'"
            ).fetchall()[0][0]
            == 1
        )


def test_patient_page_banner_then_nothing_once_approved_then_withheld_when_required(env):
    at = open_page("patient", role="oncologist", patient=str(env["patient"]))
    assert not at.exception
    warnings = texts(at.warning)
    assert f"The treatment model (version {env['version']}) has not been approved" in warnings
    assert f"The forecast model (version {env['version']}) has not been approved" in warnings
    _decide(env["db"], "treatment", env["version"])
    at = open_page("patient", role="oncologist", patient=str(env["patient"]))
    assert "The treatment model (" not in texts(at.warning)
    assert "The forecast model (" in texts(at.warning)  # approval is per model
    _require(env["db"])
    at = open_page("patient", role="oncologist", patient=str(env["patient"]))
    assert not at.exception
    errors = texts(at.error)
    assert "Output withheld: the forecast model" in errors and "treatment" not in errors
    _decide(env["db"], "treatment", env["version"], "rejected")
    at = open_page("patient", role="oncologist", patient=str(env["patient"]))
    assert "Output withheld: the treatment model" in texts(at.error)
    assert not [b for b in at.button if b.label.startswith("Accept")]  # no decision form either
    with store.open_store(env["db"], read_only=True) as con:
        assert (
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'output_withheld'"
            ).fetchall()[0][0]
            >= 2
        )


def test_imaging_read_banner_and_withholding(env):
    at = open_page("imaging", patient=str(env["brain"]))
    assert not at.exception
    assert "The brain_mri model (version 1.0.0) has not been approved" in texts(at.warning)
    assert {m.label: m.value for m in at.metric}["Most likely"] == "Tumour"
    _require(env["db"])
    at = open_page("imaging", patient=str(env["brain"]))
    assert not at.exception
    assert "Output withheld: the brain_mri model (version 1.0.0)" in texts(at.error)
    assert "Most likely" not in {m.label for m in at.metric}
    _decide(env["db"], "brain_mri", "1.0.0")
    at = open_page("imaging", patient=str(env["brain"]))
    assert "brain_mri" not in texts(at.error) + texts(at.warning)
    assert {m.label: m.value for m in at.metric}["Most likely"] == "Tumour"


def _pdf_text(pdf: bytes) -> str:
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return " ".join(text.split())  # justified lines: single spaces


def test_the_report_carries_the_banner_and_withholds(env):
    pid = env["patient"]
    text = _pdf_text(
        report_bytes(env["db"], pid, include_names=False, actor="dr", role="oncologist")
    )
    assert "Ethics-board sign-off: The forecast model" in text
    assert "has not been approved by the ethics board" in text
    _require(env["db"])
    _decide(env["db"], "forecast", env["version"])
    text = _pdf_text(
        report_bytes(env["db"], pid, include_names=False, actor="dr", role="oncologist")
    )
    assert "Output withheld: the treatment model" in text
    assert "SHAP waterfall" not in text  # no recommendation drawn


def test_worklist_and_cohorts_carry_the_banner_and_withhold_the_models_output(env):
    """The worklist's forecast risk and the Cohorts page's treatment summary are model output too: a
    banner while the version is not approved; when approval is required, the risk column and the
    by-risk reasons read "withheld" (act now and due need no model) and the summary is not drawn."""
    from analytics.worklist import stored  # here: only this test ranks the worklist

    with store.open_store(env["db"]) as con:
        stored.refresh(con, stored.clinic_model(env["db"]))
    at = open_page("worklist", role="care_team")
    assert not at.exception
    assert f"The forecast model (version {env['version']}) has not been approved" in texts(
        at.warning
    )
    table = at.dataframe[0].value
    assert table["6-mo risk"].str.endswith("%").any()
    cohorts = open_page("cohorts", role="oncologist", tab="Treatment model")
    assert f"The treatment model (version {env['version']}) has not been approved" in texts(
        cohorts.warning
    )
    _require(env["db"])
    at = open_page("worklist", role="care_team")
    assert not at.exception
    assert "Output withheld: the forecast model" in texts(at.error)
    table = at.dataframe[0].value
    assert set(table["6-mo risk"]) == {"withheld"}
    by_risk = table[table["Bucket"] == "By risk"]
    assert (
        len(by_risk)
        and by_risk["Reason"]
        .str.startswith(
            "Forecast risk withheld: its model version is not approved (listed by next imaging due)"
        )
        .all()
    )
    assert "by risk* is listed by next imaging due date (soonest first)" in texts(at.caption)
    # the imaging models are not approved either: their reads are withheld, and the page says so
    assert "not approved by the ethics board for the weights in use" in texts(at.error)
    cohorts = open_page("cohorts", role="oncologist", tab="Treatment model")
    assert "Output withheld: the treatment model" in texts(cohorts.error)
