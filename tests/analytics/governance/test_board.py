"""analytics.governance.board: what the Governance page reads, as typed results."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from analytics.governance.board import (
    DECISION_RATE_COLUMNS,
    AuditFilterOptions,
    audit_filter_options,
    decision_rates,
)


def test_decision_rates_count_accepts_overrides_and_choices_per_model_version():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE treatment_decision (person_id INTEGER, model_version VARCHAR, "
        "recommended VARCHAR, accepted BOOLEAN)"
    )
    con.execute(
        "INSERT INTO treatment_decision VALUES (1, 'v1', 'a', true), (2, 'v1', 'a', false), "
        "(2, 'v1', NULL, false), (3, 'v2', 'b', true)"
    )
    rates = decision_rates(con)
    assert (rates.decisions, rates.accepted, rates.overridden, rates.no_recommendation) == (
        4,
        2,
        1,
        1,
    )
    assert rates.accept_rate == pytest.approx(2 / 3)  # the choice without a recommendation is out
    assert list(rates.by_version.columns) == list(DECISION_RATE_COLUMNS)
    assert rates.by_version[["model_version", "decisions", "patients"]].values.tolist() == [
        ["v1", 3, 2],
        ["v2", 1, 1],
    ]


def test_a_store_without_decisions_has_zero_rates_and_no_accept_rate():
    rates = decision_rates(duckdb.connect())  # schema version 1: no decisions table yet
    assert rates.decisions == 0 and rates.accept_rate is None and rates.by_version.empty
    assert list(rates.by_version.columns) == list(DECISION_RATE_COLUMNS)


def test_audit_filter_options_offer_what_the_trail_holds():
    con = duckdb.connect()
    con.execute("CREATE TABLE audit_event (action VARCHAR, actor VARCHAR, occurred_at TIMESTAMP)")
    assert audit_filter_options(con) == AuditFilterOptions((), (), None, None)
    con.execute(
        "INSERT INTO audit_event VALUES ('view_patient', 'b', '2026-01-02 10:00'), "
        "('sign_in', 'a', '2026-01-05 23:59'), ('view_patient', 'a', '2026-01-03 00:00')"
    )
    assert audit_filter_options(con) == AuditFilterOptions(
        ("sign_in", "view_patient"), ("a", "b"), dt.date(2026, 1, 2), dt.date(2026, 1, 5)
    )
