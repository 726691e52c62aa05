"""Store: schema creation, idempotent migration, constraints, error handling."""

from __future__ import annotations

import duckdb
import pytest

from analytics import store


@pytest.fixture()
def con(tmp_path):
    c = store.connect(tmp_path / "s.duckdb", create=True)
    yield c
    c.close()


def _person(con, pid=1, **overrides):
    row = dict(
        person_id=pid,
        mrn=f"MRN{pid:08d}",
        given_name="A",
        family_name="B",
        birth_date="1970-01-01",
        sex="F",
        site="North",
        menopausal_status="post",
    )
    row.update(overrides)
    con.execute(f"INSERT INTO person VALUES ({', '.join('?' * len(row))})", list(row.values()))


def test_schema_created_with_version(con):
    assert store.schema_version(con) == store.SCHEMA_VERSION
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables"
        ).fetchall()
    }
    for t in (
        "main.person",
        "main.condition_occurrence",
        "main.treatment_exposure",
        "main.measurement",
        "main.imaging_study",
        "main.imaging_series",
        "main.imaging_instance",
        "main.outcome_event",
        "main.ai_finding",
        "main.audit_event",
        "truth.potential_outcome",
        "truth.patient_parameters",
    ):
        assert t in tables


def test_migration_is_idempotent(tmp_path):
    path = tmp_path / "m.duckdb"
    for _ in range(3):
        with store.open_store(path, create=True) as c:
            assert store.migrate(c) == store.SCHEMA_VERSION
    with store.open_store(path, read_only=True) as c:
        assert c.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(
            store.MIGRATIONS
        )


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "n.duckdb"
    with store.open_store(path, create=True) as c:
        c.execute("INSERT INTO schema_version VALUES (99, 'future', now()::TIMESTAMP)")
    with pytest.raises(store.StoreError, match="newer"):
        store.connect(path)


@pytest.mark.parametrize(
    "overrides",
    [dict(sex="X"), dict(menopausal_status="peri"), dict(mrn=None), dict(birth_date=None)],
)
def test_person_constraints_reject_bad_rows(con, overrides):
    with pytest.raises(duckdb.ConstraintException):
        _person(con, **overrides)


def test_primary_key_rejects_duplicates(con):
    _person(con, 1)
    with pytest.raises(duckdb.ConstraintException):
        _person(con, 1, mrn="MRN-other")


@pytest.mark.parametrize(
    "sql, params",
    [
        (
            "INSERT INTO condition_occurrence VALUES (1, 1, 'breast_cancer', '2020-01-01', 'left', 'V', 2, 20, 1, 10, 10, true, true, false)",
            [],
        ),
        (
            "INSERT INTO condition_occurrence VALUES (1, 1, 'breast_cancer', '2020-01-01', 'left', 'II', 4, 20, 1, 10, 10, true, true, false)",
            [],
        ),
        (
            "INSERT INTO condition_occurrence VALUES (1, 1, 'breast_cancer', '2020-01-01', 'left', 'II', 2, -3, 1, 10, 10, true, true, false)",
            [],
        ),
        (
            "INSERT INTO treatment_exposure VALUES (1, 1, 'drug', 'chemotherapy', 'x', 1, NULL, '2020-02-01', '2020-01-01')",
            [],
        ),
        (
            "INSERT INTO treatment_exposure VALUES (1, 1, 'drug', 'homeopathy', 'x', 1, NULL, '2020-02-01', NULL)",
            [],
        ),
        (
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) VALUES (1, 1, '2020-01-01', 'lesion_longest_diameter', -1, 'mm', 'clinic', NULL)",
            [],
        ),
        (
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) VALUES (1, 1, '2020-01-01', 'lesion_longest_diameter', 10, 'cm', 'clinic', NULL)",
            [],
        ),
        ("INSERT INTO outcome_event VALUES (1, 1, 'cure', '2020-01-01')", []),
        ("INSERT INTO truth.potential_outcome VALUES (1, 'surgery_only', 100, 0.5, 100)", []),
        (
            "INSERT INTO ai_finding VALUES (1, 1, 'x', 'm', '1', 'malignant', 1.5, NULL, now(), NULL)",
            [],
        ),
    ],
)
def test_check_constraints_reject_bad_rows(con, sql, params):
    _person(con, 1)
    with pytest.raises(duckdb.ConstraintException):
        con.execute(sql, params)


