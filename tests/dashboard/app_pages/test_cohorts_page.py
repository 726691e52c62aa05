"""The Cohorts page's reusable cohorts (AppTest): AND/OR groups in words, save and reopen by link, the patient
list as each role may see it, deleting, and Table 1's SMD column."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from analytics import store
from analytics.cohorts import builder as cohorts
from analytics.cohorts.definition import CohortDefinition
from dashboard import resources
from dashboard.panels import cohort as cohort_panel
from dashboard.panels import cohort_saved
from tests.dashboard.app_pages.test_pages import APP, TIMEOUT_S, signed_in, texts

GROUPS = [["age >= 50", "grade = 3"], ["her2_status = positive"]]
WORDS = "(Age at diagnosis ≥ 50 years AND Grade is 3) OR (HER2 status is positive)"


def _open(role: str, username: str = "demo-user", **query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state["oncolens.auth.session"] = signed_in(role, username)
    # the builder's tab (only the open tab is computed, issue 23); a saved cohort's link opens it too
    at.query_params.update({"tab": "Build a cohort"} | query)
    at.run()
    at.switch_page("app_pages/cohorts.py").run()
    assert not at.exception, at.exception
    return at


def _patients(at) -> int:
    return int(next(m.value for m in at.metric if m.label == "Patients in cohort").replace(",", ""))


def _events(db, action: str) -> list[tuple]:
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT actor, role, details FROM audit_event WHERE action = ? ORDER BY event_id",
            [action],
        ).fetchall()


def test_conditions_added_to_a_new_group_are_ored_and_said_in_words(app_env):
    at = _open("oncologist")
    at.selectbox(key="cohort_field").set_value("age").run()
    at.selectbox(key="cohort_op_age").set_value(">=").run()
    at.number_input(key="cohort_value_age_>=").set_value(50).run()
    at.button(key="cohort_add").click().run()
    at.selectbox(key="cohort_field").set_value("grade").run()
    at.selectbox(key="cohort_value_grade_=").set_value("3").run()
    at.button(key="cohort_add").click().run()  # "Add to" defaults to group 1: AND
    at.selectbox(key="cohort_field").set_value("her2_status").run()
    at.selectbox(key="cohort_value_her2_status_=").set_value("positive").run()
    at.selectbox(key="cohort_target_1").set_value(cohort_panel.NEW_GROUP).run()
    at.button(key="cohort_add").click().run()
    assert not at.exception and not at.error
    assert at.session_state[cohort_panel.GROUPS_KEY] == GROUPS
    assert f"In words: {WORDS}." in texts(at.caption)
    assert "**OR**" in [m.value for m in at.markdown]
    assert "at least one" in texts(at.caption)  # the rule is said on the page
    with store.open_store(app_env, read_only=True) as con:
        assert _patients(at) == cohorts.build_cohort(con, CohortDefinition.of(GROUPS)).n


def test_a_saved_cohort_reopens_by_link_for_another_role_and_both_are_audited(app_env):
    at = _open("oncologist", "dr-save")
    at.session_state[cohort_panel.GROUPS_KEY] = [list(g) for g in GROUPS]
    at.run()
    at.selectbox(key=cohort_panel.GROUP_BY_KEY).set_value("er_status").run()
    at.text_input(key=cohort_saved.NAME_KEY).set_value("Older G3 or HER2+").run()
    n = _patients(at)
    at.button(key="cohort_save").click().run()
    assert not at.exception and not at.error
    cohort_id = at.query_params["cohort"]
    assert f"Saved cohort {cohort_id}, **Older G3 or HER2+**" in texts(at.info)
    assert f"/cohorts?cohort={cohort_id}" in texts(at.info)
    saved = [(r, d) for a, r, d in _events(app_env, "cohort_saved") if a == "dr-save"]
    assert len(saved) == 1 and saved[0][0] == "oncologist"
    assert all(a != "dr-save" for a, _, _ in _events(app_env, "cohort_opened"))  # saved, not opened

    other = _open("ethics_board", "board-member", cohort=cohort_id)  # a colleague follows the link
    assert not other.error
    assert other.session_state[cohort_panel.GROUPS_KEY] == GROUPS
    assert other.session_state[cohort_panel.GROUP_BY_KEY] == "er_status"
    assert _patients(other) == n
    assert f"In words: {WORDS}." in texts(other.caption)
    assert "Older G3 or HER2+" in texts(other.info)
    opened = [(a, r) for a, r, _ in _events(app_env, "cohort_opened")]
    assert ("board-member", "ethics_board") in opened
    other.run()  # a rerun does not open it again
    assert [(a, r) for a, r, _ in _events(app_env, "cohort_opened")] == opened
    # Table 1 compares the two ER groups: an SMD column
    table1 = next(d.value for d in other.dataframe if "variable" in d.value.columns)
    assert "SMD" in table1.columns and (table1["SMD"] != "").sum() >= 10
    assert any(
        m.value.startswith("**Groups differ at baseline (SMD > 0.1)** in: ") for m in other.markdown
    )

    # the board member may not delete it; an admin may
    assert "Only a cohort's author or an admin may delete it." in texts(other.caption)
    admin = _open("admin", "root")
    admin.selectbox(key="cohort_delete_choice").set_value(int(cohort_id)).run()
    admin.button(key="cohort_delete").click().run()
    assert not admin.exception and not admin.error
    assert any(a == "root" for a, _, _ in _events(app_env, "cohort_deleted"))
    gone = _open("oncologist", "dr-save", cohort=cohort_id)
    assert "cannot be opened" in texts(gone.warning) and not gone.exception


def test_an_unreadable_link_is_a_warning_not_an_error(app_env):
    at = _open("oncologist", cohort="1; DROP TABLE person")
    assert not at.error
    assert "not a saved cohort's number" in texts(at.warning)


def test_the_ethics_board_sees_pseudonyms_and_months_only_clinicians_see_mrn(app_env):
    board = _open("ethics_board", "board-list")
    board.session_state[cohort_panel.GROUPS_KEY] = [list(g) for g in GROUPS]
    board.run()
    board.toggle(key="cohort_list").set_value(True).run()
    assert not board.exception and not board.error
    listed = next(d.value for d in board.dataframe if "pseudonym" in d.value.columns)
    assert listed["pseudonym"].str.fullmatch(r"P-[0-9a-f]{16}").all()
    assert len(listed) == _patients(board)
    assert not {"person_id", "mrn", "diagnosis_date"} & set(listed.columns)
    assert listed["diagnosis_month"].str.fullmatch(r"\d{4}-\d{2}").all()
    viewed = [
        (a, r, d) for a, r, d in _events(app_env, "cohort_patients_viewed") if a == "board-list"
    ]
    assert len(viewed) == 1 and json.loads(viewed[0][2])["identified"] is False

    doctor = _open("oncologist", "dr-list")
    doctor.session_state[cohort_panel.GROUPS_KEY] = [list(g) for g in GROUPS]
    doctor.run()
    doctor.toggle(key="cohort_list").set_value(True).run()
    listed = next(d.value for d in doctor.dataframe if "mrn" in d.value.columns)
    assert listed["mrn"].str.startswith("MRN").all() and "pseudonym" not in listed.columns
    assert any(a == "dr-list" for a, _, _ in _events(app_env, "cohort_patients_viewed"))


def test_a_store_without_the_saved_cohorts_table_says_it_needs_a_migration(
    demo_db, tmp_path, monkeypatch
):
    import shutil

    old = tmp_path / "old.duckdb"
    shutil.copyfile(demo_db, old)
    with store.open_store(old) as con:  # as an older OncoLens left it: no table, no version row
        con.execute("DROP TABLE saved_cohort")
        con.execute("DELETE FROM schema_version WHERE version > 9")
    monkeypatch.setenv("ONCOLENS_DB", str(old))
    at = _open("oncologist")
    assert not at.error
    assert "need this store's schema to be migrated" in texts(at.info)
    assert _patients(at) == 300  # the rest of the page works


def test_the_overview_names_regimens_as_people_read_them_and_explains_none_recorded(app_env):
    """The overview's regimen bar, survival curves and medians say "chemotherapy + endocrine" (as
    the treatment section does), never the store code; the "none recorded" group, defined by an
    early end of follow-up, is explained beside its curve."""
    with store.open_store(app_env, read_only=True) as con:
        without = con.execute(
            "SELECT count(*) FROM cohort_base WHERE first_line_regimen = 'none recorded'"
        ).fetchone()[0]
    at = _open("oncologist", tab="Overview")
    charts = " ".join(json.dumps(c.proto.spec) for c in at.get("plotly_chart"))
    assert "chemotherapy + endocrine" in charts and "chemo_endocrine" not in charts
    medians = at.dataframe[0].value
    assert "chemotherapy + endocrine" in set(medians["group"])
    assert "chemo_endocrine" not in set(medians["group"])
    explained = "before a first-line regimen was recorded" in texts(at.caption)
    assert explained == (without > 0)


def test_the_overview_counts_at_risk_as_the_builder_does(app_env):
    """The Overview's numbers at risk come without Table 1 and the survival tests (issue 23): the same
    counts as the whole builder's, and the same numbers printed under the curves."""
    ref = resources.store_status(app_env).ref
    assert ref is not None
    for group_by in (None, "first_line_regimen"):
        with store.open_store(app_env, read_only=True) as con:
            full = cohorts.build_cohort(con, (), group_by).at_risk
        quick = resources.cohort_at_risk(ref, group_by)
        assert quick.equals(full) and not quick.empty
    at = _open("oncologist", tab="Overview")
    printed = [
        t
        for c in at.get("plotly_chart")
        for t in json.loads(c.proto.spec)["data"]
        if t.get("mode") == "text"
    ]
    everyone = resources.cohort_at_risk(ref)
    horizon_rows = everyone[everyone["group"] == everyone["group"].iloc[0]]
    assert printed and printed[0]["text"][0] == f"{int(horizon_rows['at_risk'].iloc[0]):,}"
