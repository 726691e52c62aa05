"""analytics.governance.quality and `oncolens quality`: a store with planted problems fails exactly the
right checks; the clean demo passes; failing rows name patients only by pseudonym."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analytics import store
from analytics.governance import pseudonyms, quality
from dashboard.cli.main import main

ORPHAN_ID = 900_000_001
PLANTED = {
    "treatment_after_diagnosis",
    "measurement_value_plausible",
    "orphan_measurement",
    "duplicate_patient_name_birth",
    "measurement_unit_expected",
}


def plant_problems(db: Path) -> dict[str, int]:
    """A treatment before diagnosis, a 900 mm lesion, an orphan measurement, a duplicate patient and a
    haemoglobin in g/L; returns the person ids each problem belongs to."""
    with store.open_store(db) as con:
        treated, exposure, dx = con.execute(
            "SELECT t.person_id, t.exposure_id, c.diagnosis_date FROM treatment_exposure t "
            "JOIN condition_occurrence c USING (person_id) ORDER BY t.exposure_id LIMIT 1"
        ).fetchone()
        con.execute(
            "UPDATE treatment_exposure SET start_date = ?::DATE - INTERVAL 60 DAY WHERE exposure_id = ?",
            [dx, exposure],
        )
        lesion_pid, lesion_id = con.execute(
            "SELECT person_id, measurement_id FROM measurement "
            "WHERE concept = 'lesion_longest_diameter' ORDER BY measurement_id LIMIT 1"
        ).fetchone()
        con.execute("UPDATE measurement SET value = 900 WHERE measurement_id = ?", [lesion_id])
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) VALUES ((SELECT max(measurement_id) + 1 FROM measurement), ?, "
            "DATE '2020-01-01', 'ca15_3', 20.0, 'U/mL', 'import', NULL)",
            [ORPHAN_ID],
        )
        original = con.execute("SELECT min(person_id) FROM person").fetchone()[0]
        twin = con.execute("SELECT max(person_id) + 1 FROM person").fetchone()[0]
        # the same woman registered again under another MRN, with her diagnosis and follow-up
        con.execute(
            "INSERT INTO person SELECT ?, 'DUP-' || mrn, given_name, family_name, birth_date, sex, site, "
            "menopausal_status FROM person WHERE person_id = ?",
            [twin, original],
        )
        con.execute(
            "INSERT INTO observation_period SELECT ?, start_date, end_date, end_reason "
            "FROM observation_period WHERE person_id = ?",
            [twin, original],
        )
        con.execute(
            "INSERT INTO condition_occurrence SELECT (SELECT max(condition_id) + 1 FROM condition_occurrence), "
            "? , * EXCLUDE (condition_id, person_id) FROM condition_occurrence WHERE person_id = ? LIMIT 1",
            [twin, original],
        )
        unit_pid, unit_id = con.execute(
            "SELECT person_id, measurement_id FROM measurement WHERE concept = 'haemoglobin' "
            "ORDER BY measurement_id LIMIT 1"
        ).fetchone()
        con.execute(
            "UPDATE measurement SET unit = 'g/L', value = value * 10 WHERE measurement_id = ?",
            [unit_id],
        )
    return {
        "treated": treated,
        "lesion": lesion_pid,
        "original": original,
        "twin": twin,
        "unit": unit_pid,
    }


@pytest.fixture(scope="module")
def planted(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("quality") / "planted.duckdb"))
    return db, plant_problems(db)


def _results(db: Path) -> dict[str, quality.CheckResult]:
    with store.open_store(db, read_only=True) as con:
        return {r.name: r for r in quality.run_checks(con)}


def test_the_clean_demo_passes_every_check(demo_db) -> None:
    results = _results(demo_db)
    assert set(results) == set(quality.BY_NAME) and len(results) >= 20
    assert {r.category for r in results.values()} == set(quality.CATEGORIES)
    failed = {n for n, r in results.items() if r.passed is not True}
    assert not failed, {n: results[n].sample for n in failed}
    assert results["measurement_unit_expected"].n_checked > 1000  # it looked at rows


def test_planted_problems_fail_exactly_their_checks(planted) -> None:
    db, ids = planted
    results = _results(db)
    failed = {n for n, r in results.items() if r.passed is False}
    assert failed == PLANTED
    assert all(results[n].n_failed == 1 for n in PLANTED - {"duplicate_patient_name_birth"})
    assert results["duplicate_patient_name_birth"].n_failed == 2  # both records of the woman
    with store.open_store(db, read_only=True) as con:
        key = pseudonyms.store_secret(con)
        names = con.execute(
            "SELECT given_name, family_name, mrn FROM person WHERE person_id = ?", [ids["original"]]
        ).fetchone()
    assert key is not None
    expected = {
        "treatment_after_diagnosis": ids["treated"],
        "measurement_value_plausible": ids["lesion"],
        "orphan_measurement": ORPHAN_ID,
        "measurement_unit_expected": ids["unit"],
    }
    for name, pid in expected.items():
        assert results[name].sample[0]["person"] == pseudonyms.pseudonym(key, pid), name
    dup = {row["person"] for row in results["duplicate_patient_name_birth"].sample}
    assert dup == {
        pseudonyms.pseudonym(key, ids["original"]),
        pseudonyms.pseudonym(key, ids["twin"]),
    }
    text = json.dumps([r.to_json() for r in results.values()])
    assert not any(part in text for part in names)  # never a name or an MRN
    assert f'"{ids["twin"]}"' not in text and f"person_id={ids['twin']}" not in text


def test_failing_rows_are_pseudonymised_and_say_why(planted) -> None:
    db, ids = planted
    with store.open_store(db, read_only=True) as con:
        rows = quality.failing_rows(con, "measurement_value_plausible")
        unit = quality.failing_rows(con, "measurement_unit_expected")
        with pytest.raises(quality.UnknownCheckError):
            quality.failing_rows(con, "no_such_check")
    assert list(rows.columns) == ["patient", "row", "detail"] and len(rows) == 1
    assert rows["patient"].iloc[0].startswith("P-") and "900" in rows["detail"].iloc[0]
    assert "g/L (expected g/dL)" in unit["detail"].iloc[0]


def test_a_threshold_lets_a_few_failures_pass(demo_db, tmp_path) -> None:
    db = Path(shutil.copy(demo_db, tmp_path / "few.duckdb"))
    with store.open_store(db) as con:
        con.execute(
            "UPDATE measurement SET study_uid = NULL WHERE measurement_id = (SELECT min(measurement_id) "
            "FROM measurement WHERE source = 'radiology' AND concept = 'lesion_longest_diameter')"
        )
    r = _results(db)["lesion_reading_has_study"]
    assert r.n_failed == 1 and 0 < r.pct <= r.threshold_pct and r.passed is True


def test_a_check_whose_table_is_missing_says_so(demo_db, tmp_path) -> None:
    db = Path(shutil.copy(demo_db, tmp_path / "old.duckdb"))
    with store.open_store(db) as con:
        con.execute("DROP TABLE episode")
    r = _results(db)
    assert r["orphan_episode"].passed is None and "episode" in (r["orphan_episode"].error or "")
    assert r["orphan_measurement"].passed is True
    counts = quality.summary(list(r.values())).set_index("category")
    assert (
        counts.loc["plausibility", "not_run"] == 3
    )  # orphan_episode, records before birth and after death
    assert counts["checks"].sum() == len(quality.CHECKS)


def test_cli_quality_json_exit_codes_and_a_bad_store(planted, demo_db, tmp_path, capsys) -> None:
    db, _ = planted
    assert main(["quality", "--db", str(db), "--json"]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(quality.CHECKS)
    keys = {"name", "category", "table", "description", "threshold", "n_checked", "n_failed"}
    assert all(keys | {"pct", "passed", "sample"} <= set(line) for line in lines)
    assert {line["name"] for line in lines if line["passed"] is False} == PLANTED
    assert main(["quality", "--db", str(demo_db)]) == 0
    assert f"{len(quality.CHECKS)} of {len(quality.CHECKS)} checks pass" in capsys.readouterr().out
    junk = tmp_path / "junk.duckdb"
    junk.write_text("not a database")
    assert main(["quality", "--db", str(junk), "--json"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1
