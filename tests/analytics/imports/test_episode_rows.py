"""Episode files (CSV, Parquet, FHIR EpisodeOfCare): round trips, rejections with reasons, precedence over
derived episodes, idempotent re-imports, and the setting of a neoadjuvant and a de novo metastatic patient."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from analytics import store
from analytics.episodes import care_setting, derive_episodes
from analytics.imports import tabular as imports
from analytics.treatment.scope import recommendation_scope

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples" / "imports"
RECORDS = ("person.csv", "condition_occurrence.csv", "treatment_exposure.csv")
AS_OF = dt.date(2026, 6, 30)


def _store(tmp_path: Path, name: str = "hospital") -> Path:
    path = tmp_path / f"{name}.duckdb"
    store.connect(path, create=True).close()
    return path


def _import(db: Path, *paths: Path) -> list[imports.ImportReport]:
    reports = imports.import_files(db, list(paths), db.parent / "reports")
    assert all(r.error is None for r in reports), [r.error for r in reports]
    return reports


@pytest.fixture
def clinic(tmp_path: Path) -> Path:
    """A store with the example patients, their diagnoses and treatments (episodes derived from them)."""
    db = _store(tmp_path)
    _import(db, *(EXAMPLES / name for name in RECORDS))
    return db


def _ids(db: Path) -> dict[str, int]:
    with store.open_store(db, read_only=True) as con:
        return dict(con.execute("SELECT mrn, person_id FROM person").fetchall())


def _episodes(db: Path) -> list[tuple]:
    """Every episode row, patients by MRN (ids differ between stores)."""
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            """SELECT p.mrn, e.setting, e.kind, e.line_number, e.start_date, e.end_date, e.end_reason,
                      e.detail, e.source
               FROM episode AS e JOIN person AS p USING (person_id)
               ORDER BY p.mrn, e.start_date, e.kind, e.line_number"""
        ).fetchall()


def _problems(report: imports.ImportReport) -> dict[str, str]:
    return {p["origin"]: p["reason"] for p in report.problems if p["outcome"] == "rejected"}


def test_imported_episodes_replace_derived_ones_and_reimport_changes_nothing(clinic):
    ids = _ids(clinic)
    with store.open_store(clinic, read_only=True) as con:
        before = con.execute("SELECT DISTINCT source FROM episode").fetchall()
        notes = con.execute("SELECT count(*) FROM episode_note").fetchall()[0][0]
    assert before == [("derived",)] and notes > 0  # derived from treatments, with what was missing
    (report,) = _import(clinic, EXAMPLES / "episode.csv")
    assert report.counts == {"episode": {"inserted": 5}} and not report.problems
    rows = _episodes(clinic)
    assert {r[-1] for r in rows} == {"import"} and len(rows) == 5
    with store.open_store(clinic, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM episode_note").fetchall()[0][0] == 0
        table = con.execute("SELECT * FROM episode ORDER BY episode_id").fetchall()
    # the same file again: every row unchanged, the table as it was (same ids)
    (again,) = _import(clinic, EXAMPLES / "episode.csv")
    assert again.counts == {"episode": {"unchanged": 5}}
    # her treatments imported again: imported episodes stay, nothing is derived beside them
    _import(clinic, EXAMPLES / "treatment_exposure.csv")
    with store.open_store(clinic, read_only=True) as con:
        assert con.execute("SELECT * FROM episode ORDER BY episode_id").fetchall() == table
        assert con.execute("SELECT count(*) FROM episode_note").fetchall()[0][0] == 0
        denovo = care_setting(con, ids["EX-DENOVO-1"], as_of=AS_OF)
        neo = care_setting(con, ids["EX-NEO-1"], as_of=AS_OF)
        scopes = {mrn: recommendation_scope(con, ids[mrn]) for mrn in ids}
    # de novo metastatic: on her second line, no recurrence, origin said in the banner
    assert (denovo.setting, denovo.phase, denovo.line, denovo.regimen) == (
        "metastatic",
        "line",
        2,
        "capecitabine",
    )
    assert denovo.de_novo and denovo.recurrence_date is None and denovo.recorded
    assert [(x.number, x.end_reason) for x in denovo.lines] == [(1, "progression"), (2, None)]
    assert denovo.headline == (
        "Metastatic breast cancer (de novo) · line 2: capecitabine since 2025-11-24"
    )
    # neoadjuvant: early disease, in therapy before surgery; the adjuvant model does not apply
    assert (neo.setting, neo.phase, neo.since) == ("early", "neoadjuvant", dt.date(2026, 3, 2))
    assert neo.headline == "Early breast cancer · neoadjuvant therapy since 2026-03-02"
    assert neo.neoadjuvant_since == dt.date(2026, 3, 2) and not neo.recurred
    assert not scopes["EX-NEO-1"].in_scope and "neoadjuvant" in scopes["EX-NEO-1"].reason
    assert not scopes["EX-DENOVO-1"].in_scope and "de novo" in scopes["EX-DENOVO-1"].reason


def test_csv_parquet_and_fhir_carry_the_same_episodes(clinic, tmp_path):
    _import(clinic, EXAMPLES / "episode.csv")
    from_csv = _episodes(clinic)
    parquet = tmp_path / "episode.parquet"
    # typed as a hospital's export would be: nullable integers, dates (date32), nulls
    typed = pd.read_csv(EXAMPLES / "episode.csv").astype({"line_number": "Int64"})
    for col in ("start_date", "end_date"):
        typed[col] = (
            pd.to_datetime(typed[col]).dt.date.astype(object).where(typed[col].notna(), None)
        )
    typed.to_parquet(parquet)
    for name, file in (("parquet", parquet), ("fhir", EXAMPLES / "episodes.fhir.json")):
        db = _store(tmp_path / name)
        _import(db, *(EXAMPLES / n for n in RECORDS))
        (report,) = _import(db, file)
        assert report.counts["episode"] == {"inserted": 5}, name
        assert not _problems(report), name
        assert _episodes(db) == from_csv, name


def test_rejected_rows_say_why_and_the_valid_row_still_imports(clinic, tmp_path):
    rows = [
        "EX-DENOVO-1,local,disease,,2025-03-03,,,",  # line 2
        "EX-DENOVO-1,metastatic,maintenance,,2025-03-03,,,",
        "EX-DENOVO-1,metastatic,line,1,2025-03-17,2025-11-24,unknown,",
        "EX-NEO-1,early,adjuvant,,2026-05-01,2026-04-01,completed,",
        "EX-DENOVO-1,metastatic,line,,2025-03-17,,,",
        "EX-DENOVO-1,metastatic,line,3,2025-01-01,2025-06-01,progression,a",
        "EX-DENOVO-1,metastatic,line,4,2025-05-01,,,b",
        "EX-NOBODY,early,disease,,2025-01-01,,,",
        "EX-DENOVO-1,metastatic,neoadjuvant,,2025-03-03,,,",
        "EX-DENOVO-1,metastatic,disease,,2025-03-03,,,maybe",
        "EX-NEO-1,early,surveillance,,2026-05-01,,completed,",
        "EX-DENOVO-1,metastatic,line,5,2025-03-17,2025-04-01,progression,",
        "EX-DENOVO-1,metastatic,line,6,2025-02-01,2025-03-01,progression,",
        "EX-NODX-1,early,disease,,2026-01-05,,,",
        "EX-NEO-1,early,disease,,2026-02-16,,,",  # line 16: valid
    ]
    people = tmp_path / "person.csv"
    people.write_text(
        "mrn,given_name,family_name,birth_date,sex,site,menopausal_status\n"
        "EX-NODX-1,Ida,Berg,1970-01-01,F,North,post\n"
    )
    _import(clinic, people)
    path = tmp_path / "episode.csv"
    path.write_text(
        "mrn,setting,kind,line_number,start_date,end_date,end_reason,detail\n"
        + "\n".join(rows)
        + "\n"
    )
    report = imports.import_file(clinic, path, tmp_path / "reports")
    why = _problems(report)
    expected = {
        "line 2": "setting must be one of early, metastatic",
        "line 3": "kind must be one of disease",
        "line 4": "end_reason must be one of completed",
        "line 5": "end_date is before start_date",
        "line 6": "a line of therapy needs its line_number",
        "line 7": "line 3 (2025-01-01 to 2025-06-01) overlaps line 4 (2025-05-01 to ongoing) at line 8",
        "line 8": "line 4 (2025-05-01 to ongoing) overlaps line 3 (2025-01-01 to 2025-06-01) at line 7",
        "line 9": "no patient with MRN EX-NOBODY",
        "line 10": "a metastatic episode is one of disease, line, best_supportive_care",
        "line 11": "'de novo' or 'after recurrence'",
        "line 12": "end_reason is given without end_date",
        "line 13": "line 5 (2025-03-17 to 2025-04-01) is numbered against the dates of line 6",
        "line 14": "line 6 (2025-02-01 to 2025-03-01) is numbered against the dates of line 5",
        "line 15": "no diagnosis of the patient with MRN EX-NODX-1 in the store or this import",
    }
    assert set(why) == set(expected)
    for origin, text in expected.items():
        assert text in why[origin], (origin, why[origin])
    assert report.counts["episode"]["inserted"] == 1
    imported = [r for r in _episodes(clinic) if r[-1] == "import"]
    assert imported == [
        ("EX-NEO-1", "early", "disease", None, dt.date(2026, 2, 16), None, None, None, "import")
    ]
    # the de novo patient had no accepted row: her derived episodes stay; the other's are replaced
    sources = {(r[0], r[-1]) for r in _episodes(clinic)}
    assert sources == {("EX-DENOVO-1", "derived"), ("EX-NEO-1", "import")}
    assert Path(report.report_path).exists()


def test_lines_are_checked_against_the_lines_imported_before(clinic, tmp_path):
    _import(clinic, EXAMPLES / "episode.csv")
    header = "mrn,setting,kind,line_number,start_date,end_date,end_reason,detail\n"
    clash = tmp_path / "episode.clash.csv"
    clash.write_text(header + "EX-DENOVO-1,metastatic,line,3,2026-01-10,,,eribulin\n")
    report = imports.import_file(clinic, clash, tmp_path / "reports")
    assert _problems(report) == {
        "line 2": "line 3 (2026-01-10 to ongoing) overlaps line 2 (2025-11-24 to ongoing) imported earlier"
    }
    # line 2 ended by progression and line 3 after it: an update and an insert
    follow_up = tmp_path / "episode.update.csv"
    follow_up.write_text(
        header + "EX-DENOVO-1,metastatic,line,2,2025-11-24,2026-04-02,progression,capecitabine\n"
        "EX-DENOVO-1,metastatic,line,3,2026-04-02,,,eribulin\n"
    )
    report = imports.import_file(clinic, follow_up, tmp_path / "reports")
    assert report.counts == {"episode": {"updated": 1, "inserted": 1}}
    with store.open_store(clinic, read_only=True) as con:
        s = care_setting(con, _ids(clinic)["EX-DENOVO-1"], as_of=AS_OF)
    assert (s.line, s.regimen, s.since) == (3, "eribulin", dt.date(2026, 4, 2))
    assert [x.end_reason for x in s.lines] == ["progression", "progression", None]


def _bundle() -> dict:
    return json.loads((EXAMPLES / "episodes.fhir.json").read_text())


def test_episode_of_care_that_cannot_be_mapped_is_refused_with_its_reason(clinic, tmp_path):
    bundle = _bundle()
    entries = bundle["entry"]
    base = copy.deepcopy(entries[-1])  # line 2, active, no end

    def variant(eid: str, **change) -> dict:
        e = copy.deepcopy(base)
        e["resource"]["id"] = eid
        for key, value in change.items():
            if value is None:
                e["resource"].pop(key, None)
            else:
                e["resource"][key] = value
        return e

    entries += [
        variant("planned", status="planned"),
        variant("no-kind", type=[base["resource"]["type"][0]]),
        variant("finished-open", status="finished"),
        variant("active-ended", period={"start": "2025-11-24", "end": "2026-01-01"}),
        variant("no-start", period={"end": "2026-01-01"}, status="finished"),
        variant("stranger", patient={"reference": "Patient/nobody"}),
        variant("bad-status", status="sleeping"),
    ]
    path = tmp_path / "episodes.json"
    path.write_text(json.dumps(bundle))
    report = imports.import_file(clinic, path, tmp_path / "reports")
    why = {o.split(" ")[2]: r for o, r in _problems(report).items()}
    assert why == {
        "(EpisodeOfCare/planned)": "EpisodeOfCare with status planned is not imported "
        "(only active, finished, onhold: an episode she went through or is in)",
        "(EpisodeOfCare/no-kind)": "EpisodeOfCare needs a type coding of "
        "http://oncolens.org/fhir/CodeSystem/episode-kind (the kind of episode)",
        "(EpisodeOfCare/finished-open)": "a finished EpisodeOfCare needs period.end (when it ended)",
        "(EpisodeOfCare/active-ended)": "EpisodeOfCare is active but has period.end: give status "
        "finished, or no end",
        "(EpisodeOfCare/no-start)": "EpisodeOfCare needs period.start (when the episode began)",
        "(EpisodeOfCare/stranger)": "subject Patient/nobody is not a Patient of this bundle",
        # fhir.resources does not check the status code; the mapping does
        "(EpisodeOfCare/bad-status)": "EpisodeOfCare with status sleeping is not imported "
        "(only active, finished, onhold: an episode she went through or is in)",
    }
    assert report.counts["episode"]["inserted"] == 5  # the mappable ones still import


def test_the_demo_clinics_episodes_round_trip_through_a_file_and_replace_derived_ones(
    demo_db, tmp_path
):
    """Every episode the demo generator wrote passes the import's rules (no false refusals on a whole
    clinic), and a store whose episodes were derived gets the recorded course back, patient by patient."""
    query = """SELECT p.mrn, e.setting, e.kind, e.line_number, e.start_date, e.end_date, e.end_reason,
                      e.detail
               FROM episode AS e JOIN person AS p USING (person_id) ORDER BY e.person_id, e.start_date"""
    with store.open_store(demo_db, read_only=True) as con:
        written = con.execute(query).df()
        ids = [r[0] for r in con.execute("SELECT person_id FROM person").fetchall()]
        expected = {pid: care_setting(con, pid).to_json() for pid in ids}
    path = tmp_path / "episode.csv"
    written.to_csv(path, index=False)
    db = tmp_path / "derived.duckdb"
    db.write_bytes(demo_db.read_bytes())
    with store.open_store(db) as con:  # as a store made before episodes: every course derived
        con.execute("DELETE FROM episode")
        con.execute("DELETE FROM episode_note")
        derive_episodes(con)
        assert con.execute("SELECT DISTINCT source FROM episode").fetchall() == [("derived",)]
    report = imports.import_file(db, path, tmp_path / "reports")
    assert report.counts == {"episode": {"inserted": len(written)}}, report.problems[:5]
    with store.open_store(db, read_only=True) as con:
        assert con.execute("SELECT DISTINCT source FROM episode").fetchall() == [("import",)]
        assert con.execute("SELECT count(*) FROM episode_note").fetchall()[0][0] == 0
        imported = {pid: care_setting(con, pid).to_json() for pid in ids}
    assert imported == expected


def test_an_episode_file_is_recognised_by_its_columns_whatever_its_name(tmp_path):
    """Its columns include observation_period's required ones: the table whose column set holds every
    column of the file wins, and an observation period file is still read as one."""
    courses = tmp_path / "courses.csv"
    courses.write_text((EXAMPLES / "episode.csv").read_text())
    table, frame = imports.read_table_file(courses, "csv")
    assert table.name == "episode" and len(frame) == 5
    periods = tmp_path / "followup.csv"
    periods.write_text(
        "mrn,start_date,end_date,end_reason\nEX-NEO-1,2026-02-16,2026-06-30,data_cutoff\n"
    )
    assert imports.read_table_file(periods, "csv")[0].name == "observation_period"
