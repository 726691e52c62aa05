"""analytics.treatment.decisions: accept / override rules, one transaction with the audit event, history."""

from __future__ import annotations

import json

import duckdb
import pytest

from analytics import store
from analytics.treatment.decisions import (
    DecisionError,
    make_decision,
    patient_decisions,
    record_decision,
    shown_summary,
)
from tests.analytics.treatment.examples import recommendation

OPTIONS = ("endocrine", "chemotherapy", "chemo_endocrine")


def _decide(**overrides):
    args = dict(
        person_id=7,
        model_version="xgb_pseudo-abc",
        recommended="endocrine",
        options=OPTIONS,
        actor="dr-a",
        chosen=None,
        reason=None,
    )
    args.update(overrides)
    return make_decision(**args)


def test_accepting_takes_the_recommended_option_and_needs_no_reason():
    d = _decide()
    assert d.accepted and d.chosen == "endocrine" and d.reason is None


def test_choosing_the_recommended_option_explicitly_is_an_acceptance():
    assert _decide(chosen="endocrine", reason="  ").accepted


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_an_override_needs_a_reason(reason):
    with pytest.raises(DecisionError, match="reason for overriding"):
        _decide(chosen="chemotherapy", reason=reason)


def test_an_override_with_a_reason_is_not_accepted():
    d = _decide(chosen="chemotherapy", reason=" patient declines endocrine therapy ")
    assert not d.accepted and d.reason == "patient declines endocrine therapy"


def test_no_clear_difference_has_nothing_to_accept_and_a_choice_needs_a_reason():
    with pytest.raises(DecisionError, match="no recommendation to accept"):
        _decide(recommended=None)
    with pytest.raises(DecisionError, match="without a clear difference"):
        _decide(recommended=None, chosen="endocrine")
    d = _decide(recommended=None, chosen="endocrine", reason="tumour board preference")
    assert not d.accepted


@pytest.mark.parametrize(
    "overrides", [dict(chosen="surgery_only", reason="x"), dict(recommended="homeopathy")]
)
def test_unknown_options_are_refused(overrides):
    with pytest.raises(DecisionError, match="not one of"):
        _decide(**overrides)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "d.duckdb"
    store.connect(path, create=True).close()
    return path


def test_decision_and_audit_event_are_stored_together(db):
    shown = {"benefit": 0.05, "benefit_ci": [0.01, 0.09]}
    first = record_decision(db, _decide(), shown=shown)
    second = record_decision(db, _decide(chosen="chemotherapy", reason="prior cardiotoxicity"))
    assert second > first
    with store.open_store(db, read_only=True) as con:
        history = patient_decisions(con, 7)
        events = con.execute(
            "SELECT subject, actor, details FROM audit_event WHERE action = 'treatment_decision' ORDER BY event_id"
        ).fetchall()
        stored_shown = con.execute(
            "SELECT shown FROM treatment_decision WHERE decision_id = ?", [first]
        ).fetchone()[0]
        assert patient_decisions(con, 8).empty
    assert history["decision_id"].tolist() == [second, first]  # newest first
    assert history["accepted"].tolist() == [False, True]
    assert history["reason"].tolist()[0] == "prior cardiotoxicity"
    assert json.loads(stored_shown) == shown
    assert [(e[0], e[1]) for e in events] == [("7", "dr-a"), ("7", "dr-a")]
    details = json.loads(events[1][2])
    assert (
        details["decision_id"] == second
        and details["chosen"] == "chemotherapy"
        and not details["accepted"]
    )
    assert "prior cardiotoxicity" not in events[1][2]  # free text stays out of the trail


def test_a_failed_audit_write_leaves_no_decision(db, monkeypatch):
    from analytics.governance import audit

    def broken(con, **kwargs):
        raise duckdb.Error("disk full")

    monkeypatch.setattr(audit, "append_event", broken)
    with pytest.raises(duckdb.Error):
        record_decision(db, _decide())
    with store.open_store(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM treatment_decision").fetchone()[0] == 0


def test_the_table_refuses_what_the_rules_refuse(db):
    with store.open_store(db) as con:
        insert = (
            "INSERT INTO treatment_decision (person_id, model_version, recommended, chosen, accepted, "
            "reason, actor, decided_at) VALUES (1, 'v', ?, ?, ?, ?, 'a', now()::TIMESTAMP)"
        )
        for params in (
            ["endocrine", "chemotherapy", True, None],  # "accepted" another option
            [None, "endocrine", True, "x"],  # accepted without a recommendation
            ["endocrine", "chemotherapy", False, " "],
        ):  # override without a reason
            with pytest.raises(duckdb.ConstraintException):
                con.execute(insert, params)
        con.execute(insert, ["endocrine", "chemotherapy", False, "declined"])


def test_shown_summary_keeps_the_figures_not_the_explanation():
    rec = recommendation(clear=False)
    shown = shown_summary(rec)
    assert (
        shown
        == {  # the CLI's JSON keys: what the decision's row and audit event have always held
            "model_version": "xgb_pseudo-0123456789ab",
            "statement": rec.statement,
            "recommended": None,
            "best_predicted": "chemo_endocrine",
            "compared_with": "endocrine",
            "benefit": 0.07,
            "benefit_ci": [-0.01, 0.15],
            "options": [
                {
                    "treatment": "endocrine",
                    "rfs_5y": 0.64,
                    "rfs_5y_ci": [0.52, 0.76],
                    "rmst_days": 1500.0,
                },
                {
                    "treatment": "chemo_endocrine",
                    "rfs_5y": 0.71,
                    "rfs_5y_ci": [0.61, 0.81],
                    "rmst_days": 1600.0,
                },
            ],
        }
    )
    json.dumps(shown)
