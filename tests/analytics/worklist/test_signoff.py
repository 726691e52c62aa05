"""analytics.worklist.buckets with the ethics board's sign-off (issue 22): reads of imaging versions not
approved neither drive act now nor are quoted where approval is required, are marked where it is not,
and a withheld forecast does not order the by-risk bucket. A copy of the real demo store, its reads
written into ``ai_finding`` and its worklist ranked by ``stored.refresh``."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analytics import store
from analytics.worklist import buckets
from analytics.worklist import ranking as worklist
from analytics.worklist import stored as worklist_store

# the weights' sha256 of each approved version (what a sign-off binds to; reads record theirs)
SHA_MAMMO, SHA_BRAIN, SHA_OLD = "a" * 64, "b" * 64, "c" * 64
MAMMO, BRAIN = ("mammography", "1.0.0", SHA_MAMMO), ("brain_mri", "1.0.0", SHA_BRAIN)
ONLY_BRAIN = buckets.SignOff(approved_reads=frozenset({BRAIN}), required=True)


@pytest.fixture(scope="module")
def planted(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four patients with nothing new, then: A a suspicious mammography read, B a brain read, C an
    older brain read and a newer mammography read, D a read of an older mammography version."""
    db = Path(shutil.copy(demo_db, tmp_path_factory.mktemp("wl_signoff") / "clinic.duckdb"))
    with store.open_store(db) as con:
        as_of = worklist_store.as_of_date(con)
        quiet = [
            int(r[0])
            for r in con.execute(
                f"SELECT person_id FROM {worklist_store.ENTRY_TABLE} WHERE event_at IS NULL "
                "AND (due_date IS NULL OR due_date > ?) ORDER BY person_id LIMIT 4",
                [as_of],
            ).fetchall()
        ]
        assert len(quiet) == 4
        a, b, c, d = quiet
        at = dt.datetime.combine(as_of, dt.time(9))
        reads = [
            (a, MAMMO, "malignant", 0.81, at - dt.timedelta(days=10)),
            (b, BRAIN, "tumour", 0.77, at - dt.timedelta(days=12)),
            (c, BRAIN, "tumour", 0.64, at - dt.timedelta(days=30)),
            (c, MAMMO, "malignant", 0.9, at - dt.timedelta(days=5)),
            (d, ("mammography", "0.9.0", SHA_OLD), "malignant", 0.7, at - dt.timedelta(days=8)),
        ]
        start = store.one_row(con.execute("SELECT coalesce(max(finding_id), 0) FROM ai_finding"))[0]
        for i, (pid, (name, version, sha), label, p, when) in enumerate(
            reads, start=int(start) + 1
        ):
            _plant_read(con, i, pid, name, version, sha, label, p, when)
        worklist_store.refresh(con)  # rank again: the reads are in the stored rows
    return {"db": db, "a": a, "b": b, "c": c, "d": d}


def _plant_read(con, finding_id, pid, name, version, sha, label, p, when) -> None:
    con.execute(
        "INSERT INTO ai_finding (finding_id, person_id, model_name, model_version, predicted_class, "
        "probability, longest_diameter_mm, created_at, weights_sha256) "
        "VALUES (?, ?, ?, ?, ?, ?, 11.0, ?, ?)",
        [finding_id, pid, name, version, label, p, when, sha],
    )


def _rows(db: Path, signoff: buckets.SignOff | None) -> tuple[pd.DataFrame, dict]:
    with store.open_store(db, read_only=True) as con:
        page = worklist_store.read_page(con, 100_000, signoff=signoff)
    return page.rows.set_index("person_id"), page.buckets


def test_without_a_check_every_suspicious_read_drives_act_now(planted):
    rows, _ = _rows(planted["db"], None)
    for key in "abcd":
        assert rows.loc[planted[key], "bucket"] == "act_now", key
    assert "AI read “malignant” 81%" in rows.loc[planted["a"], "reason"]
    assert "not approved" not in rows.loc[planted["a"], "reason"]


def test_not_required_the_read_is_quoted_with_a_not_approved_mark(planted):
    rows, counts = _rows(planted["db"], buckets.SignOff(frozenset({BRAIN}), required=False))
    assert counts == _rows(planted["db"], None)[1]  # nothing moves
    assert "AI read “malignant” 81% (model not approved)" in rows.loc[planted["a"], "reason"]
    assert "(model not approved)" not in rows.loc[planted["b"], "reason"]
    assert "(model not approved)" in rows.loc[planted["d"], "reason"]  # an older version: no card
    assert rows.loc[planted["a"], "ai_approved"] == False  # noqa: E712 - a numpy bool
    assert pd.isna(rows.loc[planted["a"], "ai_withheld_at"])


def test_required_unapproved_reads_leave_act_now_and_are_not_quoted(planted):
    before, before_counts = _rows(planted["db"], None)
    rows, counts = _rows(planted["db"], ONLY_BRAIN)
    a, b, c, d = (planted[k] for k in "abcd")
    for pid in (a, d):  # their only news was a read of a version not approved
        assert rows.loc[pid, "bucket"] != "act_now"
        assert "AI read “" not in rows.loc[pid, "reason"]
        assert "withheld pending the ethics board's sign-off" in rows.loc[pid, "reason"]
        assert pd.isna(rows.loc[pid, "ai_probability"])
    assert rows.loc[b, "bucket"] == "act_now" and "AI read “tumour” 77%" in rows.loc[b, "reason"]
    # C: the newer mammography read is withheld, the older approved brain read still counts
    assert rows.loc[c, "bucket"] == "act_now"
    assert "AI read “tumour” 64%" in rows.loc[c, "reason"] and "90%" not in rows.loc[c, "reason"]
    assert "withheld pending" in rows.loc[c, "reason"]
    assert rows.loc[c, "event_at"] < before.loc[c, "event_at"]
    assert counts["act_now"] == before_counts["act_now"] - 2
    assert sum(counts.values()) == sum(before_counts.values())
    # every other row is as before: progression and recurrence still drive act now
    others = before.index.difference([a, b, c, d])
    pd.testing.assert_series_equal(rows.loc[others, "bucket"], before.loc[others, "bucket"])


