"""Every page of the app through Streamlit's AppTest: content, notices instead of tracebacks, the audit rule."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analytics import store
from analytics.worklist import stored as worklist_store
from dashboard.session import auth

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "dashboard" / "app.py"
PAGES = ("home", "patient", "imaging", "worklist", "cohorts", "governance")
TIMEOUT_S = 60


def permitted_role(page: str) -> str:
    """A role that may open ``page``: the oncologist where she may, else the first allowed role."""
    allowed = auth.PAGES[page]
    return "oncologist" if "oncologist" in allowed else sorted(allowed)[0]


def signed_in(role: str, username: str | None = None, idle_s: float = 0.0) -> auth.Session:
    """A session as the sign-in form leaves it (tests of the form itself live in test_auth.py)."""
    return auth.Session(username or "demo-user", role, "password", time.time() - idle_s)


def open_page(page: str, role: str | None = None, **query: str) -> AppTest:
    """Run the app like a browser opening ``/<page>?<query>``, signed in as ``role``: entry script, then the page.

    ``role`` None signs in with a role that may see the page (``permitted_role``).
    """
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state[auth.SESSION_KEY] = signed_in(role or permitted_role(page))
    at.query_params.update(query)
    at.run()
    if page != "home":
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def texts(elements) -> str:
    """The elements' Markdown source (escapes included: what a test of the escaping reads)."""
    return "\n".join(str(e.value) for e in elements)


