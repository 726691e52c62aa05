"""The first-use experience through AppTest: the landing page, each role's start, glossary tooltips, empty states."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analytics import store
from analytics.governance import users
from dashboard.services import plain_language
from dashboard.session import landing
from tests.dashboard.app_pages.test_pages import APP, TIMEOUT_S, open_page, texts


def help_texts(at: AppTest) -> str:
    """Every tooltip (``help=``) on the page: metrics, captions, markdown, headings, widgets."""
    found: list[str] = []

    def walk(node) -> None:
        for child in getattr(node, "children", {}).values():
            walk(child)
        proto = getattr(node, "proto", None)
        text = getattr(proto, "help", "") if proto is not None else ""
        if isinstance(text, str) and text:
            found.append(text)

    walk(at._tree)
    return "\n".join(found)


def defines(at: AppTest, *terms: str) -> set[str]:
    """The ``terms`` that a tooltip on the page defines, in the glossary's words."""
    helps = help_texts(at)
    return {t for t in terms if f"**{t}**: {plain_language.GLOSSARY[t]}" in helps}


def signed_out() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()


# --- the landing page, signed out and signed in ------------------------------------------------------


def test_signed_out_landing_says_what_oncolens_is_and_where_each_role_starts(app_env):
    at = signed_out()
    assert not at.exception
    assert landing.WHAT_IT_IS in texts(at.markdown)
    assert "not a medical device" in texts(at.warning)
    guide = texts(at.markdown)
    for role in landing.START:
        assert landing.first_stop(role) in guide
    assert "-demo" not in str(at.main)  # this store has no demo accounts: no password is shown
    assert [t.label for t in at.text_input] == ["Username", "Password"]


@pytest.fixture
def demo_accounts_env(demo_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = Path(shutil.copyfile(demo_db, tmp_path / "with_accounts.duckdb"))
    users.add_demo_accounts(db)
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    return db


def test_landing_lists_the_demo_accounts_while_their_published_passwords_work(demo_accounts_env):
    at = signed_out()
    guide = texts(at.markdown)
    for name, role, password in users.DEMO_ACCOUNTS:
        assert (
            f"| `{name}` | `{password}` | {landing.ROLE_NAMES[role]} | {landing.first_stop(role)} |"
            in guide
        )
    assert "oncolens users remove" in texts(at.caption)
    with store.open_store(demo_accounts_env) as con:
        users.remove_user(con, "admin")
    at = signed_out()
    assert "admin-demo" not in texts(at.markdown) and "careteam-demo" in texts(at.markdown)


@pytest.mark.parametrize("role", sorted(landing.START))
def test_home_start_panel_links_the_roles_own_pages_in_order(app_env, role):
    at = open_page("home", role=role)
    assert not at.exception
    links = at.get("page_link")
    starts = landing.START[role]
    assert [link.label for link in links[: len(starts)]] == [f"**{s.label}**" for s in starts]
    assert [link.page for link in links[: len(starts)]] == [
        s.page for s in starts
    ]  # the URL path of each page
    assert f"Start here, as {landing.ROLE_NAMES[role]}" in texts(at.markdown)


def test_home_offers_an_example_patient_with_images_to_clinical_roles(demo_accounts_env):
    from sample_data.demo_imaging import write_demo_images

    summary = write_demo_images(demo_accounts_env, demo_accounts_env.with_name("dicom"), patients=1)
    at = open_page("home", role="oncologist")
    example = next(link for link in at.get("page_link") if "example" in link.label)
    assert example.page == "patient"
    assert int(example.query_string.removeprefix("patient=")) in summary.all_person_ids
    assert not [
        link
        for link in open_page("home", role="ethics_board").get("page_link")
        if "example" in link.label
    ]


# --- glossary tooltips -----------------------------------------------------------------------------


def test_patient_page_defines_its_terms_in_tooltips(app_env):
    at = open_page("patient", patient="42")
    assert not at.exception
    assert defines(at, "RECIST", "nadir", "Kaplan–Meier", "RFS", "RMST", "SHAP", "C-index") == {
        "RECIST",
        "nadir",
        "Kaplan–Meier",
        "RFS",
        "RMST",
        "SHAP",
        "C-index",
    }


def test_worklist_and_cohorts_pages_define_their_terms_in_tooltips(app_env):
    worklist = open_page("worklist")
    assert defines(worklist, "RECIST", "nadir", "forecast risk") == {
        "RECIST",
        "nadir",
        "forecast risk",
    }
    progression = next(t for t in worklist.toggle if t.label == "Progression only")
    assert plain_language.GLOSSARY["RECIST"] in progression.help
    cohorts = open_page("cohorts", tab="Build a cohort")
    overview = open_page("cohorts")  # only the open tab is computed (issue 23)
    wanted = {"Kaplan–Meier", "log-rank test", "numbers at risk", "confidence interval", "RFS"}
    assert defines(cohorts, *wanted) | defines(overview, *wanted) == wanted
    log_rank = next(m for m in cohorts.metric if m.label == "Log-rank p")
    assert plain_language.GLOSSARY["log-rank test"] in log_rank.help


def test_every_tooltip_term_is_in_the_one_glossary():
    with pytest.raises(KeyError):
        plain_language.glossary_help("a term nobody defined")
    assert plain_language.glossary_help("RFS", lead="Lead.").startswith("Lead.\n\n**RFS**: ")


# --- empty states: an empty store says what to do next ----------------------------------------------


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("empty") / "empty.duckdb"
    store.connect(path, create=True).close()
    return path


@pytest.fixture
def empty_env(empty_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONCOLENS_DB", str(empty_db))
    return empty_db


@pytest.mark.parametrize(
    ("page", "next_step"),
    [
        ("home", "oncolens import"),
        ("patient", "Find a patient by name, MRN, id or birth date"),
        ("imaging", "No image files on record yet"),
        ("worklist", "The worklist is empty"),
        ("cohorts", "This store holds no patients yet"),
        ("governance", "No audit events in this range yet"),
    ],
)
def test_an_empty_store_explains_what_to_do_next_on_every_page(empty_env, page, next_step):
    # Governance computes only its open tab (issue 23): the audit trail's, by its link
    at = open_page(page, **({"tab": "Audit trail"} if page == "governance" else {}))
    assert not at.exception and not at.error
    assert next_step in texts(at.info)


def test_a_status_box_is_gone_once_the_work_is_done_even_when_it_failed():
    def script():
        import streamlit as st

        from dashboard import resources

        with resources.working("Working…", expanded=True) as box:
            box.progress(0.5)
        st.write("done")
        try:
            with resources.working("Failing…"):
                raise ValueError("nope")
        except ValueError:
            st.info("failed, said so")

    at = AppTest.from_function(script, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert not at.get("status") and not [
        b for b in at.main.children.values() if getattr(b, "type", "") == "status"
    ]
    assert texts(at.info) == "failed, said so" and not at.get("progress")


def test_every_role_has_a_start_and_its_first_stop_names_its_first_page():
    assert set(landing.START) == set(users.ROLES)
    for role, starts in landing.START.items():
        assert landing.first_stop(role).startswith(f"{starts[0].page.capitalize()}:")
