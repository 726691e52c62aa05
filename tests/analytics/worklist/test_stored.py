"""analytics.worklist.stored: the stored ranking equals the on-the-fly one, writers keep it current, staleness is said."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics import store
from analytics.imports import tabular as imports
from analytics.worklist import buckets
from analytics.worklist import ranking as worklist
from analytics.worklist import stored as worklist_store


@pytest.fixture
def clinic_db(demo_db: Path, tmp_path: Path) -> Path:
    """A private copy of the 300-patient demo store (the generator ranked its worklist)."""
    return Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))


def _stored(con) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM {worklist_store.ENTRY_TABLE}").df()


def _assert_same(stored: pd.DataFrame, now: pd.DataFrame) -> None:
    """Equal rows; times compared at one resolution (DuckDB reads microseconds, pandas makes nanoseconds)."""

    def norm(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True).copy()
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]):
                frame[column] = frame[column].astype("datetime64[ns]")
        return frame

    pd.testing.assert_frame_equal(norm(stored), norm(now), check_dtype=False)


def test_the_demo_generator_stores_a_current_ranking_in_rank_order(demo_con):
    status = worklist_store.status(demo_con, None)
    assert status.fresh and status.reasons == () and status.model_version is None
    rows = _stored(demo_con)  # physical order, as written
    assert status.entries == len(rows) > 30  # metastatic patients on a line (issue 17)
    assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
    pd.testing.assert_frame_equal(worklist.rank_order(rows).reset_index(drop=True), rows)


@pytest.fixture(scope="module")
def ranked_now(demo_db: Path) -> pd.DataFrame:
    """The demo store's whole ranking computed now (``worklist.ranked``), once for the six pages
    below (1-2 s each time; they only read the store, and run one after the other)."""
    with store.open_store(demo_db, read_only=True) as con:
        return worklist.ranked(con)


@pytest.mark.parametrize(
    ("limit", "offset", "only_progression", "site"),
    [
        (25, 0, False, None),
        (10, 37, False, None),
        (25, 0, True, None),
        (7, 3, False, "North"),
        (25, 5, True, "South"),
        (25, 10_000, False, None),
    ],
)
def test_a_stored_page_equals_the_ranking_computed_now(
    demo_con, ranked_now, limit, offset, only_progression, site
):
    stored = worklist_store.read_page(demo_con, limit, offset, only_progression, site)
    now = buckets.read_frame_page(
        demo_con,
        ranked_now.copy(),
        worklist_store.as_of_date(demo_con),
        limit,
        offset,
        only_progression=only_progression,
        site=site,
    )
    assert stored.total == now.total and (stored.limit, stored.offset) == (now.limit, now.offset)
    assert stored.buckets == now.buckets and sum(stored.buckets.values()) == stored.total
    assert list(stored.rows.columns) == list(buckets.PAGE_COLUMNS)
    pd.testing.assert_frame_equal(stored.rows, now.rows, check_dtype=False)


def test_patients_without_a_forecast_are_stored_last_as_on_the_fly(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2020-01-01", 600.0))  # no plausible reading: no forecast, risk NULL
    tiny.person(2)
    tiny.lesion(2, ("2020-01-01", 20.0), ("2020-06-01", 30.0))
    tiny.person(3)
    tiny.lesion(3, ("2020-01-01", 20.0), ("2020-06-01", 12.0))
    assert worklist_store.refresh(tiny.con).mode == "full"
    stored = _stored(tiny.con).sort_values("rank")
    assert stored["person_id"].iloc[-1] == 1 and pd.isna(stored["risk_6m"].iloc[-1])
    now = worklist.worklist(tiny.con).rows
    assert stored["person_id"].tolist() == now["person_id"].tolist()


def test_a_writer_that_does_not_refresh_leaves_it_marked_stale(clinic_db):
    with store.open_store(clinic_db) as con:
        pid = int(
            con.execute("SELECT person_id FROM worklist_entry ORDER BY rank LIMIT 1").fetchone()[0]
        )
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) VALUES ((SELECT max(measurement_id) + 1 FROM measurement), ?, "
            "DATE '2026-06-01', 'lesion_longest_diameter', 5.0, 'mm', 'clinic', NULL)",
            [pid],
        )
        status = worklist_store.status(con, None)
    assert not status.fresh and "patient records changed" in status.reasons[0]


def test_model_method_and_today_changes_are_stale_with_their_reason(clinic_db, monkeypatch):
    with store.open_store(clinic_db) as con:
        assert "treatment model changed" in " ".join(worklist_store.status(con, "xgb-abc").reasons)
        monkeypatch.setattr(worklist_store, "METHOD_VERSION", worklist_store.METHOD_VERSION + 1)
        assert "ranking method changed" in " ".join(worklist_store.status(con, None).reasons)
        monkeypatch.undo()
        con.execute("UPDATE clinic_metadata SET value = '2026-12-31' WHERE key = 'data_cutoff'")
        reasons = worklist_store.status(con, None).reasons
    assert len(reasons) == 1 and "today is 2026-12-31" in reasons[0]


def _csv(folder: Path, mrn: str, day: str, mm: float) -> Path:
    path = folder / "measurement.csv"
    path.write_text(
        f"mrn,measurement_date,concept,value,unit,study_uid\n{mrn},{day},lesion_longest_diameter,{mm},mm,\n"
    )
    return path


def test_an_import_refreshes_only_the_patients_it_names(clinic_db, tmp_path):
    with store.open_store(clinic_db, read_only=True) as con:
        before = _stored(con).set_index("person_id")
    quiet = before[~before["progression"] & (before["nadir_mm"] > 5)].sort_values("rank")
    pid = int(quiet.index[-1])  # lowest-ranked patient not progressing
    report = imports.import_file(
        clinic_db,
        _csv(tmp_path, quiet.loc[pid, "mrn"], "2026-06-20", quiet.loc[pid, "nadir_mm"] * 3 + 10),
    )
    assert report.error is None and report.total("inserted") == 1
    with store.open_store(clinic_db, read_only=True) as con:
        status = worklist_store.status(con, None)
        after = _stored(con)
        now = worklist.ranked(
            con,
            prior=worklist_store._prior_from_json(
                con.execute("SELECT prior FROM worklist_state").fetchone()[0]
            ),
        )
    assert status.fresh
    assert after["rank"].tolist() == list(range(1, len(after) + 1))  # re-ranked, in rank order
    pd.testing.assert_frame_equal(worklist.rank_order(after).reset_index(drop=True), after)
    after = after.set_index("person_id")
    assert (
        after.loc[pid, "progression"]
        and after.loc[pid, "n_measurements"] == before.loc[pid, "n_measurements"] + 1
    )
    assert after.loc[pid, "rank"] < before.loc[pid, "rank"]  # she moved up
    others = before.index.drop(pid)
    cols = [c for c in worklist.WORKLIST_COLUMNS if c != "person_id"]
    pd.testing.assert_frame_equal(
        after.loc[others, cols], before.loc[others, cols]
    )  # untouched rows kept
    assert after.loc[others, "computed_at"].eq(before.loc[others, "computed_at"]).all()
    # Her row is what a full ranking computes now: flags exactly, the risk up to Monte-Carlo error.
    mine = now.set_index("person_id").loc[pid]
    flags = [
        "n_measurements",
        "latest_mm",
        "nadir_mm",
        "baseline_mm",
        "progression",
        "response",
        "regrowth_ratio",
    ]
    assert after.loc[pid, flags].tolist() == mine[flags].tolist()
    assert after.loc[pid, "risk_6m"] == pytest.approx(mine["risk_6m"], abs=0.1)


def test_an_import_naming_many_patients_ranks_everyone_again(clinic_db, tmp_path, monkeypatch):
    monkeypatch.setattr(worklist_store, "INCREMENTAL_MAX_SHARE", 0.0)
    with store.open_store(clinic_db, read_only=True) as con:
        mrn = con.execute("SELECT mrn FROM worklist_entry ORDER BY rank LIMIT 1").fetchone()[0]
        full_at = con.execute("SELECT full_refresh_at FROM worklist_state").fetchone()[0]
    imports.import_file(clinic_db, _csv(tmp_path, mrn, "2026-06-20", 40.0))
    with store.open_store(clinic_db, read_only=True) as con:
        assert worklist_store.status(con, None).fresh
        assert con.execute("SELECT full_refresh_at FROM worklist_state").fetchone()[0] > full_at
        stored = _stored(con).sort_values("rank")[list(worklist.WORKLIST_COLUMNS)]
        _assert_same(stored, worklist.worklist(con, 1000).rows)


def test_a_large_store_is_left_stale_by_a_writer_that_cannot_increment(
    clinic_db, tmp_path, monkeypatch
):
    """A different model since the last ranking: a writer of a big store does not rank it all under its lock."""
    monkeypatch.setattr(worklist_store, "WRITER_FULL_MAX_PATIENTS", 10)
    with store.open_store(clinic_db) as con:
        con.execute("UPDATE worklist_state SET model_version = 'xgb-old'")
        mrn = con.execute("SELECT mrn FROM worklist_entry LIMIT 1").fetchone()[0]
    report = imports.import_file(clinic_db, _csv(tmp_path, mrn, "2026-06-20", 40.0))
    assert report.error is None
    with store.open_store(clinic_db, read_only=True) as con:
        reasons = " ".join(worklist_store.status(con, None).reasons)
    assert "patient records changed" in reasons and "treatment model changed" in reasons


@pytest.mark.parametrize("large", [False, True])
def test_an_import_after_an_unrefreshed_write_never_hides_it(
    clinic_db, tmp_path, monkeypatch, large
):
    """Another writer left the rows stale: an import may not merely increment and call them current."""
    if large:
        monkeypatch.setattr(worklist_store, "WRITER_FULL_MAX_PATIENTS", 10)
    with store.open_store(clinic_db) as con:
        first, second = (
            r[0]
            for r in con.execute("SELECT mrn FROM worklist_entry ORDER BY rank LIMIT 2").fetchall()
        )
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) SELECT max(measurement_id) + 1, (SELECT person_id FROM person "
            "WHERE mrn = ?), DATE '2026-06-01', 'lesion_longest_diameter', 1.0, 'mm', 'clinic', NULL "
            "FROM measurement",
            [first],
        )
    imports.import_file(clinic_db, _csv(tmp_path, second, "2026-06-20", 40.0))
    with store.open_store(clinic_db, read_only=True) as con:
        status = worklist_store.status(con, None)
        if large:  # left as it was: still said to be stale
            assert not status.fresh and "patient records changed" in status.reasons[0]
        else:  # ranked again in full: both changes in
            assert status.fresh
            stored = _stored(con).sort_values("rank")[list(worklist.WORKLIST_COLUMNS)]
            _assert_same(stored, worklist.worklist(con, 1000).rows)


def test_a_version_4_store_migrates_and_is_ranked_on_refresh(clinic_db):
    with store.open_store(clinic_db) as con:  # take the copy back to schema version 4
        con.execute("DROP TABLE worklist_entry")
        con.execute("DROP TABLE worklist_state")
        con.execute("DROP TABLE worklist_review")
        con.execute("DELETE FROM schema_version WHERE version >= 5")
    with store.open_store(
        clinic_db, read_only=True
    ) as con:  # read-only: not migrated, said plainly
        assert store.schema_version(con) == 4
        status = worklist_store.status(con, None)
        assert not status.fresh and "not been computed" in status.reasons[0]
    with store.open_store(clinic_db) as con:
        assert store.schema_version(con) == store.SCHEMA_VERSION
        assert con.execute("SELECT count(*) FROM worklist_entry").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM worklist_review").fetchone()[0] == 0
        assert not worklist_store.status(con, None).fresh
        result = worklist_store.refresh(con)
        assert result.mode == "full" and worklist_store.status(con, None).fresh
        _assert_same(
            _stored(con).sort_values("rank")[list(worklist.WORKLIST_COLUMNS)].head(50),
            worklist.worklist(con, 50).rows,
        )


def test_the_stored_prior_round_trips_exactly(demo_con):
    prior = worklist_store._prior_from_json(
        demo_con.execute("SELECT prior FROM worklist_state").fetchone()[0]
    )
    again = worklist_store._prior_from_json(worklist_store._prior_json(prior))
    assert np.array_equal(prior.mu, again.mu) and np.array_equal(prior.cov, again.cov)
    assert prior.noise == again.noise and prior.n_patients == again.n_patients > 0
    if prior.calibration is not None:  # the bands' recalibration travels with it
        assert np.array_equal(prior.calibration.pit_quantiles, again.calibration.pit_quantiles)


def test_the_refresh_stores_the_prior_that_estimate_prior_gives_now(demo_con):
    """Issue 23: pages read the prior instead of fitting it; it must be the very prior they fitted."""
    from analytics.forecast.patient import estimate_prior

    stored = worklist_store.stored_prior(demo_con)
    assert stored is not None
    assert stored.to_state() == estimate_prior(demo_con).to_state()
    prior, was_stored = worklist_store.prior_for(demo_con)
    assert was_stored and prior.to_state() == stored.to_state()


def test_a_stored_prior_is_not_used_once_the_records_or_method_change(clinic_db, monkeypatch):
    from analytics.forecast.patient import estimate_prior

    with store.open_store(clinic_db) as con:
        pid = int(
            con.execute("SELECT person_id FROM worklist_entry ORDER BY rank LIMIT 1").fetchone()[0]
        )
        assert worklist_store.stored_prior(con) is not None
        monkeypatch.setattr(worklist_store, "METHOD_VERSION", worklist_store.METHOD_VERSION + 1)
        assert worklist_store.stored_prior(con) is None  # another method: estimated again
        monkeypatch.undo()
        # a reading written by a writer that did not refresh: the sources changed
        con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) VALUES ((SELECT max(measurement_id) + 1 FROM measurement), ?, "
            "DATE '2026-06-01', 'lesion_longest_diameter', 5.0, 'mm', 'clinic', NULL)",
            [pid],
        )
        assert worklist_store.stored_prior(con) is None
        prior, was_stored = worklist_store.prior_for(con)
        assert not was_stored and prior.to_state() == estimate_prior(con).to_state()
        worklist_store.refresh(con)  # a full refresh stores it for the records as they are now
        assert worklist_store.stored_prior(con).to_state() == prior.to_state()


def test_a_store_from_before_the_prior_table_reads_none(clinic_db):
    with store.open_store(clinic_db) as con:
        con.execute("DROP TABLE forecast_prior")
        con.execute("DELETE FROM schema_version WHERE version >= 15")
    with store.open_store(clinic_db, read_only=True) as con:  # read-only: not migrated
        assert worklist_store.stored_prior(con) is None
        assert worklist_store.prior_for(con)[1] is False
    with store.open_store(clinic_db) as con:  # migrated; the next full refresh fills it
        assert worklist_store.stored_prior(con) is None
        worklist_store.refresh(con)
        assert worklist_store.stored_prior(con) is not None


READER = (
    "import sys\n"
    "from analytics import store\n"
    "with store.open_store(sys.argv[1], read_only=True, wait_s=0.5) as con:\n"
    "    print(con.execute('SELECT count(*) FROM worklist_entry').fetchone()[0])\n"
)


def test_a_store_refresh_leaves_the_store_readable_while_it_ranks(clinic_db, monkeypatch):
    """Another process (the app) opens the store read-only in the middle of the ranking."""
    import subprocess
    import sys

    with store.open_store(clinic_db) as con:  # make it stale, so the refresh matters
        con.execute("UPDATE clinic_metadata SET value = '2026-07-31' WHERE key = 'data_cutoff'")
    seen = []
    real = worklist.ranked

    def ranked_while_read(con, **kwargs):
        out = real(con, **kwargs)
        r = subprocess.run(
            [sys.executable, "-c", READER, str(clinic_db)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parents[3],
            check=False,
        )
        seen.append((r.returncode, r.stdout.strip(), r.stderr[-300:]))
        return out

    monkeypatch.setattr(worklist, "ranked", ranked_while_read)
    result = worklist_store.refresh_store(clinic_db)
    assert seen and seen[0][0] == 0 and int(seen[0][1]) > 30, seen  # read during the ranking
    with store.open_store(clinic_db, read_only=True) as con:
        status = worklist_store.status(con, None)
        assert status.fresh and status.entries == result.entries
        assert str(con.execute("SELECT as_of FROM worklist_state").fetchone()[0]) == "2026-07-31"


@pytest.mark.parametrize("check", ["source_fingerprint", "_last_computed"])
def test_a_store_refresh_ranks_again_when_a_writer_got_in_meanwhile(clinic_db, monkeypatch, check):
    """New source rows, or a writer's incremental refresh (rows updated in place, same counts)."""
    calls = []
    real_rank, real_check = worklist.ranked, getattr(worklist_store, check)
    monkeypatch.setattr(
        worklist, "ranked", lambda con, **kw: calls.append(1) or real_rank(con, **kw)
    )
    changed = iter(["changed by a writer"])  # the first check after ranking differs

    def checked(con):
        value = real_check(con)
        if (
            con.execute("SELECT current_setting('access_mode')").fetchall()[0][0] != "read_only"
        ):  # the swap
            return next(changed, value)
        return value

    monkeypatch.setattr(worklist_store, check, checked)
    result = worklist_store.refresh_store(clinic_db)
    assert len(calls) == 2 and result.mode == "full"
    with store.open_store(clinic_db, read_only=True) as con:
        assert worklist_store.status(con, None).fresh


