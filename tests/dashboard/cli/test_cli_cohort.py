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
