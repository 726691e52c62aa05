"""Imports refuse the impossible (issue 24): structural JSON/FHIR errors are one per-file error and
the other files still import; conflicting duplicates are refused with both rows named; dates
outside a life or the calendar are refused; nested Parquet columns are refused; every import is
audited with the file's sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics import store
from analytics.governance import audit
from analytics.imports import tabular as imports
from dashboard.cli.main import main

PERSON = "mrn,given_name,family_name,birth_date,sex,site,menopausal_status\n"
CONDITION = (
    "mrn,condition,diagnosis_date,laterality,stage,grade,tumour_size_mm,positive_nodes,er_fmol,pr_fmol,"
    "er_positive,pr_positive,her2_positive\n"
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "hospital.duckdb"
    store.connect(path, create=True).close()
    return path


def _reasons(report) -> dict[str, str]:
    return {p["origin"]: p["reason"] for p in report.problems if p["outcome"] == "rejected"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"resourceType": "Bundle", "entry": "notalist"}', "entry must be a list"),
        (
            '{"resourceType": "Bundle", "entry": [' + "[" * 100_000 + "]" * 100_000 + "]}",
            "nested too deeply",
        ),
        ('{"resourceType": "Bundle", "total": ' + "9" * 100_000 + "}", "not valid JSON"),
        ('{"resourceType": "Bundle", "entry": [1, 2]}', "entry 0 of the bundle"),
        ('{"resourceType": "Patient"}', "not a FHIR Bundle"),
        ("[]", "not a FHIR Bundle"),
    ],
)
def test_structural_fhir_errors_are_one_line_per_file_and_others_import(
    db, tmp_path, text, needle
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    good = tmp_path / "person.csv"
    good.write_text(PERSON + "H1,Ana,Lopez,1961-02-03,F,North,post\n")
    reports = {Path(r.file).name: r for r in imports.import_files(db, [bad, good])}
    assert reports["bad.json"].error is not None and needle in reports["bad.json"].error
    assert "\n" not in reports["bad.json"].error and len(reports["bad.json"].error) < 300
    assert reports["person.csv"].total("inserted") == 1


def test_the_cli_prints_one_line_and_exits_non_zero(db, tmp_path, capsys) -> None:
    bad = tmp_path / "deep.json"
    bad.write_text('{"resourceType": "Bundle", "entry": [' + "[" * 50_000 + "]" * 50_000 + "]}")
    assert main(["import", str(bad), "--db", str(db)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and "nested too deeply" in out.out


def test_conflicting_duplicates_are_refused_with_both_rows(db, tmp_path) -> None:
    f = tmp_path / "person.csv"
    f.write_text(
        PERSON
        + "H1,Ana,Lopez,1961-02-03,F,North,post\n"
        + "H1,Anna,Lopes,1971-02-03,F,North,post\n"  # same MRN, another name and birth date
        + "H2,Bea,Kim,1980-07-09,F,South,pre\n"
        + "H2,Bea,Kim,1980-07-09,F,South,pre\n"  # an exact repeat: harmless
    )
    [report] = imports.import_files(db, [f])
    reasons = _reasons(report)
    assert set(reasons) == {"line 2", "line 3"}
    assert "line 3" in reasons["line 2"] and "line 2" in reasons["line 3"]
    with store.open_store(db, read_only=True) as con:
        assert con.execute("SELECT mrn FROM person ORDER BY mrn").fetchall() == [("H2",)]


def test_dates_outside_a_life_or_the_calendar_are_refused(db, tmp_path) -> None:
    people = tmp_path / "person.csv"
    people.write_text(
        PERSON
        + "H1,Ana,Lopez,1961-02-03,F,North,post\n"
        + "H2,Bea,Kim,2090-07-09,F,South,pre\n"  # born in the future
        + "H3,Cy,Ng,1800-01-01,F,South,post\n"  # before 1900 and over 120
    )
    conditions = tmp_path / "condition_occurrence.csv"
    conditions.write_text(
        CONDITION
        + "H1,breast_cancer,2099-03-01,left,II,2,22.5,3,80,40,true,true,false\n"  # in the future
        + "H1,breast_cancer,1950-03-01,right,II,2,22.5,3,80,40,true,true,false\n"  # before her birth
        + "H1,breast_cancer,2020-03-01,left,II,2,22.5,3,80,40,true,true,false\n"
    )
    events = tmp_path / "outcome_event.csv"
    events.write_text("mrn,event_type,event_date\nH1,death,2022-01-01\n")
    measurements = tmp_path / "measurement.csv"
    measurements.write_text(
        "mrn,measurement_date,concept,value,unit,study_uid\n"
        "H1,2021-06-01,ca15_3,31.5,U/mL,\n"
        "H1,2023-06-01,ca15_3,35.0,U/mL,\n"  # after her death
    )
    reports = {
        Path(r.file).name: r
        for r in imports.import_files(db, [people, conditions, events, measurements])
    }
    person = _reasons(reports["person.csv"])
    assert "in the future" in person["line 3"]
    assert "before 1900-01-01" in person["line 4"] and "older than 120" in person["line 4"]
    condition = _reasons(reports["condition_occurrence.csv"])
    assert (
        "in the future" in condition["line 2"]
        and "before the patient's birth" in condition["line 3"]
    )
    assert "after the patient's recorded death" in _reasons(reports["measurement.csv"])["line 3"]
    assert reports["condition_occurrence.csv"].total("inserted") == 1
    assert reports["measurement.csv"].total("inserted") == 1


def test_nested_parquet_columns_are_refused(db, tmp_path) -> None:
    f = tmp_path / "person.parquet"
    table = pa.table(
        {
            "mrn": ["H1"],
            "given_name": [["Ana", "Maria"]],  # a list where one value belongs
            "family_name": [{"first": "Lopez"}],
            "birth_date": ["1961-02-03"],
            "sex": ["F"],
            "site": ["North"],
            "menopausal_status": ["post"],
        }
    )
    pq.write_table(table, f)
    [report] = imports.import_files(db, [f])
    assert "nested columns" in report.error and "family_name, given_name" in report.error
    flat = tmp_path / "flat" / "person.parquet"
    flat.parent.mkdir()
    pd.DataFrame(
        {
            "mrn": ["H1"],
            "given_name": ["Ana"],
            "family_name": ["Lopez"],
            "birth_date": ["1961-02-03"],
            "sex": ["F"],
            "site": ["North"],
            "menopausal_status": ["post"],
        }
    ).to_parquet(flat)
    assert imports.import_files(db, [flat])[0].total("inserted") == 1


def test_every_import_is_audited_with_the_file_hash(db, tmp_path) -> None:
    f = tmp_path / "person.csv"
    f.write_text(PERSON + "H1,Ana,Lopez,1961-02-03,F,North,post\n")
    imports.import_files(db, [f], actor="cli:tester")
    with store.open_store(db, read_only=True) as con:
        actor, details = con.execute(
            "SELECT actor, details FROM audit_event WHERE action = 'import' ORDER BY event_id DESC LIMIT 1"
        ).fetchone()
    details = json.loads(details)
    assert actor == "cli:tester" and details["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert details["counts"]["person"]["inserted"] == 1 and "Lopez" not in json.dumps(details)
    assert audit.verify_store(db).ok
