"""The Patient page knows where each patient is (issue 17): setting banner, the treatment model only in
its scope, lines of therapy and progression on the current line, RFS in early disease, the care
team's PDF without a recommendation, ``oncolens recommend --json`` with ``in_scope``, the whole
decision reason in the log."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from analytics import store
from analytics.episodes import care_setting
from analytics.treatment.clinic import (
    OutOfScopeError,
    load_clinic_model,
    recommendation_for,
)
from analytics.treatment.decisions import make_decision, record_decision
from dashboard.services import plain_language
from dashboard.services.report import gather, report_bytes
from tests.dashboard.app_pages.test_pages import ROOT, open_page, texts


@pytest.fixture(scope="module")
def clinic_db(demo_db: Path, trained_demo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the demo store with its clinic model trained (few refits: fast)."""
    path = tmp_path_factory.mktemp("setting_app") / "clinic.duckdb"
    shutil.copyfile(demo_db, path)
    trained_demo(path, bootstrap=4)
    return path


@pytest.fixture(scope="module")
def patients(clinic_db: Path) -> dict[str, int]:
    """A recurred patient on a second or later line with lesion readings on it, and an adjuvant one."""
    with store.open_store(clinic_db, read_only=True) as con:
        on_line = con.execute(
            """SELECT e.person_id FROM episode e
               WHERE e.kind = 'line' AND e.line_number >= 2 AND e.end_date IS NULL
                 AND e.person_id NOT IN (SELECT person_id FROM outcome_event WHERE event_type = 'death')
                 AND (SELECT count(*) FROM measurement m WHERE m.person_id = e.person_id
                        AND m.concept = 'lesion_longest_diameter' AND m.measurement_date >= e.start_date) >= 2
               ORDER BY e.person_id LIMIT 1"""
        ).fetchall()
        adjuvant = con.execute(
            """SELECT person_id FROM episode WHERE kind = 'adjuvant' AND end_date IS NULL
               AND person_id NOT IN (SELECT person_id FROM outcome_event)
               AND start_date <= DATE '2026-06-30' - INTERVAL 200 DAY
               ORDER BY person_id LIMIT 1"""
        ).fetchall()
    assert on_line and adjuvant, "the demo must have both kinds of patient"
    return {"metastatic": int(on_line[0][0]), "adjuvant": int(adjuvant[0][0])}


