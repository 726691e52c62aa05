"""`oncolens cohort`: the JSON contract, the plain table, and bad filters as exit 1 with a message."""

from __future__ import annotations

import json
import subprocess
import sys

from dashboard.cli.main import main


def test_cohort_json_contract_in_a_real_process(demo_db):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dashboard.cli.main",
            "cohort",
            "--filter",
            "age >= 40",
            "--filter",
            "stage in II,III",
            "--group-by",
            "er_status",
            "--db",
            str(demo_db),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) >= {"n", "groups", "logrank_p"}
    assert [g["name"] for g in out["groups"]] == ["positive", "negative"]
    assert sum(g["n"] for g in out["groups"]) == out["n"] > 0
    for g in out["groups"]:
        assert set(g) >= {"name", "n", "events", "median_days", "km"}
        days = [p["day"] for p in g["km"]]
        assert days == sorted(days) and days[0] == 0
        assert all(0 <= p["lo"] <= p["s"] <= p["hi"] <= 1 for p in g["km"])
    assert 0 <= out["logrank_p"] <= 1


def test_cohort_plain_output_says_treatment_was_not_randomised(demo_db, capsys):
    assert main(["cohort", "--group-by", "first_line_regimen", "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    assert "log-rank p" in out and "not randomised" in out and "HR" in out


def test_cohort_bad_filter_and_empty_cohort_exit_1_with_a_message(demo_db, capsys):
    assert main(["cohort", "--filter", "shoe_size > 3", "--db", str(demo_db), "--json"]) == 1
    captured = capsys.readouterr()
    assert "unknown field 'shoe_size'" in captured.err and "Traceback" not in captured.err
    assert json.loads(captured.out)["error"].startswith("unknown field")
    assert main(["cohort", "--filter", "age > 150", "--db", str(demo_db)]) == 1
    assert "no patient matches" in capsys.readouterr().err
    assert main(["cohort", "--group-by", "tumour_size", "--db", str(demo_db)]) == 1
    assert "cannot group by" in capsys.readouterr().err


def test_cohort_definition_file_save_and_reopen_by_id_audited(demo_db, tmp_path, capsys):
    """`--definition FILE.json` (AND/OR groups), `--save NAME`, `--saved ID`: the same cohort each time,
    the save and the opening in the audit trail, bad files and unknown ids as exit 1 with one line."""
    import shutil

    from analytics import store

    db = tmp_path / "cli.duckdb"
    shutil.copyfile(demo_db, db)
    spec = tmp_path / "older-g3-or-her2.json"
    spec.write_text(
        json.dumps({"groups": [["age >= 50", "grade = 3"], ["her2_status = positive"]]}),
        encoding="utf-8",
    )
    args = ["cohort", "--definition", str(spec), "--db", str(db), "--json"]
    assert main([*args, "--save", "Older G3 or HER2+"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["definition"]["words"] == (
        "(Age at diagnosis ≥ 50 years AND Grade is 3) OR (HER2 status is positive)"
    )
    assert first["filters"] is None and first["smd"] == []  # one group compared: no SMD
    cohort_id = first["saved_cohort"]["cohort_id"]
    with store.open_store(db, read_only=True) as con:
        everyone = con.execute(
            "SELECT count(*) FROM cohort_base WHERE (age_years >= 50 AND grade = '3') "
            "OR her2_status = 'positive'"
        ).fetchone()[0]
    assert first["n"] == everyone

    assert (
        main(
            [
                "cohort",
                "--saved",
                str(cohort_id),
                "--group-by",
                "er_status",
                "--db",
                str(db),
                "--json",
            ]
        )
        == 0
    )
    again = json.loads(capsys.readouterr().out)
    assert again["n"] == first["n"] and again["saved_cohort"]["name"] == "Older G3 or HER2+"
    assert {s["variable"] for s in again["smd"]} >= {"Tumour size (mm)", "Stage"}
    with store.open_store(db, read_only=True) as con:
        actions = [
            a
            for (a,) in con.execute(
                "SELECT action FROM audit_event WHERE action LIKE 'cohort_%' ORDER BY event_id"
            ).fetchall()
        ]
    assert actions == ["cohort_saved", "cohort_opened"]

    assert main(["cohort", "--saved", "999", "--db", str(db)]) == 1
    assert "no saved cohort 999" in capsys.readouterr().err
    assert main(["cohort", "--definition", str(tmp_path / "nope.json"), "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert "cannot read the definition file" in err and "Traceback" not in err
    spec.write_text('{"groups": [["age >= fifty"]]}', encoding="utf-8")
    assert main(["cohort", "--definition", str(spec), "--db", str(db)]) == 1
    assert "age takes a number" in capsys.readouterr().err


def test_cohort_plain_output_names_the_imbalanced_variables(demo_db, capsys):
    assert main(["cohort", "--group-by", "er_status", "--db", str(demo_db)]) == 0
    out = capsys.readouterr().out
    line = next(
        x for x in out.splitlines() if x.startswith("groups differ at baseline (Table 1 SMD > 0.1)")
    )
    assert (
        "Oestrogen receptor (fmol/mg)" in line and "ER status" not in line
    )  # not the grouping itself
