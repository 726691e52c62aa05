"""AI measurements behind the sign-off (analytics.governance.lifecycle.measurements): where approval
is required, the rows of weights not approved reach neither the Patient page's record, the
worklist's readings, the forecasts' input nor the count of new AI reads; approving the weights
brings them back; without the setting they are all read. A copy of the 300-patient demo with AI
readings planted for two patients (one approved, one withheld version; one row from before
version 16, which names no weights)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from analytics import store
from analytics.forecast import data as forecast_data
from analytics.forecast.patient import ForecastError, patient_forecast
from analytics.forecast.tumour import default_prior
from analytics.governance import users
from analytics.governance.lifecycle import approvals
from analytics.governance.lifecycle import measurements as ai_measurements
from analytics.patients import patient_summary
from analytics.worklist import buckets, changes, events
from analytics.worklist import review as worklist_review
from analytics.worklist import stored as worklist_store

CONCEPT = "lesion_longest_diameter"
OK = ("ct_lesion", "1.0.0", "a" * 64)  # approved
HELD = ("ct_lesion", "1.0.0", "b" * 64)  # the same version string, retrained: not approved
# her withheld AI readings (a large regrowth: visible in every reader if it leaked)
HELD_MM = (61.5, 66.5)


@pytest.fixture(scope="module")
def planted(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``a``: a patient with readings, given two AI readings of withheld weights, one of approved
    weights and one that names no weights (in the year before the data cut-off); ``b``: a patient with no reading
    but two AI readings of withheld weights. Approval required; ``OK`` approved."""
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("ai_meas") / "clinic.duckdb"))
    with store.open_store(db) as con:
        a = con.execute(
            "SELECT person_id FROM measurement WHERE concept = ? "
            "GROUP BY person_id HAVING count(*) >= 3 ORDER BY person_id LIMIT 1",
            [CONCEPT],
        ).fetchall()[0][0]
        # before the data cut-off: the forecast's cleaning keeps them
        last = forecast_data.data_cutoff(con) - dt.timedelta(days=300)
        b = con.execute(
            "SELECT min(person_id) FROM person WHERE person_id NOT IN "
            "(SELECT person_id FROM measurement WHERE concept = ?) "
            "AND person_id IN (SELECT person_id FROM condition_occurrence)",
            [CONCEPT],
        ).fetchall()[0][0]
        rows = [
            (a, last + dt.timedelta(days=60), HELD_MM[0], HELD),
            (a, last + dt.timedelta(days=120), HELD_MM[1], HELD),
            (a, last + dt.timedelta(days=180), 41.25, OK),
            (a, last + dt.timedelta(days=240), 43.75, (None, None, None)),
            (b, last + dt.timedelta(days=60), HELD_MM[0], HELD),
            (b, last + dt.timedelta(days=120), HELD_MM[1], HELD),
        ]
        first = con.execute("SELECT max(measurement_id) + 1 FROM measurement").fetchall()[0][0]
        for i, (pid, day, mm, (name, version, sha)) in enumerate(rows, start=int(first)):
            con.execute(
                "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, "
                "value, unit, source, study_uid, model_name, model_version, weights_sha256) "
                "VALUES (?, ?, ?, ?, ?, 'mm', 'ai', NULL, ?, ?, ?)",
                [i, pid, day, CONCEPT, mm, name, version, sha],
            )
        users.add_user(con, "board1", "ethics_board", password="board-password-1")
        users.add_user(con, "admin1", "admin", password="admin-password-1")
        _decide(con, OK, approvals.APPROVED)
        approvals.set_require_approval(con, True, actor="admin1")
    return {"db": db, "a": int(a), "b": int(b)}


def _decide(con, key: tuple[str, str, str], decision: str) -> int:
    name, version, sha = key
    return approvals.decide(
        con,
        model_name=name,
        model_version=version,
        version_id=sha,
        decision=decision,
        comment="read the card",
        actor="board1",
    )


def _values(frame, column: str = "mm") -> set[float]:
    return {round(float(v), 2) for v in frame[column]}


def _seen(con, pid: int) -> dict[str, set[float]]:
    """The AI values each reader gives for one patient (planted values only)."""
    planted = {*HELD_MM, 41.25, 43.75}
    record = forecast_data.patient_record(con, pid)
    assert record is not None
    segments = forecast_data.lesion_segments(con)
    readers = {
        "patient": _values(patient_summary(con, pid).measurements, "value"),
        "worklist": _values(events.readings(con, [pid], dt.date(2100, 1, 1))),
        "forecast_one": _values(forecast_data.lesion_frame(con, "one", (pid,))),
        "forecast_all": _values(forecast_data.lesion_frame(con, "all")),
        "segments": _values(segments[segments["person_id"] == pid]),
        "record": {round(float(v), 2) for v in record.mm},
        "what_changed": _values(
            changes.since_last_look(
                con, pid, dt.datetime(1900, 1, 1), dt.date(2100, 1, 1)
            ).readings,
            "value",
        ),
    }
    return {k: v & planted for k, v in readers.items()}