def shown(elements) -> str:
    """The elements' text as a reader sees it: CommonMark's backslash escapes of punctuation
    (``formats.markdown_plain`` on text from outside the code) removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", texts(elements))


def view_events(db: Path, person_id: int) -> int:
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT count(*) FROM audit_event WHERE action = 'view_patient' AND subject = ?",
            [str(person_id)],
        ).fetchone()[0]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_a_patient(app_env, page):
    at = open_page(page)
    assert not at.exception
    assert not at.error
    assert at.title[0].value == ("OncoLens" if page == "home" else page.capitalize())


def test_home_states_what_oncolens_is_not_and_the_store(app_env):
    at = open_page("home")
    assert "not a medical device" in texts(at.warning)
    assert {m.label: m.value for m in at.metric}["Patients"] == "300"
    assert str(app_env) in texts(at.caption)


def test_patient_page_shows_the_record(app_env):
    at = open_page("patient", patient="42")
    assert not at.exception
    assert at.header[0].value == "MRN00000042 · id 42"
    labels = {m.label for m in at.metric}
    assert {"Stage", "Grade", "Tumour size", "Positive nodes", "HER2"} <= labels
    assert any(label.startswith("ER (") for label in labels)
    assert len(at.get("plotly_chart")) == 3  # lesion, labs, similar patients (no treatment model)
    assert len(at.dataframe) >= 2  # treatments and imaging at least
    assert "Larsen" not in str(at.main)  # names are never shown (id / MRN only)
    assert at.query_params["patient"] == "42"


def test_patient_view_is_audited_once_per_session(app_env):
    before = view_events(app_env, 123)
    at = open_page("patient", patient="123")
    at.run()  # a rerun of the same view
    at.switch_page("app_pages/imaging.py").run()  # the same patient on another page
    assert not at.exception
    assert view_events(app_env, 123) == before + 1
    open_page("patient", patient="123")  # a new session audits again
    assert view_events(app_env, 123) == before + 2


@pytest.mark.parametrize("page", ["patient", "imaging"])
@pytest.mark.parametrize(
    ("raw", "message"), [("999999", "No patient with id 999999"), ("abc", "is not a patient id")]
)
def test_unknown_or_invalid_patient_gives_a_notice(app_env, page, raw, message):
    at = open_page(page, patient=raw)
    assert not at.exception
    assert message in texts(at.warning)


def test_worklist_page_shows_the_ranked_rows_and_filters(app_env):
    at = open_page("worklist")
    assert "by forecast risk" in texts(at.caption)
    assert "not a medical device" in texts(at.caption)
    shown = at.dataframe[0].value
    with store.open_store(app_env, read_only=True) as con:
        expected = worklist_store.read_page(con, 25, 0)
        progressing = worklist_store.read_page(con, 25, 0, only_progression=True)
    assert shown["MRN"].tolist() == expected.rows["mrn"].tolist()
    assert shown["open"].iloc[0] == f"patient?patient={expected.rows['person_id'].iloc[0]}"
    assert f"of {expected.total:,}" in texts(at.caption)

    next(t for t in at.toggle if t.label == "Progression only").set_value(True).run()
    assert not at.exception
    with store.open_store(app_env, read_only=True) as con:
        flagged = worklist_store.read_page(con, 100_000, only_progression=True).rows
    assert flagged["progression"].all()
    assert set(at.dataframe[0].value["MRN"]) <= set(flagged["mrn"])
    assert f"of {progressing.total:,}" in texts(at.caption)

    at.number_input[0].set_value(10_000).run()
    assert "past the end" in texts(at.info)


def test_cohorts_page_plots_and_qualifies_the_comparison(app_env):
    at = open_page("cohorts")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients"] == "300"
    # only the open tab is computed (issue 23): the overview's six charts, not the builder's KM
    assert len(at.get("plotly_chart")) == 6 and "Patients in cohort" not in metrics
    assert "not randomised" in texts(at.caption)
    medians = at.dataframe[0].value
    assert "all patients" in set(medians["group"])
    build = open_page("cohorts", tab="Build a cohort")  # the tab in the address, as a link has it
    assert {c.key for c in build.get("plotly_chart")} == {"cohort_km"}
    assert "Patients" not in {m.label for m in build.metric}  # the overview's metrics


def test_governance_page_shows_counts_provenance_and_audit(app_env):
    open_page("patient", patient="11")  # make sure one event exists
    at = open_page("governance", tab="Lineage")  # only the open tab is computed (issue 23)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Schema version"] == str(store.SCHEMA_VERSION)
    counts = next(d.value for d in at.dataframe if {"table", "rows"} <= set(d.value.columns))
    frames = [d.value for d in open_page("governance", tab="Audit trail").dataframe]
    audit_events = next(
        f for f in frames if "action" in f.columns and "view_patient" in set(f["action"])
    )
    assert counts.set_index("table").loc["person", "rows"] == 300
    assert not audit_events.empty


def test_sidebar_search_opens_the_chosen_patient(app_env):
    at = open_page("home")
    at.sidebar.text_input[0].input("MRN0000004").run()
    picks = [b for b in at.sidebar.button if "· MRN0000004" in b.label]
    assert len(picks) == 10
    assert all(" · b. " in b.label for b in picks)  # name and birth date tell namesakes apart
    next(b for b in picks if "· MRN00000042 ·" in b.label).click().run()
    assert not at.exception
    assert at.header[0].value == "MRN00000042 · id 42"  # switched to the Patient page
    assert at.query_params["patient"] == "42"


def test_sidebar_search_without_match_says_so(app_env):
    at = open_page("home")
    at.sidebar.text_input[0].input("MRN99999").run()
    assert "No patient" in texts(at.sidebar.caption)


def test_chosen_patient_follows_the_user_to_another_page(app_env):
    at = open_page("patient", patient="42")
    at.query_params.clear()  # Streamlit drops the query string on navigation
    at.switch_page("app_pages/imaging.py").run()
    assert "Images of MRN00000042 · id 42" in texts(at.subheader)
    assert at.query_params["patient"] == "42"  # and the link says so again
    at.sidebar.button(key="oncolens.clear_patient").click().run()
    assert "Most recent images in the clinic" in texts(at.subheader)


@pytest.mark.parametrize("page", PAGES)
def test_missing_database_gives_the_command_that_creates_it(tmp_path, monkeypatch, page):
    monkeypatch.setenv("ONCOLENS_DB", str(tmp_path / "absent.duckdb"))
    at = open_page(page, patient="42")
    assert not at.exception
    assert "cannot be opened" in texts(at.error)
    assert "oncolens demo --db" in texts(at.get("code"))
    assert not (tmp_path / "absent.duckdb").exists()  # looking never creates an empty clinic


def test_a_file_that_is_not_a_store_gives_an_error(tmp_path, monkeypatch):
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("not a database")
    monkeypatch.setenv("ONCOLENS_DB", str(bogus))
    at = open_page("worklist")
    assert not at.exception
    assert "not a" in texts(at.error) and "--force" in texts(at.get("code"))


def test_pages_and_their_libraries_never_read_the_hidden_truth():
    sources = [*ROOT.joinpath("dashboard").rglob("*.py")]
    sources += [
        ROOT / "analytics" / f"{name}.py"
        for name in ("patients", "worklist/ranking", "worklist/stored", "cohorts/summary")
    ]
    for path in sources:
        if path.parent.name == "cli":
            continue
        assert not re.search(r"\b(FROM|JOIN)\s+\"?truth\"?\s*\.", path.read_text(), re.I), path
