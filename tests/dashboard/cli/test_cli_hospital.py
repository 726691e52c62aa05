"""`oncolens ingest --dicomweb` against a real Orthanc (pull, de-identify, file, send SEG/SR back), and
`oncolens report` (the PDF's sections, pseudonyms, audit, unknown patient)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from pypdf import PdfReader

from analytics import store
from dashboard.cli.main import main
from dashboard.figures import formats
from dashboard.figures import static as static_figures
from dashboard.services.report_data import DISCLAIMER, SECTIONS
from models import pacs
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom


def oncolens(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dashboard.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture
def store_copy(demo_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clinic.duckdb"
    shutil.copyfile(demo_db, path)
    models = demo_db.with_name(f"{demo_db.stem}_models")
    if models.exists():
        shutil.copytree(models, tmp_path / "clinic_models")
    return path


def _patient(db: Path) -> tuple[int, str, str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            # early disease without recurrence: the treatment model's scope (issue 17)
            "SELECT person_id, mrn, family_name FROM person "
            "WHERE person_id NOT IN (SELECT person_id FROM outcome_event) ORDER BY person_id LIMIT 1"
        ).fetchone()
    finally:
        con.close()


def _mammogram(path: Path, mrn: str, accession: str) -> Path:
    ph = phantoms.mammogram(np.random.default_rng(11), "malignant", lesion_diameter_mm=25.0)
    return write_phantom_dicom(
        ph,
        path,
        patient_id=mrn,
        patient_name="Real^Name",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240301",
        accession_number=accession,
    )


def _corrupt(source: Path, mrn: str) -> bytes:
    """Valid header, pixel data cut to a third: Orthanc stores it, a reader must refuse it."""
    ds = pydicom.dcmread(source)
    ds.PatientID = mrn
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _env(orthanc, password: str | None = None) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCOLENS_PACS_")}
    env[pacs.ENV_USER] = orthanc.username
    env[pacs.ENV_PASSWORD] = orthanc.password if password is None else password
    return env


def test_ingest_from_pacs_files_deidentified_and_sends_results_back(orthanc, store_copy, tmp_path):
    import requests

    person_id, mrn, family = _patient(store_copy)
    good = pydicom.dcmread(_mammogram(tmp_path / "good.dcm", mrn, "ACC-GOOD"))
    broken = _corrupt(tmp_path / "good.dcm", mrn)
    stranger = pydicom.dcmread(_mammogram(tmp_path / "stranger.dcm", "NOT-IN-STORE", "ACC-X"))
    client = pacs.connect(pacs.PacsConfig(orthanc.dicomweb, orthanc.username, orthanc.password))
    pacs.store_datasets(client, [good])
    pacs.store_datasets(client, [stranger])
    requests.post(
        f"{orthanc.url}/instances",
        data=broken,
        auth=(orthanc.username, orthanc.password),
        timeout=10,
    ).raise_for_status()
    broken_study = str(pydicom.dcmread(__import__("io").BytesIO(broken)).StudyInstanceUID)
    missing = generate_uid()

    r = oncolens(
        "ingest",
        "--dicomweb",
        orthanc.dicomweb,
        "--db",
        str(store_copy),
        "--send-results",
        "--study",
        str(good.StudyInstanceUID),
        "--study",
        broken_study,
        "--study",
        missing,
        "--study",
        str(stranger.StudyInstanceUID),
        env=_env(orthanc),
    )
    assert r.returncode == 1, r.stderr  # some inputs failed ...
    assert "Traceback" not in r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    stored = [e for e in lines if "error" not in e]
    failed = [e for e in lines if "error" in e]
    assert len(stored) == 1  # ... and the good one was still filed
    entry = stored[0]
    assert entry["person_id"] == person_id and entry["ai"]["label"]
    assert entry["deidentification"] and "sent" in entry, entry
    kept = pydicom.dcmread(entry["stored_file"])  # only a de-identified copy stays
    assert kept.PatientID == str(person_id) and str(kept.PatientName) != "Real^Name"
    assert family not in Path(entry["stored_file"]).read_bytes().decode("latin-1")
    errors = " | ".join(e["error"] for e in failed)
    assert len(failed) == 3 and "not on the PACS" in errors and "not in the store" in errors
    assert any(e["pacs"].get("study_uid") == broken_study for e in failed)

    # the SEG and SR are on the PACS, in the hospital's own study, readable
    study = str(good.StudyInstanceUID)
    series = client.search_for_series(study_instance_uid=study)
    modalities = sorted(s["00080060"]["Value"][0] for s in series)
    assert modalities == ["MG", "SEG", "SR"]
    sr = client.retrieve_instance(
        study,
        entry["sent"]["report_uid"]
        and next(s["0020000E"]["Value"][0] for s in series if s["00080060"]["Value"][0] == "SR"),
        entry["sent"]["report_uid"],
    )
    from models.dicom.results import read_report

    assert read_report(sr)["finding"] == entry["ai"]["label"]
    con = duckdb.connect(str(store_copy), read_only=True)
    try:
        sent = con.execute(
            "SELECT count(*) FROM audit_event WHERE action = 'ai_results_sent'"
        ).fetchone()[0]
    finally:
        con.close()
    assert sent == 1


def test_ingest_from_pacs_refuses_wrong_credentials_and_unreachable(
    orthanc, store_copy, capsys, monkeypatch
):
    """Each refusal is one line and exit status 1, nothing written. The first runs as a user runs
    it (a process of its own: no traceback reaches the shell); the others call the same ``main``
    in this process (a CLI start is ~4 CPU-s, and what they check is the message and the code)."""
    before = store_copy.read_bytes()
    r = oncolens(
        "ingest",
        "--dicomweb",
        orthanc.dicomweb,
        "--db",
        str(store_copy),
        "--study",
        generate_uid(),
        env=_env(orthanc, password="wrong"),
    )
    assert (
        r.returncode == 1 and "refused the credentials" in r.stderr and "Traceback" not in r.stderr
    )
    assert "wrong" not in r.stderr
    monkeypatch.setenv(pacs.ENV_USER, orthanc.username)
    monkeypatch.setenv(pacs.ENV_PASSWORD, orthanc.password)
    unreachable = ["--dicomweb", "http://127.0.0.1:9/dicom-web", "--study", generate_uid()]
    assert main(["ingest", *unreachable, "--db", str(store_copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the PACS" in err[0]
    assert main(["ingest", "--dicomweb", orthanc.dicomweb, "--db", str(store_copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not pull a whole archive" in err[0]
    assert store_copy.read_bytes() == before  # nothing written


@pytest.fixture(scope="module")
def report_store(
    demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int]:
    """The demo store with a treatment model (4 refits: fast) and one ingested mammogram of a patient."""
    from analytics.imaging.ingest import ingest_files
    from models.inference.loader import ModelLoader

    folder = tmp_path_factory.mktemp("report")
    path = folder / "clinic.duckdb"
    shutil.copyfile(demo_db, path)
    trained_demo(path, bootstrap=4)
    person_id, mrn, _ = _patient(path)
    report = ingest_files(path, [_mammogram(folder / "mg.dcm", mrn, "ACC-R")], ModelLoader())
    assert report.stored and not report.failed
    return path, person_id


def test_report_pdf_has_every_section_pseudonymised_and_audited(report_store, tmp_path, capsys):
    """Both reports call the CLI's ``main`` in this process: a CLI start is ~4 CPU-s of imports
    (torch, xgboost, scikit-learn) that this process has made; running as a user runs it, a
    process of its own with no traceback, is ``test_report_for_unknown_patient_writes_nothing``'s."""
    store_copy, person_id = report_store
    _, mrn, family = _patient(store_copy)
    out = tmp_path / "board" / "report.pdf"
    code = main(["report", str(person_id), "--db", str(store_copy), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = "\n".join(page.extract_text() for page in PdfReader(out).pages)
    flat = " ".join(text.split())
    for heading in SECTIONS:
        if heading == "Treatment recommendation":  # "Treatment options" when none is clearly better
            assert heading in text or "Treatment options" in text
            continue
        assert heading in text, heading
    assert " ".join(DISCLAIMER.split()) in flat
    assert (
        "P-" in text and mrn not in text and family.upper() not in text
    )  # pseudonymised by default
    assert "mammography" in text and "Grad-CAM" in flat and "stored" in text  # the ingested AI read
    assert "Why" in flat or "SHAP" in flat  # the waterfall's section text
    assert "No recommendation available" not in flat
    summary = json.loads(captured.out)
    con = duckdb.connect(str(store_copy), read_only=True)
    try:
        events = con.execute(
            "SELECT subject, inputs_sha256 FROM audit_event WHERE action = 'tumour_board_report'"
        ).fetchall()
    finally:
        con.close()
    assert events == [(str(person_id), summary["sha256"])]

    named = tmp_path / "named.pdf"
    args = ["report", str(person_id), "--db", str(store_copy), "--out", str(named)]
    assert main([*args, "--include-names"]) == 0
    assert mrn in "\n".join(p.extract_text() for p in PdfReader(named).pages)


def test_report_for_unknown_patient_writes_nothing(store_copy, tmp_path):
    out = tmp_path / "nobody.pdf"
    r = oncolens("report", "999999999", "--db", str(store_copy), "--out", str(out))
    assert (
        r.returncode == 1
        and "no patient with id 999999999" in r.stderr
        and "Traceback" not in r.stderr
    )
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_matplotlib_fallback_draws_the_report_figures():
    """Where no browser is installed the figures are redrawn, not dropped."""
    from analytics.treatment.model.shap_values import BenefitWaterfall, Contribution
    from dashboard.figures import treatment as treatment_figures

    shap = BenefitWaterfall(
        better="A",
        worse="B",
        base_value=0.02,
        contributions=(
            Contribution("tumour_size_mm", 22.0, 0.01),
            Contribution("age", 50.0, -0.004),
        ),
        additivity_error=0.0,
    )
    png = static_figures.figure_png(
        treatment_figures.benefit_waterfall_figure(shap, 0.026), prefer="matplotlib"
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def _figures_by_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's figures drawn by its own fallback (``static_figures``: as where kaleido failed)
    for tests that read only its text: each ``gather`` otherwise starts a Chromium for its figures
    (2-4 s on two busy cores). The kaleido path is ``test_report_pdf_has_every_section_...``'s."""
    monkeypatch.setitem(static_figures._KALEIDO_STATE, "ok", False)


def test_report_forecast_lines_state_the_forecast_the_page_draws(report_store, monkeypatch):
    """The report reads the typed forecast (not its rounded JSON), so its figures are the page's."""
    from analytics.forecast.patient import (
        ForecastError,
        PatientForecast,
        estimate_prior,
        patient_forecast,
    )
    from analytics.treatment.clinic import load_clinic_model
    from dashboard.services.report import gather

    store_copy, _ = report_store
    _figures_by_matplotlib(monkeypatch)
    clinic = load_clinic_model(store_copy)
    with store.open_store(store_copy, read_only=True) as con:
        prior = estimate_prior(con)

        def forecasts() -> Iterator[PatientForecast]:
            """Patients 1-79 in order, forecast one at a time: the lines below need only the first
            with survival curves and the first with lesion readings, not all 79 (seconds each)."""
            for pid in range(1, 80):
                try:
                    yield patient_forecast(con, pid, prior, clinic)
                except ForecastError:
                    continue  # early disease beyond the model's horizon: nothing to forecast

        # since issue 17 a lesion is read only in metastatic disease, where RFS no longer applies:
        # one patient for the survival lines, another for the lesion lines
        forecast = next(f for f in forecasts() if f.survival is not None)
        lesion = next(f for f in forecasts() if not f.tumour.observed.empty)

    def no_json(self):
        raise AssertionError("the report read the forecast's JSON (rounded) instead of its figures")

    monkeypatch.setattr(PatientForecast, "to_json", no_json)
    lines = gather(store_copy, forecast.person_id, clinic=clinic, role="oncologist").forecast_lines
    assert lines[0] == f"As of {forecast.as_of.isoformat()}. Forecast model: {clinic.version}."
    lesion_lines = gather(store_copy, lesion.person_id, clinic=clinic).forecast_lines
    last = lesion.tumour.observed.iloc[-1]
    assert f"{len(lesion.tumour.observed)} reading(s), last {last['mm']:.1f} mm" in lesion_lines[1]
    assert forecast.survival is not None
    for option, frame in forecast.survival.curves.items():
        end = frame.iloc[-1]
        # the page's formatters (dashboard.figures.formats): the same rounding as its metrics
        assert (
            f"{option}: recurrence-free to day {end['day']:.0f}: {formats.pct(end['s'])} "
            f"(95 % {formats.pct_interval(end['lo'], end['hi'])})." in lines
        )


def test_report_pdf_heads_what_it_holds_and_carries_the_decision_just_recorded(
    report_store, monkeypatch
):
    """The PDF is headed "Treatment options" when the model picks none, prints a model line without
    "None", and includes the decision the clinician has just recorded (issue 20)."""
    from analytics.treatment.clinic import (
        load_clinic_model,
        recommendation_for,
        recommendation_scope,
    )
    from analytics.treatment.decisions import make_decision, record_decision, shown_summary
    from dashboard.services.report import gather
    from dashboard.services.report_pdf import render_pdf

    store_copy, _ = report_store
    _figures_by_matplotlib(monkeypatch)
    clinic = load_clinic_model(store_copy)
    with store.open_store(store_copy, read_only=True) as con:
        # the first in-scope patient (the adjuvant decision only, issue 17) among 1-79 whose model
        # picks no option: recommended one at a time, up to that patient, not all 79
        in_scope = (pid for pid in range(1, 80) if recommendation_scope(con, pid).in_scope)
        unclear, rec = next(
            (pid, rec)
            for pid, rec in ((pid, recommendation_for(clinic, con, pid)) for pid in in_scope)
            if rec.recommended is None
        )
    decision = make_decision(
        person_id=unclear,
        model_version=rec.model_version,
        recommended=None,
        options=[o.treatment for o in rec.options],
        actor="dr-test",
        chosen=rec.best,
        reason="patient preference",
    )
    record_decision(store_copy, decision, shown=shown_summary(rec))
    data = gather(store_copy, unclear, clinic=clinic, role="oncologist")
    text = " ".join(
        "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(data))).pages).split()
    )
    assert "Treatment options" in text and "Treatment recommendation" not in text
    assert "Decisions recorded" in text and "dr-test chose" in text and "patient preference" in text
    assert "no option recommended" in text
    assert not re.search(r"\bNone\b", text), "the PDF prints None"