def test_required_withholds_unapproved_and_unknown_weights_from_every_reader(planted):
    with store.open_store(planted["db"], read_only=True) as con:
        seen = _seen(con, planted["a"])
    assert all(values == {41.25} for values in seen.values()), seen


def test_without_the_setting_every_ai_reading_is_read(planted, tmp_path):
    db = Path(shutil.copy(planted["db"], tmp_path / "open.duckdb"))
    with store.open_store(db) as con:
        approvals.set_require_approval(con, False, actor="admin1")
        seen = _seen(con, planted["a"])
    assert all(values == {*HELD_MM, 41.25, 43.75} for values in seen.values()), seen


def test_approving_the_weights_brings_their_readings_back(planted, tmp_path):
    db = Path(shutil.copy(planted["db"], tmp_path / "approved.duckdb"))
    with store.open_store(db) as con:
        _decide(con, HELD, approvals.APPROVED)
        seen = _seen(con, planted["a"])
        assert all(values == {*HELD_MM, 41.25} for values in seen.values()), seen
        _decide(con, HELD, approvals.REJECTED)  # the latest decision counts
        assert _seen(con, planted["a"])["patient"] == {41.25}


def test_a_forecast_left_without_readings_says_so(planted, tmp_path):
    """Her only lesion readings are withheld: the forecast's "no usable measurement" path (with no
    treatment model here, the error the page shows in place of a forecast), not a fit of a
    withheld read; approved, the same forecast draws them."""
    db = Path(shutil.copy(planted["db"], tmp_path / "forecast.duckdb"))
    with store.open_store(db) as con:
        with pytest.raises(ForecastError, match="no usable lesion measurement"):
            patient_forecast(con, planted["b"], default_prior())
        _decide(con, HELD, approvals.APPROVED)
        shown = patient_forecast(con, planted["b"], default_prior())
    assert sorted(_values(shown.tumour.observed)) == list(HELD_MM)


def test_a_decision_makes_the_stored_worklist_stale(planted, tmp_path):
    db = Path(shutil.copy(planted["db"], tmp_path / "stale.duckdb"))
    with store.open_store(db) as con:
        worklist_store.refresh(con)
        assert worklist_store.status(con, None).fresh
        before = ai_measurements.fingerprint(con)
        _decide(con, HELD, approvals.APPROVED)
        assert ai_measurements.fingerprint(con) != before
        status = worklist_store.status(con, None)
    assert not status.fresh
    assert status.reasons == (
        "the ethics board's sign-off changed since it was computed (a decision or the approval "
        "setting), and with it which AI readings it may use",
    )


def test_new_ai_findings_counts_only_approved_reads_when_required(planted, tmp_path):
    db = Path(shutil.copy(planted["db"], tmp_path / "reads.duckdb"))
    pid = planted["a"]
    with store.open_store(db) as con:
        top = con.execute("SELECT coalesce(max(finding_id), 0) FROM ai_finding").fetchall()[0][0]
        for i, (name, version, sha) in enumerate((OK, HELD, HELD), start=int(top) + 1):
            con.execute(
                "INSERT INTO ai_finding (finding_id, person_id, model_name, model_version, "
                "predicted_class, probability, created_at, weights_sha256) "
                "VALUES (?, ?, ?, ?, 'malignant', 0.8, now()::TIMESTAMP, ?)",
                [i, pid, name, version, sha],
            )

        def count(signoff: buckets.SignOff | None) -> int:
            out = worklist_review.changes_since_review(con, [pid], signoff)
            return int(out.loc[0, "new_ai_findings"])

        everyone = count(None)
        approved_only = buckets.SignOff(approved_reads=frozenset({OK}), required=True)
        assert count(approved_only) == everyone - 2
        assert count(buckets.SignOff(approved_reads=frozenset({OK}), required=False)) == everyone
        assert count(buckets.SignOff(approved_reads=frozenset({OK, HELD}), required=True)) == (
            everyone
        )
        # the page's own rows carry the same rule (a patient on the list: she is not)
        worklist_store.refresh(con)
        listed = worklist_store.read_page(con, 1, signoff=approved_only).rows
        assert len(listed) == 1
        other = int(listed["person_id"].iloc[0])
        top = con.execute("SELECT max(finding_id) FROM ai_finding").fetchall()[0][0]
        for i, (name, version, sha) in enumerate((OK, HELD, HELD), start=int(top) + 1):
            con.execute(
                "INSERT INTO ai_finding (finding_id, person_id, model_name, model_version, "
                "predicted_class, probability, created_at, weights_sha256) "
                "VALUES (?, ?, ?, ?, 'malignant', 0.8, now()::TIMESTAMP, ?)",
                [i, other, name, version, sha],
            )
        rows = worklist_store.read_page(con, 100_000, signoff=approved_only).rows
        mine = rows[rows["person_id"] == other]
        on_page = worklist_review.with_changes(con, mine, approved_only)
        ungated = worklist_review.with_changes(con, mine, None)
        assert int(on_page["new_ai_findings"].iloc[0]) == (
            int(ungated["new_ai_findings"].iloc[0]) - 2
        )