def test_valid_rows_are_accepted(con):
    _person(con, 1)
    con.execute(
        "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) VALUES (1, 1, '2020-01-01', 'lesion_longest_diameter', 12.5, 'mm', 'radiology', NULL)"
    )
    con.execute("INSERT INTO outcome_event VALUES (1, 1, 'recurrence', '2021-01-01')")
    assert store.table_counts(con)["measurement"] == 1


def test_missing_file_is_not_created_silently(tmp_path):
    with pytest.raises(store.MissingDatabaseError, match="oncolens demo"):
        store.connect(tmp_path / "typo.duckdb")
    assert not (tmp_path / "typo.duckdb").exists()


def test_non_duckdb_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.duckdb"
    bad.write_text("this is not a database")
    with pytest.raises(store.NotADatabaseError, match="not"):
        store.connect(bad)
    with pytest.raises(store.NotADatabaseError):
        store.connect(tmp_path)  # a folder


def test_plain_duckdb_file_is_not_an_oncolens_store(tmp_path):
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(store.NotADatabaseError, match="not an OncoLens store"):
        store.connect(path, read_only=True)


def test_read_only_connection_shares_the_process_instance(tmp_path):
    path = tmp_path / "r.duckdb"
    writer = store.connect(path, create=True)
    try:
        reader = store.connect(path, read_only=True)  # same process, other mode: must not fail
        assert store.schema_version(reader) == store.SCHEMA_VERSION
        reader.close()
    finally:
        writer.close()


@pytest.mark.parametrize("read_only", [True, False])
def test_an_opened_store_can_register_a_dataframe(demo_db, read_only):
    """Opening must not leave a half-read result behind (DuckDB then refuses register())."""
    import pandas as pd

    with store.open_store(demo_db, read_only=read_only) as con:
        con.register("ids", pd.DataFrame({"person_id": [1, 2]}))
        assert (
            con.execute("SELECT count(*) FROM ids JOIN person USING (person_id)").fetchone()[0] == 2
        )