def test_the_apps_refresh_lets_its_own_sessions_write_while_it_ranks(clinic_db, monkeypatch):
    """In the app's process a read-only instance would make audit writes wait for the whole ranking."""
    from analytics.governance import audit

    real = worklist.ranked
    written = []

    def ranked_while_audited(con, **kwargs):
        audit.record_event(
            clinic_db, actor="oncologist", action="view_patient", subject="1", wait_s=1.0
        )
        written.append(True)
        return real(con, **kwargs)

    monkeypatch.setattr(worklist, "ranked", ranked_while_audited)
    worklist_store.refresh_store(clinic_db, read_only_ranking=False)
    assert written == [True]
    with store.open_store(clinic_db, read_only=True) as con:
        assert worklist_store.status(con, None).fresh
        assert (
            con.execute(
                "SELECT count(*) FROM audit_event WHERE action = 'view_patient'"
            ).fetchone()[0]
            >= 1
        )


def test_buckets_follow_their_rules_checked_row_by_row(clinic_db):
    """Every stored row's bucket, recomputed in plain Python from its own columns and reviews;
    a review takes her out of act now; act now is newest first, due most overdue first."""
    from datetime import datetime, timedelta

    from analytics.worklist import review

    with store.open_store(clinic_db, read_only=True) as con:
        as_of = worklist_store.as_of_date(con)
        page = worklist_store.read_page(con, 100_000)
    rows = page.rows
    window = datetime.combine(as_of, datetime.min.time()) - timedelta(
        days=buckets.NEVER_REVIEWED_WINDOW_DAYS
    )
    for row in rows.to_dict("records"):
        event = row["event_at"]
        if not pd.isna(event) and event > window:
            want = "act_now"
        elif not pd.isna(row["due_date"]) and row["due_date"].date() <= as_of:
            want = "due"
        else:
            want = "by_risk"
        assert row["bucket"] == want, row["person_id"]
        assert row["reason"] and "None" not in row["reason"] and "nan" not in row["reason"]
    order = {"act_now": 0, "due": 1, "by_risk": 2}
    assert rows["bucket"].map(order).is_monotonic_increasing
    act = rows[rows["bucket"] == "act_now"]
    due = rows[rows["bucket"] == "due"]
    assert len(act) > 0 and len(due) > 0
    assert act["event_at"].is_monotonic_decreasing and due["due_date"].is_monotonic_increasing
    assert sum(page.buckets.values()) == len(rows)

    top = int(act["person_id"].iloc[0])
    with store.open_store(clinic_db) as con:
        review.mark_reviewed(con, top, "careteam", "care_team", note="seen")
        after = worklist_store.read_page(con, 100_000)
        hidden = worklist_store.read_page(con, 100_000, hide_reviewed=True)
    moved = after.rows.set_index("person_id").loc[top]
    assert moved["bucket"] != "act_now" and moved["review_note"] == "seen"
    assert after.buckets["act_now"] == page.buckets["act_now"] - 1
    assert top not in set(hidden.rows["person_id"]) and hidden.total == after.total - 1
    assert "None" not in buckets.reason(moved.to_dict() | {"person_id": top}, as_of)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"bucket": "act_now"},
        {"bucket": "by_risk", "hide_reviewed": True},
        {"site": "North"},
        {"signoff": buckets.SignOff(required=True)},
        {"signoff": buckets.SignOff(risk_withheld=True), "bucket": "by_risk"},
    ],
)
def test_every_page_is_its_slice_of_the_whole_list(clinic_db, filters):
    """A page is read in two statements (the page's ranks over narrow columns, then its rows);
    every page (of 4: the demo's act-now list is short), and its totals, must be exactly that slice of the whole filtered list, with
    reviews in the store (the whole list's buckets and order are checked row by row above)."""
    from analytics.worklist import review

    with store.open_store(clinic_db) as con:
        first = worklist_store.read_page(con, 100_000, bucket="act_now").rows
        for pid in first["person_id"].iloc[:3]:
            review.mark_reviewed(con, int(pid), "careteam", "care_team", note="seen")
        whole = worklist_store.read_page(con, 100_000, **filters)
        assert whole.total == len(whole.rows) > 8
        for offset in (0, 4, 8, whole.total - 3, whole.total):
            page = worklist_store.read_page(con, 4, offset, **filters)
            want = whole.rows.iloc[offset : offset + 4].reset_index(drop=True)
            if want.empty:  # past the end
                assert page.rows.empty
            else:
                pd.testing.assert_frame_equal(page.rows, want, check_exact=True)
            assert (page.total, page.buckets, page.signoff_counts) == (
                whole.total,
                whole.buckets,
                whole.signoff_counts,
            )