def test_a_store_read_before_version_16_withholds_every_ai_reading_when_required(planted, tmp_path):
    """Opened read-only (never migrated) before version 16, no AI row can name its weights: none is
    read where approval is required; the readings of other sources are."""
    db = Path(shutil.copy(planted["db"], tmp_path / "v15.duckdb"))
    with store.open_store(db) as con:
        con.execute("DELETE FROM schema_version WHERE version >= 16")
    with store.open_store(db, read_only=True) as con:
        assert store.schema_version(con) == 15
        seen = _seen(con, planted["a"])
        record = patient_summary(con, planted["a"]).measurements
    assert all(values == set() for values in seen.values()), seen
    assert (record["source"] != "ai").all() and len(record) > 0


def test_a_decision_that_shows_or_hides_nothing_leaves_the_stored_worklist_current(
    planted, tmp_path
):
    """Only what a reader can see counts: a decision on a model that wrote no measurement, or any
    decision while approval is not required, leaves the stored worklist current (above 20,000
    patients a stale one is shown "out of date" until someone refreshes it)."""
    db = Path(shutil.copy(planted["db"], tmp_path / "unmoved.duckdb"))
    with store.open_store(db) as con:
        worklist_store.refresh(con)
        _decide(con, ("treatment", "2.0.0", "c" * 64), approvals.APPROVED)
        assert worklist_store.status(con, None).fresh
        approvals.set_require_approval(con, False, actor="admin1")
        worklist_store.refresh(con)
        _decide(con, HELD, approvals.APPROVED)
        assert worklist_store.status(con, None).fresh


def test_a_decision_recorded_by_the_board_ranks_its_patients_again(planted, tmp_path):
    """Through the function the Sign-off tab calls: withholding a version's weights takes its
    readings out of the stored worklist at once, and the list stays current (it used to keep the
    withheld reading, shown as "out of date" above 20,000 patients and by ``oncolens worklist``)."""
    # lazy: the dashboard's services layer, which the decision goes through
    from dashboard.services import lifecycle as lifecycle_service

    db = Path(shutil.copy(planted["db"], tmp_path / "ranked.duckdb"))
    with store.open_store(db) as con:
        _decide(con, HELD, approvals.APPROVED)
        worklist_store.refresh(con)
        pid = int(worklist_store.read_page(con, 1).rows["person_id"].iloc[0])
        # her newest lesion reading, by the weights the board will withhold
        day = forecast_data.data_cutoff(con) - dt.timedelta(days=5)
        top = con.execute("SELECT max(measurement_id) + 1 FROM measurement").fetchall()[0][0]
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, "
            "value, unit, source, study_uid, model_name, model_version, weights_sha256) "
            "VALUES (?, ?, ?, ?, 99.5, 'mm', 'ai', NULL, ?, ?, ?)",
            [int(top), pid, day, CONCEPT, *HELD],
        )
        worklist_store.refresh(con)

    def readings() -> int:
        """Her readings the stored worklist counted (the list current, as the page reads it)."""
        with store.open_store(db, read_only=True) as con:
            assert worklist_store.status(con, None).fresh
            rows = worklist_store.read_page(con, 100_000).rows
        return int(rows.loc[rows["person_id"] == pid, "n_measurements"].iloc[0])

    counted = readings()  # approved: the retrained weights' reading among them
    lifecycle_service.record_decision(
        db,
        model_name=HELD[0],
        model_version=HELD[1],
        version_id=HELD[2],
        decision=approvals.REJECTED,
        comment="the retrained weights were not validated",
        actor="board1",
        role="ethics_board",
    )
    assert readings() == counted - 1
    lifecycle_service.set_requirement(db, False, actor="admin1", role="admin")
    assert readings() == counted  # no approval required: every reading again
