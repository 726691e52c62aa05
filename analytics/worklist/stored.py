"""The stored worklist: every eligible patient's flags and forecast risk, written in rank order.

Why a stored table: ranking is a forecast for every eligible patient (about
710,000 at a million patients: minutes of growth-inhibition fits even on two
threads, docs/benchmarks.md), so no request can afford it. ``worklist_entry`` (schema version 5) holds the result of
``analytics.worklist.ranking.ranked``, one row per patient with her 1-based ``rank``,
written in rank order so that a page (``read_page``: filters, ``ORDER BY rank
LIMIT/OFFSET``) is a scan of a narrow table whose zone maps on ``rank`` let
DuckDB's top-k skip most row groups.

Freshness, never silent: ``worklist_state`` records what the rows were computed
from: a fingerprint of the source tables (``source_fingerprint``: row counts and
largest ids, ``measurement`` included; the ethics board's sign-off, which decides the AI
readings it may read), the treatment model's version (the
recurrence part of the risk), the method version, the forecast's "today"
(``as_of``: the data cut-off, else the calendar date) and the growth-inhibition
prior used. ``status`` compares them with the store and the model now and says
why the rows are stale; the page then ranks on the fly (small stores) or shows
the stored rows under a warning with a refresh.

Writers refresh (``refresh``): the demo generator and ``oncolens demo`` (in
full, after training the treatment model), ``oncolens recommend --train`` and
``oncolens worklist --refresh`` (in full), ``oncolens import`` and imaging
ingest (``refresh_for_writer``: the touched patients, inside their own
transaction). An incremental refresh recomputes the touched patients' rows
with the prior of the last full refresh and re-ranks the table in SQL; their
risks are the same computation on a different batch of patients, so they can
differ from a full refresh by the Monte-Carlo error of 400 draws (at most ~2.5
points), and a full refresh re-estimates the prior. When an increment is not
possible (too many touched patients, another model, a new "today", never
ranked), a writer ranks everyone only in a small store; in a large one it
leaves the table as it is, and the fingerprint marks it stale.

``refresh_store`` (``oncolens worklist --refresh``) ranks on a read-only
connection and takes the write lock only to write the rows, so the app keeps
reading the store during a refresh of minutes. The page's own refresh button
ranks under the write lock (``read_only_ranking=False``, see there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics import store
from analytics.cohorts.base import source_fingerprint as _cohort_sources
from analytics.forecast.data import PRIOR_MAX_PATIENTS, data_cutoff
from analytics.forecast.tumour import TGIPrior
from analytics.governance.lifecycle import measurements as ai_measurements
from analytics.store.worklist_schema import ENTRY_TABLE, PRIOR_TABLE
from analytics.worklist import buckets
from analytics.worklist import ranking as worklist

METHOD_VERSION = 7  # bump when the ranking's computation (flags or forecast risk) changes:
# every stored worklist then says it is stale until refreshed
# 2: growth-inhibition bands and 6-month risk read at recalibrated levels
# 3: progression risk at her last reading expected within six months
# 4: RECIST judged line by line (a progression is a dated event), recurred patients listed, events
#    and imaging cadence stored for the buckets (analytics.worklist.events)
# 5: growth-inhibition prior from every line of therapy, bands recalibrated on next readings, the
#    line of therapy chosen as of the ranking's day (analytics.forecast.data)
# 6: after a recurrence the imaging cadence counts only her restaging (default every 12 weeks)
# 7: on best supportive care no imaging is due; the forecast's recurrence part only inside the
#    treatment model's scope; events cut at the ranking's day
INCREMENTAL_MAX_SHARE = 0.25  # more touched patients than this share of the list: a full refresh
WRITER_FULL_MAX_PATIENTS = 20_000  # a writer refreshes in full only up to this store size (~10 s)
NO_MODEL = "none"  # model_version recorded when no treatment model was used

_COLUMNS = ("rank", *worklist.WORKLIST_COLUMNS, "computed_at")
_RANK_ORDER = (  # worklist.rank_order in SQL
    "risk_6m DESC NULLS LAST, event_at DESC NULLS LAST, regrowth_ratio DESC NULLS LAST, person_id"
)

_MEASUREMENT_FINGERPRINT = "SELECT count(*), coalesce(max(measurement_id), 0) FROM measurement"


@dataclass(frozen=True)
class WorklistStatus:
    """Whether the stored worklist matches the store and model now; ``reasons`` say why not."""

    fresh: bool
    reasons: tuple[str, ...]
    entries: int  # stored rows
    patients: int  # patients in the store (how costly a refresh or an on-the-fly rank is)
    computed_at: dt.datetime | None
    model_version: str | None  # the model the stored risks used (None: none)


@dataclass(frozen=True)
class RefreshResult:
    mode: str  # "full", "incremental" or "skipped" (a writer left it stale)
    entries: int
    seconds: float


def source_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """The cohort base's source fingerprint plus ``measurement`` (count, largest id): ~10 ms at 47 M
    rows; and the sign-off's state (the setting, the board's decisions), since which AI readings
    the ranking and the prior may read depends on it (``ai_measurements.fingerprint``)."""
    n, top = store.one_row(con.execute(_MEASUREMENT_FINGERPRINT))
    return f"{_cohort_sources(con)}:{n}/{top}:{ai_measurements.fingerprint(con)}"


def as_of_date(con: duckdb.DuckDBPyConnection) -> dt.date:
    """The forecasts' "today": the store's data cut-off, else the calendar date (as ``forecast`` uses)."""
    return data_cutoff(con) or dt.date.today()


def _prior_json(prior) -> str:
    """The prior at full precision, band calibration included (``TGIPrior.to_state``)."""
    return json.dumps(prior.to_state())


def _prior_from_json(text: str):

    return TGIPrior.from_state(json.loads(text))


# --- the forecast prior, stored ---------------------------------------------------------------


def stored_prior(con: duckdb.DuckDBPyConnection) -> TGIPrior | None:
    """The prior the last full refresh estimated, if it is what ``estimate_prior`` would give now.

    Why stored (issue 23): estimating it fits the growth-inhibition model to a sample of up to
    ``PRIOR_MAX_PATIENTS`` series and recalibrates its bands, 20-30 s on two cores, which the first
    patient page used to wait for. Current means: the same sources (``source_fingerprint``), the
    same "today", the same method and sample size. An incremental refresh keeps the last full
    refresh's prior for the worklist's rows but changes the sources, so the stored prior is then
    not current here: a reader estimates it afresh (``prior_for``) rather than use a stale one.
    None also for a store from before schema version 15 opened read-only.
    """
    try:
        rows = con.execute(
            f"SELECT source_fingerprint, as_of, method_version, max_patients, prior "  # noqa: S608
            f"FROM {PRIOR_TABLE} WHERE id = 1"
        ).fetchall()
    except duckdb.CatalogException:
        return None
    if not rows:
        return None
    fingerprint, as_of, method, max_patients, text = rows[0]
    if (fingerprint, as_of, method, max_patients) != (
        source_fingerprint(con),
        as_of_date(con),
        METHOD_VERSION,
        PRIOR_MAX_PATIENTS,
    ):
        return None
    return _prior_from_json(text)


def prior_for(con: duckdb.DuckDBPyConnection) -> tuple[TGIPrior, bool]:
    """(the forecast prior, whether it was stored): the stored one when current, else estimated now.

    One code path for the page, ``oncolens forecast`` and the report: the same prior everywhere.
    """
    prior = stored_prior(con)
    if prior is not None:
        return prior, True
    # lazy: the forecast's fitting code is needed only when nothing current is stored
    from analytics.forecast.patient import estimate_prior

    return estimate_prior(con), False


def _store_prior(con: duckdb.DuckDBPyConnection, prior, as_of, fingerprint: str) -> None:
    con.execute(
        f"INSERT OR REPLACE INTO {PRIOR_TABLE} VALUES (1, ?, ?, ?, ?, ?, now()::TIMESTAMP)",  # noqa: S608
        [fingerprint, as_of, METHOD_VERSION, PRIOR_MAX_PATIENTS, _prior_json(prior)],
    )


def _state(con: duckdb.DuckDBPyConnection) -> dict | None:
    try:
        rows = con.execute(
            "SELECT source_fingerprint, model_version, method_version, as_of, prior, entries, computed_at "
            "FROM worklist_state WHERE id = 1"
        ).fetchall()
    except duckdb.CatalogException:  # a store from before schema version 5, opened read-only
        return None
    if not rows:
        return None
    keys = (
        "fingerprint",
        "model_version",
        "method_version",
        "as_of",
        "prior",
        "entries",
        "computed_at",
    )
    return dict(zip(keys, rows[0], strict=True))


def status(con: duckdb.DuckDBPyConnection, model_version: str | None) -> WorklistStatus:
    """Is the stored worklist what a refresh would write now? ``model_version``: the model in use, or None."""
    patients = int(store.one_row(con.execute("SELECT count(*) FROM person"))[0])
    state = _state(con)
    if state is None:
        return WorklistStatus(
            False,
            ("the worklist has not been computed for this store yet",),
            0,
            patients,
            None,
            None,
        )
    reasons = []
    data_then, _, gate_then = state["fingerprint"].partition(":gate:")
    data_now, _, gate_now = source_fingerprint(con).partition(":gate:")
    if data_then != data_now:
        reasons.append(
            "patient records changed since it was computed (an import, ingest or other writer)"
        )
    elif gate_then != gate_now:
        reasons.append(
            "the ethics board's sign-off changed since it was computed (a decision or the "
            "approval setting), and with it which AI readings it may use"
            if gate_then
            else "it was computed before AI readings followed the ethics board's sign-off"
        )
    stored_model = None if state["model_version"] == NO_MODEL else state["model_version"]
    if stored_model != model_version:
        reasons.append(
            f"the treatment model changed (risks computed with {stored_model or 'no model'}, "
            f"now {model_version or 'no model'})"
        )
    if state["method_version"] != METHOD_VERSION:
        reasons.append("the ranking method changed since it was computed")
    if state["as_of"] != as_of_date(con):
        reasons.append(
            f"its risks are for {state['as_of']:%Y-%m-%d}; today is {as_of_date(con):%Y-%m-%d}"
        )
    return WorklistStatus(
        not reasons,
        tuple(reasons),
        int(state["entries"]),
        patients,
        state["computed_at"],
        stored_model,
    )


def read_page(
    con: duckdb.DuckDBPyConnection,
    limit: int = 25,
    offset: int = 0,
    only_progression: bool = False,
    site: str | None = None,
    *,
    hide_reviewed: bool = False,
    bucket: str | None = None,
    signoff: buckets.SignOff | None = None,
) -> worklist.WorklistPage:
    """One page of the stored worklist in buckets (``analytics.worklist.buckets``), with ``reason``
    (and the ethics board's sign-off applied with ``signoff``)."""
    return buckets.read_page(
        con,
        as_of_date(con),
        limit,
        offset,
        only_progression=only_progression,
        site=site,
        hide_reviewed=hide_reviewed,
        bucket=bucket,
        signoff=signoff,
    )


# --- refresh --------------------------------------------------------------------------------------


def refresh(
    con: duckdb.DuckDBPyConnection,
    clinic=None,
    person_ids=None,
    *,
    prior=None,
    sources_before: str | None = None,
    threads: int | None = 1,
) -> RefreshResult:
    """Recompute the stored worklist; runs in the caller's transaction (or autocommit).

    ``clinic``: the loaded ``treatment_clinic.ClinicModel`` whose recurrence risk joins the
    tumour risk, or None. ``person_ids``: the patients a writer touched (incremental when the
    stored state allows it, see the module docstring); None: everyone. ``prior``: for a full
    refresh, a prior already estimated from this store (default: estimated here).
    ``sources_before``: ``source_fingerprint`` when the writer's transaction began; an increment
    then also needs the stored rows to have been current before this writer's own changes.
    ``threads``: a full ranking's forecast batches computed at once (``worklist.ranking.risks``);
    more than one only when the caller's transaction has written nothing yet, since each thread
    reads through a cursor of its own, which does not see uncommitted rows. None: one per core
    (``worklist.risk_threads``).
    """
    start = time.perf_counter()
    threads = worklist.risk_threads() if threads is None else threads
    con.execute("SET enable_progress_bar = false")
    model_version = clinic.version if clinic is not None else None
    state = _state(con)
    ids = None if person_ids is None else _ids(person_ids)
    if (
        ids is not None
        and state is not None
        and _can_increment(con, state, model_version, ids, sources_before)
    ):
        entries = _refresh_touched(con, clinic, ids, state["prior"])
        con.execute(
            "UPDATE worklist_state SET source_fingerprint = ?, entries = ?, computed_at = now()::TIMESTAMP "
            "WHERE id = 1",
            [source_fingerprint(con), entries],
        )
        return RefreshResult("incremental", entries, time.perf_counter() - start)
    as_of, prior, rows = _rank_everyone(con, clinic, prior, threads=threads)
    _store_full(con, rows, prior, as_of, model_version, source_fingerprint(con))
    return RefreshResult("full", len(rows), time.perf_counter() - start)


def _rank_everyone(
    con: duckdb.DuckDBPyConnection, clinic, prior=None, risk_map=None, threads: int = 1
):
    """(today, prior, every eligible patient ranked): the computation of a full refresh, reads only.
    ``risk_map``: where the forecast risks run (``worklist.ranking.RiskMap``; default here);
    ``threads``: how many of its batches at once (``worklist.ranking.risks``)."""
    # lazy: at the top, importing analytics.worklist.stored took 838 ms instead of 730 ms
    from analytics.forecast.patient import estimate_prior

    as_of = as_of_date(con)
    if prior is not None or threads <= 1:
        prior = prior if prior is not None else estimate_prior(con, threads=threads)
        rows = worklist.ranked(
            con, prior=prior, clinic=clinic, as_of=as_of, risk_map=risk_map, threads=threads
        )
        return as_of, prior, rows

    # The prior (a fixed few seconds of fits on its 3,000-patient sample, mostly on one core) and
    # the flags (SQL and pandas over every reading) need nothing from each other, so they run at
    # once; the prior reads through a cursor of its own, as the risk batches do.
    def prior_on_cursor():
        cursor = con.cursor()
        try:
            return estimate_prior(cursor, threads=threads)
        finally:
            cursor.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(prior_on_cursor)
        rows = worklist.ranked(
            con,
            prior=pending.result,
            clinic=clinic,
            as_of=as_of,
            risk_map=risk_map,
            threads=threads,
        )
        return as_of, pending.result(), rows


def _store_full(
    con: duckdb.DuckDBPyConnection,
    rows: pd.DataFrame,
    prior,
    as_of,
    model_version: str | None,
    fingerprint: str,
) -> None:
    """Write a full ranking and the state it was computed from."""
    _write_ranked(con, rows.assign(rank=np.arange(1, len(rows) + 1, dtype=np.int64)))
    con.execute(
        "INSERT OR REPLACE INTO worklist_state VALUES (1, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP, now()::TIMESTAMP)",
        [
            fingerprint,
            model_version or NO_MODEL,
            METHOD_VERSION,
            as_of,
            _prior_json(prior),
            len(rows),
        ],
    )
    _store_prior(con, prior, as_of, fingerprint)


SWAP_ATTEMPTS = 2  # rankings computed read-only before ranking under the write lock instead


def _last_computed(con: duckdb.DuckDBPyConnection):
    """When the stored rows were last written (None: never, or a store from before schema 5)."""
    state = _state(con)
    return None if state is None else state["computed_at"]


def refresh_store(
    db_path: str | Path,
    clinic=None,
    wait_s: float = 30.0,
    *,
    read_only_ranking: bool = True,
    risk_map=None,
) -> RefreshResult:
    """A full ``refresh`` of a store file that keeps the store readable while the ranking is computed.

    Why: ranking a million patients takes minutes, and a DuckDB file open for writing cannot be
    opened by another process at all, so the app's pages would wait for the whole refresh. The
    ranking is computed on a read-only connection (other processes' readers share the file with
    it); only writing the rows takes the write lock, seconds, in one transaction that first checks
    that nothing was written meanwhile: the sources (``source_fingerprint``), today, and the stored
    rows (a writer's incremental refresh would otherwise be overwritten by an older ranking). If
    something was, the ranking is computed again (``SWAP_ATTEMPTS`` in all), then under the write
    lock as ``refresh`` does.

    ``read_only_ranking=False``: rank under the write lock from the start. The app's own button
    uses it: inside the app's process a read-only instance would make the app's own writes (audit
    events, reviews) wait for the whole ranking, while one read-write instance is shared by all its
    sessions. Raises ``store.StoreBusyError`` when another writer holds the store longer than ``wait_s``.

    ``risk_map``: where the read-only ranking's forecast risks run (``worklist.ranking.RiskMap``,
    e.g. Ray tasks: ``oncolens worklist --refresh --engine ray``); this process still writes.
    """
    start = time.perf_counter()
    model_version = clinic.version if clinic is not None else None
    for _attempt in range(SWAP_ATTEMPTS if read_only_ranking else 0):
        with store.open_store(db_path, read_only=True, wait_s=wait_s) as con:
            con.execute("SET enable_progress_bar = false")
            seen = (source_fingerprint(con), as_of_date(con), _last_computed(con))
            as_of, prior, rows = _rank_everyone(
                con, clinic, risk_map=risk_map, threads=worklist.risk_threads()
            )
        with store.open_store(db_path, wait_s=wait_s) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                if (source_fingerprint(con), as_of_date(con), _last_computed(con)) == seen:
                    _store_full(con, rows, prior, as_of, model_version, seen[0])
                    con.execute("COMMIT")
                    return RefreshResult("full", len(rows), time.perf_counter() - start)
                con.execute("ROLLBACK")
            except BaseException:
                _rollback_quietly(con)
                raise
    with store.open_store(db_path, wait_s=wait_s) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            # nothing written yet in this transaction: the ranking's threads see what it sees
            result = refresh(con, clinic, threads=None)
            con.execute("COMMIT")
        except BaseException:
            _rollback_quietly(con)
            raise
    return replace(result, seconds=time.perf_counter() - start)


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back if a transaction is still open; a failed COMMIT has already ended it, and the
    error worth raising is the one that brought us here, not "no transaction is active"."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


def _ids(person_ids) -> np.ndarray:
    return np.unique(np.asarray(list(person_ids), dtype=np.int64))


def _can_increment(
    con: duckdb.DuckDBPyConnection,
    state: dict | None,
    model_version: str | None,
    ids: np.ndarray,
    sources_before: str | None = None,
) -> bool:
    """The stored rows were ranked the way a full refresh would rank now, and few patients changed.

    With ``sources_before``, the rows must also have matched the sources before the writer's own
    changes: otherwise another writer's unrefreshed changes would be hidden by the new fingerprint.
    """
    return (
        state is not None
        and (sources_before is None or state["fingerprint"] == sources_before)
        and state["model_version"] == (model_version or NO_MODEL)
        and state["method_version"] == METHOD_VERSION
        and state["as_of"] == as_of_date(con)
        and ids.size <= INCREMENTAL_MAX_SHARE * max(int(state["entries"]), 1)
    )


def _write_ranked(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> None:
    """Replace every stored row with ``rows`` (which carry ``rank``), written in rank order."""
    con.register("_worklist_rows", rows)
    try:
        con.execute(f"DELETE FROM {ENTRY_TABLE}")  # noqa: S608 - constant
        cols = ", ".join(c for c in _COLUMNS if c != "computed_at")
        # columns named: version 7 appended its columns after computed_at
        con.execute(
            f"INSERT INTO {ENTRY_TABLE} ({cols}, computed_at) SELECT {cols}, now()::TIMESTAMP "  # noqa: S608
            "FROM _worklist_rows ORDER BY rank"
        )
    finally:
        con.unregister("_worklist_rows")


def _refresh_touched(
    con: duckdb.DuckDBPyConnection, clinic, ids: np.ndarray, prior_text: str
) -> int:
    """Recompute the touched patients' rows, then re-rank every row in SQL; returns the stored rows."""
    as_of = as_of_date(con)
    rows = worklist.flagged(con, person_ids=ids, as_of=as_of)
    if not rows.empty:
        risk = worklist.risks(
            con,
            rows["person_id"].to_numpy(dtype=np.int64),
            _prior_from_json(prior_text),
            clinic,
            as_of,
            line_start=worklist.line_starts(rows),
            recurred=worklist.recurred_ids(rows),
        )
        rows = rows.merge(risk, on="person_id", how="left")
    rows = rows.reindex(columns=list(worklist.WORKLIST_COLUMNS)).assign(rank=np.int64(0))
    con.register("_worklist_touched", pd.DataFrame({"person_id": ids}))
    con.register("_worklist_rows", rows)
    try:
        con.execute(
            f"DELETE FROM {ENTRY_TABLE} WHERE person_id IN (SELECT person_id FROM _worklist_touched)"  # noqa: S608
        )
        cols = ", ".join(c for c in _COLUMNS if c != "computed_at")
        con.execute(
            f"INSERT INTO {ENTRY_TABLE} ({cols}, computed_at) SELECT {cols}, now()::TIMESTAMP "  # noqa: S608
            "FROM _worklist_rows"
        )
    finally:
        con.unregister("_worklist_rows")
        con.unregister("_worklist_touched")
    # Re-rank and rewrite in rank order (physical order is what makes a page cheap).
    others = ", ".join(c for c in _COLUMNS if c != "rank")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _worklist_reranked AS SELECT row_number() OVER (ORDER BY {_RANK_ORDER}) "  # noqa: S608
        f"AS rank, {others} FROM {ENTRY_TABLE}"
    )
    con.execute(f"DELETE FROM {ENTRY_TABLE}")  # noqa: S608 - constant
    con.execute(
        f"INSERT INTO {ENTRY_TABLE} ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} "  # noqa: S608
        "FROM _worklist_reranked ORDER BY rank"
    )
    con.execute("DROP TABLE _worklist_reranked")
    return int(store.one_row(con.execute(f"SELECT count(*) FROM {ENTRY_TABLE}"))[0])  # noqa: S608


# --- writers --------------------------------------------------------------------------------------


def clinic_model(db_path: Path):
    """The store's treatment model for the recurrence part (as the app uses it), or None without one.

    Loaded without the explainer and the stacked refits: the risk uses the point curves only.
    """
    # lazy: at the top, importing analytics.worklist.stored took 838 ms instead of 730 ms
    from analytics.treatment.clinic import ClinicModel
    from analytics.treatment.model.files import (  # lazy: at the top, importing analytics.worklist.stored took 838 ms instead of 730 ms
        TreatmentModelError,
        load_model,
        model_dir_for,
    )

    folder = model_dir_for(Path(db_path).expanduser())
    try:
        model, card = load_model(folder)
    except TreatmentModelError:
        return None
    return ClinicModel(model, card, explainer=None, folder=folder)


def refresh_for_writer(
    con: duckdb.DuckDBPyConnection, db_path: Path, person_ids, sources_before: str
) -> RefreshResult:
    """What a writer of patient records calls inside its transaction, for the patients it touched.

    ``sources_before``: ``source_fingerprint(con)`` taken when the writer's transaction began.
    Incremental when it can be (``refresh``); otherwise a full refresh only when the store is
    small (``WRITER_FULL_MAX_PATIENTS``: seconds), so that an import of ten rows into a million-
    patient store never turns into minutes of ranking under the write lock. Skipped, the
    stored worklist stays marked stale by its fingerprint, and the page and ``oncolens
    worklist`` say so until ``oncolens worklist --refresh``.
    """
    clinic = clinic_model(db_path)
    ids = _ids(person_ids)
    model_version = clinic.version if clinic is not None else None
    if _can_increment(con, _state(con), model_version, ids, sources_before):
        return refresh(con, clinic, ids, sources_before=sources_before)
    if (
        int(store.one_row(con.execute("SELECT count(*) FROM person"))[0])
        <= WRITER_FULL_MAX_PATIENTS
    ):
        return refresh(con, clinic)
    return RefreshResult("skipped", 0, 0.0)