@pytest.fixture
def env(clinic_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONCOLENS_DB", str(clinic_db))
    return clinic_db


def shown(elements) -> str:
    """The elements' text as a reader sees it: store text is markdown-escaped on the page."""
    return texts(elements).replace("\\", "")


def _metric_labels(at) -> list[str]:
    return [m.label for m in at.metric]


def test_recurred_patient_gets_no_first_line_options_but_her_course(env, patients):
    pid = patients["metastatic"]
    with store.open_store(env, read_only=True) as con:
        setting = care_setting(con, pid)
    at = open_page("patient", role="oncologist", patient=str(pid))
    assert not at.exception and not at.error
    warnings = shown(at.warning)
    # the banner: setting, line and since when
    assert "Metastatic breast cancer (recurrence" in warnings
    assert f"line {setting.line}" in warnings and f"since {setting.since:%Y-%m-%d}" in warnings
    # the treatment model says it does not apply, and why; no options, no decision form
    assert "out of the treatment model's scope" in warnings and "adjuvant decision" in warnings
    buttons = [b.label for b in at.button]
    assert not any(label.startswith("Accept") or label == "Record choice" for label in buttons)
    # no "Option chosen" (the review form's "Assign to" is the care workflow, not a decision)
    assert "Option chosen" not in [s.label for s in at.selectbox]
    labels = _metric_labels(at)
    assert not any(
        option in label for label in labels for option in ("endocrine", "chemotherapy")
    )  # no option's metric, under its code or its name ("chemotherapy + endocrine")
    # what applies: lines of therapy, the lesion on this line, progression on it; no RFS reassurance
    assert "Course and lines of therapy" in texts(at.subheader)
    lines = at.dataframe[0].value
    assert list(lines["line"]) == list(range(1, setting.line + 1))
    assert lines["ended"].iloc[-1] == "ongoing" and set(lines["why it ended"].iloc[:-1]) == {
        "progression"
    }
    assert "Progression on this line in 6 months" in labels
    assert "P(recurrence) in 6 months" not in labels
    assert "recurrence-free survival no longer applies" in warnings
    assert "unlikely" not in warnings and "unlikely" not in texts(at.info)


def test_metastatic_lesion_trajectory_restarts_at_the_current_line(env, patients):
    pid = patients["metastatic"]
    at = open_page("patient", role="oncologist", patient=str(pid))
    with store.open_store(env, read_only=True) as con:
        start = care_setting(con, pid).since
    measured = [
        t
        for c in at.get("plotly_chart")
        for t in json.loads(c.proto.spec)["data"]
        if t.get("name") == "measured" and t.get("legendgroup") == "lesion"
    ]
    assert measured, "the timeline draws her lesion readings"
    dates = sorted(str(d)[:10] for d in measured[0]["x"])
    # readings of earlier lines are not part of this line's series; its baseline scan is at most
    # six weeks before the line started
    assert dates[0] >= (start - dt.timedelta(days=42)).isoformat()
    with store.open_store(env, read_only=True) as con:
        before = con.execute(
            "SELECT count(*) FROM measurement WHERE person_id = ? AND concept = 'lesion_longest_diameter' "
            "AND measurement_date < ?",
            [pid, start - dt.timedelta(days=42)],
        ).fetchall()[0][0]
    assert before > 0  # she has readings from earlier lines, and they are left out


def test_adjuvant_patient_gets_options_and_recurrence_free_survival(env, patients):
    at = open_page("patient", role="oncologist", patient=str(patients["adjuvant"]))
    assert not at.exception and not at.error
    assert "Early breast cancer · adjuvant therapy since" in shown(at.info)
    labels = _metric_labels(at)
    assert any(label.startswith("endocrine") for label in labels)  # the first-line options
    assert "P(recurrence) in 6 months" in labels
    value = next(m.value for m in at.metric if m.label == "P(recurrence) in 6 months")
    assert value.endswith("%")  # RFS forecast under her option
    assert "out of the treatment model's scope" not in shown(at.warning)


def test_the_library_refuses_out_of_scope_and_the_cli_says_in_scope(env, patients):
    clinic = load_clinic_model(env)
    with store.open_store(env, read_only=True) as con, pytest.raises(OutOfScopeError) as err:
        recommendation_for(clinic, con, patients["metastatic"])
    assert not err.value.scope.in_scope and "recurred on" in err.value.scope.reason
    out = {}
    for kind, pid in patients.items():
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "dashboard.cli",
                "recommend",
                str(pid),
                "--db",
                str(env),
                "--json",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        out[kind] = json.loads(r.stdout)
    assert out["adjuvant"]["in_scope"] is True and out["adjuvant"]["options"]
    met = out["metastatic"]
    assert met["in_scope"] is False and "adjuvant decision" in met["reason"]
    assert "options" not in met and met["setting"]["setting"] == "metastatic"
    assert met["setting"]["lines"] and met["setting"]["line"] == len(met["setting"]["lines"])


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    return " ".join(" ".join(p.extract_text() for p in PdfReader(path).pages).split())


def test_care_team_pdf_has_no_recommendation(env, patients, tmp_path):
    clinic = load_clinic_model(env)
    pid = patients["adjuvant"]
    oncologist = gather(env, pid, clinic=clinic, role="oncologist")
    care_team = gather(env, pid, clinic=clinic, role="care_team")
    nobody = gather(env, pid, clinic=clinic)  # no role: fails closed
    assert oncologist.recommendation is not None and oncologist.waterfall_png is not None
    for data in (care_team, nobody):
        assert data.recommendation is None and data.waterfall_png is None
        assert any("withheld" in line for line in data.recommendation_lines)
        # curves under options she did not receive would show which one is best
        options = [
            line.split(":")[0] for line in data.forecast_lines if "recurrence-free to day" in line
        ]
        assert len(options) <= 1
    text = _pdf_text(
        report_bytes(env, pid, include_names=False, actor="nurse", role="care_team", clinic=clinic),
        tmp_path,
    )
    assert "withheld" in text
    assert plain_language.statement(oncologist.recommendation) not in text
    assert "chemotherapy + endocrine:" not in text
    assert "5-year RFS" not in text and "SHAP" not in text


def test_report_of_a_recurred_patient_says_out_of_scope_and_shows_her_lines(env, patients):
    data = gather(env, patients["metastatic"], role="oncologist")
    assert data.recommendation is None
    assert any("Out of the treatment model's scope" in line for line in data.recommendation_lines)
    rows = dict(data.summary_rows)
    assert rows["Setting"].startswith("Metastatic breast cancer") and "Line 1" in rows


def test_decision_log_shows_recommended_chosen_and_the_whole_reason(env, patients):
    pid = patients["adjuvant"]
    reason = (
        "Patient prefers to avoid chemotherapy after a long discussion with her family about "
        "neuropathy risk, fertility, work and the small expected benefit; revisit at next visit. "
    ) * 3
    decision = make_decision(
        person_id=pid,
        model_version="m-test",
        recommended="chemo_endocrine",
        options=["endocrine", "chemotherapy", "chemo_endocrine"],
        actor="dr-test",
        chosen="endocrine",
        reason=reason,
    )
    record_decision(env, decision, shown={}, role="oncologist")
    at = open_page("patient", role="oncologist", patient=str(pid))
    log = texts(at.text)
    assert reason.strip() in log  # the whole reason, not a cell cut at its width
    entry = shown(at.markdown)
    assert "recommended: chemotherapy + endocrine" in entry and "chose **endocrine**" in entry