class _RefreshedBetweenStatements:
    """A real connection whose page-keys statement (its second: the first reads the schema) is
    followed by another writer's commit.

    Why a wrapper: the race (a refresh committing between the page's statements) needs its
    commit at one exact point; everything read and written is the real DuckDB store.
    """

    def __init__(self, con, writer) -> None:
        self._con, self._writer, self._statements = con, writer, 0

    def execute(self, *args, **kwargs):
        result = self._con.execute(*args, **kwargs)
        self._statements += 1
        if self._statements == 2:
            self._writer.execute(f"DELETE FROM {buckets.ENTRY_TABLE}")  # a constant name
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_a_page_and_its_counts_come_from_one_snapshot(clinic_db):
    """A refresh that empties the stored list between the page's statements must not give a page
    of 25 rows whose buckets count none: the page reads one snapshot (then the next read sees the
    writer's commit)."""
    with store.open_store(clinic_db) as con:
        as_of = worklist_store.as_of_date(con)
        before = buckets.read_page(con, as_of, 25)
        assert len(before.rows) == 25
        writer = con.cursor()
        raced = buckets.read_page(_RefreshedBetweenStatements(con, writer), as_of, 25)
        assert len(raced.rows) == 25
        assert (raced.total, raced.buckets) == (before.total, before.buckets)
        after = buckets.read_page(con, as_of, 25)
        assert after.total == 0 and after.rows.empty