def test_the_page_counts_what_the_sign_off_did(planted):
    """The page says how many patients' reads were withheld or marked (A, C and D: mammography)."""
    with store.open_store(planted["db"], read_only=True) as con:
        required = worklist_store.read_page(con, 5, signoff=ONLY_BRAIN)
        marked = worklist_store.read_page(
            con, 5, signoff=buckets.SignOff(frozenset({BRAIN}), required=False)
        )
        unchecked = worklist_store.read_page(con, 5)
    assert required.signoff_counts == {"withheld": 3, "not_approved": 0}
    assert marked.signoff_counts == {"withheld": 0, "not_approved": 3}
    assert unchecked.signoff_counts == {}


def test_the_on_the_fly_ranking_gives_the_same_buckets(planted):
    with store.open_store(planted["db"], read_only=True) as con:
        ranked = worklist.ranked(con)
        live = buckets.read_frame_page(
            con, ranked, worklist_store.as_of_date(con), 100_000, signoff=ONLY_BRAIN
        )
    stored, _ = _rows(planted["db"], ONLY_BRAIN)
    live_rows = live.rows.set_index("person_id")
    pd.testing.assert_series_equal(
        live_rows.loc[stored.index, "bucket"], stored["bucket"], check_names=False
    )
    assert live_rows.loc[planted["a"], "reason"] == stored.loc[planted["a"], "reason"]


def test_a_withheld_forecast_does_not_order_by_risk(planted):
    signoff = buckets.SignOff(frozenset({BRAIN, MAMMO}), required=True, risk_withheld=True)
    with store.open_store(planted["db"], read_only=True) as con:
        as_of = worklist_store.as_of_date(con)
        page = worklist_store.read_page(con, 100_000, bucket="by_risk", signoff=signoff)
        ranked = worklist_store.read_page(con, 100_000, bucket="by_risk")
    rows = page.rows
    assert len(rows) > 20 and rows["risk_6m"].isna().all() and rows["rank"].isna().all()
    assert rows["reason"].str.startswith("Forecast risk withheld").all()
    assert not rows["reason"].str.contains("% risk").any()
    # the documented order: next imaging due soonest, then latest event, then id
    key = rows.assign(
        _due=rows["due_date"].fillna(pd.Timestamp.max), _id=rows["person_id"]
    ).reset_index(drop=True)
    expected = key.sort_values(
        ["_due", "event_at", "_id"], ascending=[True, False, True], na_position="last"
    )
    assert list(expected["person_id"]) == list(key["person_id"])
    assert (rows["due_date"].dropna().dt.date > as_of).all()
    assert list(rows["person_id"]) != list(ranked.rows["person_id"])  # not the risk order
    # the same patients, and D, whose only news was a read of an older version (no card, not approved)
    assert set(rows["person_id"]) == set(ranked.rows["person_id"]) | {planted["d"]}


def test_a_read_of_other_weights_under_an_approved_version_is_not_approved(
    demo_db: Path, tmp_path: Path
):
    """The version string stays "1.0.0" when weights change: E's read was made by other weights
    and F's was stored before reads recorded their weights; with both versions approved and
    approval required, neither drives act now nor is quoted, while A's read of the approved
    weights is."""
    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db) as con:
        as_of = worklist_store.as_of_date(con)
        a, e, f = (
            int(r[0])
            for r in con.execute(
                f"SELECT person_id FROM {worklist_store.ENTRY_TABLE} WHERE event_at IS NULL "
                "AND (due_date IS NULL OR due_date > ?) ORDER BY person_id LIMIT 3",
                [as_of],
            ).fetchall()
        )
        at = dt.datetime.combine(as_of, dt.time(9))
        start = int(
            store.one_row(con.execute("SELECT coalesce(max(finding_id), 0) FROM ai_finding"))[0]
        )
        _plant_read(con, start + 1, a, *MAMMO, "malignant", 0.81, at)
        _plant_read(con, start + 2, e, "mammography", "1.0.0", SHA_OLD, "malignant", 0.88, at)
        _plant_read(con, start + 3, f, "brain_mri", "1.0.0", None, "tumour", 0.9, at)
        worklist_store.refresh(con)
    rows, _ = _rows(db, buckets.SignOff(frozenset({MAMMO, BRAIN}), required=True))
    assert rows.loc[a, "bucket"] == "act_now" and "AI read “malignant” 81%" in rows.loc[a, "reason"]
    for pid in (e, f):
        assert rows.loc[pid, "bucket"] != "act_now"
        assert "withheld pending the ethics board's sign-off" in rows.loc[pid, "reason"]
    marked, _ = _rows(db, buckets.SignOff(frozenset({MAMMO, BRAIN}), required=False))
    assert "(model not approved)" not in marked.loc[a, "reason"]
    assert "(model not approved)" in marked.loc[e, "reason"]
    assert "(model not approved)" in marked.loc[f, "reason"]
