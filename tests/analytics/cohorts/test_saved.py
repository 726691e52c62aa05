"""analytics.cohorts.saved and members: saved cohorts in the store (audited, deletable by author or admin,
refused clearly on an old store), and the patient list with or without identities."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from analytics import store
from analytics.cohorts import builder as cohorts
from analytics.cohorts import members, saved
from analytics.cohorts.definition import CohortDefinition
from analytics.cohorts.fields import CohortError
from analytics.governance import audit, pseudonyms

DEFINITION = CohortDefinition.of([["age >= 50", "grade = 3"], ["her2_status = positive"]], "stage")


@pytest.fixture
def db(demo_db, tmp_path):
    path = tmp_path / "saved.duckdb"
    shutil.copyfile(demo_db, path)
    return path


def _events(path, action):
    with store.open_store(path, read_only=True) as con:
        return con.execute(
            "SELECT actor, role, details FROM audit_event WHERE action = ? ORDER BY event_id",
            [action],
        ).fetchall()


def test_a_saved_cohort_reads_back_the_same_with_author_cutoff_and_an_audit_event(db):
    kept = saved.save_cohort(
        db, "  Older G3 or HER2+ ", DEFINITION, author="dr-a", role="oncologist"
    )
    with store.open_store(db, read_only=True) as con:
        back = saved.get_saved(con, str(kept.cohort_id))  # a link's id is text
        listed = saved.list_saved(con)
        cutoff = con.execute(
            "SELECT value FROM clinic_metadata WHERE key = 'data_cutoff'"
        ).fetchone()[0]
        assert (
            cohorts.build_cohort(con, back.definition).n == cohorts.build_cohort(con, DEFINITION).n
        )
    assert back == kept and back.name == "Older G3 or HER2+" and back.definition == DEFINITION
    assert (back.author, back.author_role, back.data_cutoff) == ("dr-a", "oncologist", cutoff)
    assert [c.cohort_id for c in listed] == [kept.cohort_id]
    [(actor, role, details)] = _events(db, "cohort_saved")
    assert (actor, role) == (
        "dr-a",
        "oncologist",
    ) and f'"cohort_id":{kept.cohort_id}' in details.replace(" ", "")
    saved.record_opened(db, back, actor="ethics", role="ethics_board")
    assert [(a, r) for a, r, _ in _events(db, "cohort_opened")] == [("ethics", "ethics_board")]
    assert audit.verify_store(db).ok


def test_only_the_author_or_an_admin_deletes_and_the_delete_is_audited(db):
    first = saved.save_cohort(db, "mine", DEFINITION, author="dr-a", role="oncologist")
    second = saved.save_cohort(db, "also mine", DEFINITION, author="dr-a", role="oncologist")
    with pytest.raises(saved.NotAllowed, match="only dr-a"):
        saved.delete_saved(db, first.cohort_id, actor="ethics", role="ethics_board")
    saved.delete_saved(db, first.cohort_id, actor="dr-a", role="oncologist")
    saved.delete_saved(db, second.cohort_id, actor="root", role="admin")
    with store.open_store(db, read_only=True) as con:
        assert saved.list_saved(con) == []
        with pytest.raises(saved.UnknownSavedCohort, match="no saved cohort"):
            saved.get_saved(con, first.cohort_id)
        with pytest.raises(saved.UnknownSavedCohort, match="not a saved cohort's number"):
            saved.get_saved(con, "1 OR 1=1")
    assert [a for a, _, _ in _events(db, "cohort_deleted")] == ["dr-a", "root"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 121, "two\nlines"])
def test_bad_names_are_refused_before_anything_is_written(db, name):
    with pytest.raises(CohortError):
        saved.save_cohort(db, name, DEFINITION, author="dr-a", role="oncologist")
    assert _events(db, "cohort_saved") == []


def test_an_old_store_opened_read_only_says_saved_cohorts_need_a_migration(db):
    with store.open_store(db) as con:  # back to schema 9: no table, no version row
        con.execute("DROP TABLE saved_cohort")
        con.execute("DELETE FROM schema_version WHERE version > 9")
    with store.open_store(db, read_only=True) as con:
        for call in (lambda: saved.list_saved(con), lambda: saved.get_saved(con, 1)):
            with pytest.raises(
                saved.SavedCohortsUnavailable, match="need this store's schema to be migrated"
            ):
                call()
    kept = saved.save_cohort(
        db, "after", DEFINITION, author="dr-a", role="oncologist"
    )  # a write migrates
    with store.open_store(db, read_only=True) as con:
        assert [c.cohort_id for c in saved.list_saved(con)] == [kept.cohort_id]


def test_the_v10_migration_is_additive():
    [m] = [m for m in store.MIGRATIONS if m.data_step is None and "saved_cohort" in m.description]
    assert all(
        s.lstrip().upper().startswith(("CREATE TABLE", "CREATE SEQUENCE")) for s in m.statements
    )


def test_the_patient_list_has_mrn_for_clinicians_and_only_pseudonyms_and_months_otherwise(demo_con):
    who = members.cohort_members(demo_con, DEFINITION, identified=True, limit=5)
    assert who.identified and len(who.rows) == 5 and who.truncated
    assert who.total == cohorts.build_cohort(demo_con, DEFINITION).n
    assert {"person_id", "mrn", "diagnosis_date"} <= set(who.rows.columns)
    mrn = dict(demo_con.execute("SELECT person_id, mrn FROM person").fetchall())
    assert [mrn[p] for p in who.rows["person_id"]] == who.rows["mrn"].tolist()

    hidden = members.cohort_members(demo_con, DEFINITION, identified=False, limit=10_000)
    assert hidden.total == who.total == len(hidden.rows) and not hidden.truncated
    assert not {
        "person_id",
        "mrn",
        "diagnosis_date",
        "given_name",
        "family_name",
        "birth_date",
    } & set(hidden.rows.columns)
    assert hidden.rows["diagnosis_month"].str.fullmatch(r"\d{4}-\d{2}").all()
    key = pseudonyms.store_secret(demo_con)
    everyone = cohorts.cohort_patients(demo_con, DEFINITION)
    expected = sorted(pseudonyms.pseudonym(key, int(p)) for p in everyone["person_id"])
    assert hidden.rows["pseudonym"].tolist() == expected  # the same pseudonyms as exports, sorted
    few = members.cohort_members(demo_con, DEFINITION, identified=False, limit=5)
    shown = few.rows["pseudonym"].tolist()
    assert (
        few.truncated and len(shown) == 5 and shown == sorted(shown) and set(shown) <= set(expected)
    )
    # the five are not simply the five lowest ids: the choice is keyed, not in registration order
    lowest = {pseudonyms.pseudonym(key, int(p)) for p in sorted(everyone["person_id"])[:5]}
    assert set(shown) != lowest


def test_an_empty_cohort_lists_nobody(demo_con):
    nobody = CohortDefinition.of([["age > 150"]])
    for identified in (True, False):
        empty = members.cohort_members(demo_con, nobody, identified=identified)
        assert empty.total == 0 and empty.rows.empty


def test_a_database_without_the_table_is_recognised():
    con = duckdb.connect()
    assert not saved.has_table(con)