def _version_1_store(path):
    """A store as OncoLens 0.1 wrote it: schema version 1 only, with a patient and an audit event."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR NOT NULL, "
        "applied_at TIMESTAMP NOT NULL)"
    )
    first = store.MIGRATIONS[0]
    assert first.version == 1
    for statement in first.statements:
        con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (1, ?, now()::TIMESTAMP)", [first.description])
    _person(con, 5)
    con.execute(
        "INSERT INTO audit_event (occurred_at, actor, action) VALUES (now()::TIMESTAMP, 'a', 'x')"
    )
    con.close()


def test_a_version_1_store_migrates_to_the_current_version_keeping_its_rows(tmp_path):
    from analytics.treatment.decisions import make_decision, patient_decisions, record_decision

    path = tmp_path / "old.duckdb"
    _version_1_store(path)
    with store.open_store(path, read_only=True) as con:  # reading never migrates...
        assert store.schema_version(con) == 1
        assert patient_decisions(con, 5).empty  # ...and a v1 store has no decisions
    with store.open_store(path) as con:  # the first write does
        assert store.schema_version(con) == store.SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM person").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM audit_event").fetchone()[0] == 1
        versions = con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(v,) for v in range(1, store.SCHEMA_VERSION + 1)]
    decision = make_decision(
        person_id=5,
        model_version="v",
        recommended="endocrine",
        options=("endocrine", "chemotherapy"),
        actor="dr-b",
    )
    record_decision(path, decision)
    with store.open_store(path, read_only=True) as con:
        assert patient_decisions(con, 5)["chosen"].tolist() == ["endocrine"]
        # the audit sequence continued after the v1 event instead of colliding with it
        assert con.execute("SELECT max(event_id) FROM audit_event").fetchone()[0] == 2


def test_the_version_2_migration_is_additive():
    first, second = store.MIGRATIONS[0], store.MIGRATIONS[1]
    assert second.version == 2
    assert all(
        s.lstrip().upper().startswith(("CREATE TABLE", "CREATE SEQUENCE"))
        for s in second.statements
    )
    assert first.version == 1 and len(first.statements) > 10  # version 1 stays as released


def _version_2_store(path, events: int = 3):
    """A store as OncoLens wrote it before sign-in: schema version 2, with a patient and unchained events."""
    _version_1_store(path)
    con = duckdb.connect(str(path))
    for statement in store.MIGRATIONS[1].statements:
        con.execute(statement)
    con.execute(
        "INSERT INTO schema_version VALUES (2, ?, now()::TIMESTAMP)",
        [store.MIGRATIONS[1].description],
    )
    for i in range(events - 1):
        con.execute(
            "INSERT INTO audit_event (occurred_at, actor, action, subject, details) "
            "VALUES (now()::TIMESTAMP, 'demo-user', 'view_patient', ?, '{\"page\": \"patient\"}')",
            [str(i)],
        )
    con.close()


def test_a_version_2_store_migrates_to_version_3_sealing_its_events(tmp_path):
    from analytics.governance import audit, pseudonyms

    path = tmp_path / "v2.duckdb"
    _version_2_store(path)
    with store.open_store(path, read_only=True) as con:  # reading never migrates
        assert store.schema_version(con) == 2
        assert pseudonyms.store_secret(con) is None
    with store.open_store(path) as con:
        assert (
            store.schema_version(con) == store.SCHEMA_VERSION
        )  # 3, and any later additive version
        assert con.execute("SELECT count(*) FROM app_user").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM audit_event WHERE hash IS NULL").fetchone()[0] == 0
        key = pseudonyms.store_secret(con)
        assert key is not None and len(key) == 32
        kept = con.execute(
            "SELECT actor, action, subject FROM audit_event ORDER BY event_id"
        ).fetchall()
    assert kept[1:] == [("demo-user", "view_patient", "0"), ("demo-user", "view_patient", "1")]
    result = audit.verify_store(path)
    assert result.ok and result.events == 3  # the old events are now sealed
    audit.record_event(path, actor="dr-a", action="sign_in")
    assert audit.verify_store(path).events == 4  # and new ones chain after them
    with store.open_store(path) as con:  # opening again changes nothing
        assert pseudonyms.store_secret(con) == key
        assert (
            con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == store.SCHEMA_VERSION
        )


def test_the_version_3_migration_is_additive():
    third = store.MIGRATIONS[2]
    assert third.version == 3 <= store.SCHEMA_VERSION
    for statement in third.statements:
        text = statement.lstrip().upper()
        assert text.startswith(
            ("CREATE TABLE IF NOT EXISTS", "ALTER TABLE AUDIT_EVENT ADD COLUMN IF NOT EXISTS")
        )
    assert third.data_step is not None  # the secret and the seal
    assert store.MIGRATIONS[1].data_step is None and len(store.MIGRATIONS[1].statements) == 2


def test_the_version_3_statements_can_run_twice(tmp_path):
    """Idempotent statements: a half-applied migration (crash before its version row) re-runs cleanly."""
    path = tmp_path / "twice.duckdb"
    with store.open_store(path, create=True) as con:
        for statement in store.MIGRATIONS[2].statements:
            con.execute(statement)
        assert store.schema_version(con) == store.SCHEMA_VERSION


def test_account_table_constraints(con):
    with pytest.raises(duckdb.ConstraintException):  # an unknown role
        con.execute(
            "INSERT INTO app_user (username, role, password_hash, email, created_at) VALUES ('a', 'researcher', 'h', NULL, now()::TIMESTAMP)"
        )
    with pytest.raises(duckdb.ConstraintException):  # neither a password nor an SSO identity
        con.execute(
            "INSERT INTO app_user (username, role, password_hash, email, created_at) VALUES ('b', 'admin', NULL, NULL, now()::TIMESTAMP)"
        )
    con.execute(
        "INSERT INTO app_user (username, role, password_hash, email, created_at) VALUES ('c', 'admin', NULL, 'c@x.org', now()::TIMESTAMP)"
    )
    with pytest.raises(duckdb.ConstraintException):  # one identity, one account
        con.execute(
            "INSERT INTO app_user (username, role, password_hash, email, created_at) VALUES ('d', 'admin', NULL, 'c@x.org', now()::TIMESTAMP)"
        )
