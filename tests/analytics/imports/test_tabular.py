"""analytics.imports.tabular: CSV, Parquet and FHIR round trips, rejected rows with reasons, idempotent re-imports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analytics import store
from analytics.cohorts import base as cohort_base
from analytics.cohorts import builder as cohorts
from analytics.imports import tabular as imports
from dashboard.cli.main import main


@pytest.fixture
def empty_db(tmp_path: Path) -> Path:
    path = tmp_path / "hospital.duckdb"
    store.connect(path, create=True).close()
    return path


def _count(db: Path, table: str) -> int:
    with store.open_store(db, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _write_csvs(folder: Path) -> list[Path]:
    files = {
        "person.csv": "mrn,given_name,family_name,birth_date,sex,site,menopausal_status\n"
        "H1,Ana,Lopez,1961-02-03,F,North,post\n"
        "H2,Bea,Kim,1980-07-09,F,South,pre\n"
        "H3,Cy,Ng,1975-01-01,X,South,pre\n",  # bad sex
        "condition_occurrence.csv": "mrn,condition,diagnosis_date,laterality,stage,grade,tumour_size_mm,positive_nodes,er_fmol,pr_fmol,"
        "er_positive,pr_positive,her2_positive\n"
        "H1,breast_cancer,2020-03-01,left,II,2,22.5,3,80,40,true,true,false\n"
        "H2,breast_cancer,2021-05-05,right,III,two,31,5,5,3,false,false,true\n"  # grade not a number
        "H9,breast_cancer,2021-05-05,right,III,3,31,5,5,3,false,false,true\n",  # unknown patient
        "observation_period.csv": "mrn,start_date,end_date,end_reason\n"
        "H1,2020-03-01,2025-06-30,data_cutoff\n"
        "H2,2021-05-05,2020-01-01,data_cutoff\n",  # ends before it starts
        "outcome_event.csv": "mrn,event_type,event_date\nH1,recurrence,2023-03-01\n",
        "treatment_exposure.csv": "mrn,exposure_type,treatment_class,agent,line_of_therapy,regimen,start_date,end_date\n"
        "H1,drug,endocrine,letrozole,1,endocrine,2020-04-01,\n"
        "H1,drug,endocrine,letrozole,1,endocrine,2020-04-01,\n",  # repeated row
        "measurement.csv": "mrn,measurement_date,concept,value,unit,study_uid\n"
        "H1,2020-03-01,ca15_3,31.5,U/mL,\n"
        "H1,2020-06-01,lesion_longest_diameter,-4,mm,\n",  # negative diameter
    }
    paths = []
    for name, text in files.items():
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


def test_csv_import_keeps_valid_rows_reports_every_other_and_reimports_as_a_no_op(
    empty_db, tmp_path
):
    paths = _write_csvs(tmp_path)
    reports = imports.import_files(empty_db, list(reversed(paths)), tmp_path / "reports")
    by_table = {next(iter(r.counts)) if r.counts else r.file: r for r in reports}
    assert [Path(r.file).name for r in reports][
        0
    ] == "person.csv"  # persons first, whatever the order
    assert all(r.error is None for r in reports)
    assert (_count(empty_db, "person"), _count(empty_db, "condition_occurrence")) == (2, 1)
    assert (_count(empty_db, "treatment_exposure"), _count(empty_db, "measurement")) == (1, 1)
    assert by_table["person"].total("rejected") == 1
    problems = pd.concat(pd.read_csv(r.report_path) for r in reports if r.report_path)
    reasons = " | ".join(problems["reason"])
    for expected in (
        "sex must be one of F, M",
        "grade is not a number",
        "no patient with MRN H9",
        "end_date is before start_date",
        "repeats an earlier row",
        "lesion diameter",
    ):
        assert expected in reasons
    # every row of every file has exactly one outcome
    assert (
        sum(r.total(o) for r in reports for o in ("inserted", "updated", "unchanged", "rejected"))
        == 13
    )
    with store.open_store(empty_db, read_only=True) as con:
        row = con.execute(
            "SELECT tumour_size_mm, er_positive, grade FROM condition_occurrence"
        ).fetchone()
        assert row == (22.5, True, 2)
        assert con.execute("SELECT source FROM measurement").fetchone()[0] == "import"
        assert cohort_base.base_is_fresh(con)
        assert cohorts.build_cohort(con).n == 1  # H1 has diagnosis + follow-up
    again = imports.import_files(empty_db, paths, tmp_path / "reports")
    assert sum(r.total("inserted") + r.total("updated") for r in again) == 0
    assert (_count(empty_db, "person"), _count(empty_db, "treatment_exposure")) == (2, 1)


def test_a_changed_row_updates_instead_of_duplicating(empty_db, tmp_path):
    _write_csvs(tmp_path)
    imports.import_file(empty_db, tmp_path / "person.csv")
    (tmp_path / "person.csv").write_text(
        "mrn,given_name,family_name,birth_date,sex,site,menopausal_status\n"
        "H1,Ana,Lopez,1961-02-03,F,Central,post\n"
    )
    report = imports.import_file(empty_db, tmp_path / "person.csv")
    assert report.counts["person"] == {"updated": 1}
    with store.open_store(empty_db, read_only=True) as con:
        assert con.execute("SELECT site FROM person WHERE mrn = 'H1'").fetchone()[0] == "Central"


def test_parquet_round_trip_of_demo_patients_gives_the_same_cohort(demo_db, empty_db, tmp_path):
    ids = list(range(1, 41))
    with store.open_store(demo_db, read_only=True) as con:
        con.execute("CREATE TEMP TABLE ids AS SELECT unnest(?) AS person_id", [ids])
        q = {
            "person": "SELECT mrn, given_name, family_name, birth_date, sex, site, menopausal_status FROM person",
            "observation_period": "SELECT mrn, start_date, end_date, end_reason FROM observation_period",
            "condition_occurrence": "SELECT mrn, condition, diagnosis_date, laterality, stage, grade, "
            "tumour_size_mm, positive_nodes, er_fmol, pr_fmol, er_positive, pr_positive, "
            "her2_positive FROM condition_occurrence",
            "treatment_exposure": "SELECT mrn, exposure_type, treatment_class, agent, line_of_therapy, regimen, "
            "start_date, end_date FROM treatment_exposure",
            "outcome_event": "SELECT mrn, event_type, event_date FROM outcome_event",
        }
        for table, sql in q.items():
            base = (
                sql.replace(f"FROM {table}", f"FROM {table} JOIN person USING (person_id)")
                if table != "person"
                else sql
            )
            con.execute(f"{base} WHERE person_id IN (SELECT person_id FROM ids)").df().to_parquet(
                tmp_path / f"{table}.parquet"
            )
        expected = cohorts.cohort_patients(con).query("person_id <= 40").drop(columns="person_id")
    reports = imports.import_files(empty_db, sorted(tmp_path.glob("*.parquet")))
    assert all(r.total("rejected") == 0 and r.error is None for r in reports), [
        r.summary() for r in reports
    ]
    with store.open_store(empty_db, read_only=True) as con:
        got = cohorts.cohort_patients(con).drop(columns="person_id")
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )
    again = imports.import_files(empty_db, sorted(tmp_path.glob("*.parquet")))
    assert sum(r.total("inserted") for r in again) == 0


def _bundle() -> dict:
    onco = "http://oncolens.org/fhir"
    code = f"{onco}/CodeSystem/oncolens"

    def obs(i, key, **value):
        return {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "subject": {"reference": "urn:uuid:p1"},
            "effectiveDateTime": "2021-02-01",
            "code": {"coding": [{"system": code, "code": key}]},
            **value,
        }

    resources = [
        {
            "fullUrl": "urn:uuid:p1",
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "gender": "female",
                "birthDate": "1962-04-05",
                "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "F100"}],
                "name": [{"family": "Rossi", "given": ["Maria"]}],
                "extension": [
                    {"url": f"{onco}/StructureDefinition/menopausal-status", "valueCode": "post"},
                    {"url": f"{onco}/StructureDefinition/site", "valueString": "North"},
                ],
            },
        },
        {
            "resource": {
                "resourceType": "Patient",
                "id": "bad",
                "birthDate": "1970-13-01",
                "identifier": [{"value": "F200"}],
            }
        },  # invalid date
        {
            "resource": {
                "resourceType": "Condition",
                "id": "c1",
                "subject": {"reference": "urn:uuid:p1"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
                "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "7771000"}]}],
                "stage": [{"summary": {"text": "II"}}],
                "onsetDateTime": "2021-02-01",
            }
        },
        {"resource": obs(1, "grade", valueInteger=2)},
        {"resource": obs(2, "tumour_size_mm", valueQuantity={"value": 18.0, "unit": "mm"})},
        {"resource": obs(3, "positive_nodes", valueQuantity={"value": 2})},
        {"resource": obs(4, "er_fmol", valueQuantity={"value": 55})},
        {"resource": obs(5, "pr_fmol", valueQuantity={"value": 20})},
        {"resource": obs(6, "er_positive", valueBoolean=True)},
        {"resource": obs(7, "pr_positive", valueBoolean=True)},
        {"resource": obs(8, "her2_positive", valueBoolean=False)},
        {"resource": obs(9, "ca15_3", valueQuantity={"value": 28.0, "unit": "U/mL"})},
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o10",
                "status": "final",
                "subject": {"reference": "Patient/nobody"},
                "code": {"text": "ca15_3"},
                "valueQuantity": {"value": 1.0, "unit": "U/mL"},
            }
        },  # unknown subject
        {
            "resource": {
                "resourceType": "Procedure",
                "id": "s1",
                "status": "completed",
                "subject": {"reference": "urn:uuid:p1"},
                "code": {"text": "mastectomy"},
                "performedDateTime": "2021-03-01",
                "extension": [
                    {"url": f"{onco}/StructureDefinition/treatment-class", "valueCode": "surgery"}
                ],
            }
        },
        {
            "resource": {
                "resourceType": "MedicationStatement",
                "id": "m1",
                "status": "active",
                "subject": {"reference": "urn:uuid:p1"},
                "medicationCodeableConcept": {"text": "letrozole"},
                "effectivePeriod": {"start": "2021-04-01"},
                "extension": [
                    {
                        "url": f"{onco}/StructureDefinition/treatment-class",
                        "valueCode": "endocrine",
                    },
                    {"url": f"{onco}/StructureDefinition/regimen", "valueCode": "endocrine"},
                ],
            }
        },
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": "m2",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "urn:uuid:p1"},
                "medicationCodeableConcept": {"text": "paclitaxel"},
                "authoredOn": "2021-04-02",
                "extension": [
                    {
                        "url": f"{onco}/StructureDefinition/treatment-class",
                        "valueCode": "chemotherapy",
                    }
                ],
            }
        },
        {
            "resource": {
                "resourceType": "ImagingStudy",
                "id": "i1",
                "status": "available",
                "subject": {"reference": "urn:uuid:p1"},
                "started": "2021-02-01T10:00:00Z",
                "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4"}],
                "modality": [
                    {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MG"}
                ],
            }
        },
        {"resource": {"resourceType": "Encounter", "id": "e1"}},  # not imported
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": resources}


def test_fhir_bundle_round_trip_validates_each_resource(empty_db, tmp_path):
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(_bundle()))
    report = imports.import_file(empty_db, path, tmp_path / "r")
    assert report.error is None
    assert report.counts["person"]["inserted"] == 1
    assert report.total("rejected") == 3  # invalid Patient, unknown subject, Encounter
    reasons = " | ".join(p["reason"] for p in report.problems)
    assert (
        "invalid Patient: birthDate" in reasons
        and "Patient/nobody" in reasons
        and "Encounter" in reasons
    )
    with store.open_store(empty_db, read_only=True) as con:
        c = con.execute(
            "SELECT laterality, stage, grade, tumour_size_mm, er_positive, her2_positive "
            "FROM condition_occurrence"
        ).fetchone()
        assert c == ("left", "II", 2, 18.0, True, False)
        assert sorted(
            r[0] for r in con.execute("SELECT treatment_class FROM treatment_exposure").fetchall()
        ) == ["chemotherapy", "endocrine", "surgery"]
        assert con.execute("SELECT study_uid, modality FROM imaging_study").fetchone() == (
            "1.2.3.4",
            "MG",
        )
        assert con.execute("SELECT concept, value FROM measurement").fetchall() == [
            ("ca15_3", 28.0)
        ]
        assert (
            con.execute("SELECT end_reason FROM observation_period").fetchone()[0] == "data_cutoff"
        )
        assert cohorts.build_cohort(con).n == 1
    again = imports.import_file(empty_db, path, tmp_path / "r")
    assert again.total("inserted") == 0 and _count(empty_db, "treatment_exposure") == 3


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("person.csv", b"PAR1\x00\x01binary", "named like a CSV file but holds Parquet"),
        ("person.parquet", b"mrn,given_name\nH1,Ana\n", "named like a Parquet file but holds text"),
        ("bundle.json", b"mrn,given_name\n", "named like a FHIR JSON bundle but holds text"),
        ("bundle.json", b'{"resourceType": "Patient"}', "not a FHIR Bundle"),
        ("notes.xlsx", b"x", "unsupported file type"),
        ("stuff.csv", b"colour,size\nred,2\n", "cannot tell which table"),
    ],
)
def test_files_that_are_not_what_they_say_are_refused_and_change_nothing(
    empty_db, tmp_path, name, content, message
):
    path = tmp_path / name
    path.write_bytes(content)
    report = imports.import_file(empty_db, path)
    assert report.error is not None and message in report.error
    assert _count(empty_db, "person") == 0


def test_cli_import_prints_a_summary_and_fails_when_rows_were_rejected(empty_db, tmp_path, capsys):
    paths = _write_csvs(tmp_path)
    assert (
        main(["import", str(paths[0]), "--db", str(empty_db), "--report-dir", str(tmp_path / "r")])
        == 1
    )
    out = capsys.readouterr().out
    assert "2 inserted" in out and "1 rejected" in out and "report:" in out
    assert main(["import", str(paths[3]), "--db", str(empty_db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["outcome_event"] == {"inserted": 1}
    assert main(["import", str(paths[0]), "--db", str(tmp_path / "missing.duckdb")]) == 1
    assert "no OncoLens database" in capsys.readouterr().err


def test_a_failure_inside_the_transaction_leaves_nothing_half_written(
    empty_db, tmp_path, monkeypatch
):
    from analytics.cohorts import base as base_module

    paths = _write_csvs(tmp_path)
    imports.import_file(empty_db, paths[0])  # persons land

    def broken(con):
        raise RuntimeError("disk full")

    monkeypatch.setattr(base_module, "refresh_base", broken)  # fails after the rows were inserted
    with pytest.raises(RuntimeError, match="disk full"):
        imports.import_file(empty_db, paths[1])
    assert _count(empty_db, "condition_occurrence") == 0 and _count(empty_db, "person") == 2


def test_an_import_waits_while_another_process_holds_the_store(empty_db, tmp_path):
    """The app (or any process) holding the file makes the import wait its turn, not fail."""
    import subprocess
    import sys
    import time

    paths = _write_csvs(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            "c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(1.5); c.close()",
            str(empty_db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        report = imports.import_file(empty_db, paths[0], tmp_path / "r")
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert waited >= 0.5 and report.counts["person"]["inserted"] == 2
