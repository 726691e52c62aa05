"""The care team's worklist: every followed patient's RECIST flags, events and forecast risk.

Risk: the probability of RECIST progression or recurrence in the next six
months (``analytics.forecast.patient.cohort_risk``): the tumour growth-inhibition fit
of her lesion readings *on her current line* gives the chance that her last reading
expected within six months (``forecast.expected_reading_day``) meets progression against
that line's nadir; the clinic's treatment model (when trained, and only while no
recurrence is recorded) the chance of a first recurrence within six months; the two
combine as 1 - (1 - p)(1 - q).

RECIST 1.1 is judged line by line (``analytics.worklist.events``: a progression ends
the line and its reading is the next line's baseline), so a progression is a dated
event, not a state that lasts for ever: the first worklist compared every reading
with the nadir of the whole history and put 830 of 1,263 demo rows at exactly 100 %.
One target lesion, so the "sum of diameters" is its longest diameter:

- progression: latest >= 1.2 x nadir of its line AND latest - nadir >= 5 mm;
- response: latest <= 0.7 x the line's baseline (a decrease of at least 30 %).

Who is on the list: patients alive and still followed (see ``events``), recurred
patients included. The buckets a nurse works through (act now, due, the rest by
risk) depend on reviews, which change with every click, and are applied when a
page is read (``analytics.worklist.buckets``); the rows here are in risk order:
risk descending, then the most recent event, then the regrowth ratio, then id.

Why rank everyone, then page: a forecast risk is not a SQL expression, so the
whole list is ranked at once (vectorised fits, ``RISK_CHUNK`` patients per
batch so that memory stays flat, batches on one thread per core where the
caller allows it: ``risks``). ``ranked`` is that computation; the app does not run it per request
at scale but reads the stored result (``analytics.worklist.stored``, table
``worklist_entry``), written by ``ranked`` itself, so the stored ranking and
the on-the-fly one are the same numbers.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from analytics.forecast.data import data_cutoff
from analytics.forecast.patient import cohort_risk, estimate_prior
from analytics.worklist import events
from analytics.worklist.events import LESION_CONCEPT as LESION_CONCEPT

WORKLIST_COLUMNS = (
    "person_id",
    "mrn",
    "site",
    "n_measurements",
    "baseline_date",
    "baseline_mm",
    "nadir_mm",
    "latest_date",
    "latest_mm",
    "change_from_nadir_pct",
    "change_from_baseline_pct",
    "progression",
    "response",
    "regrowth_ratio",
    "p_progression_6m",
    "p_recurrence_6m",
    "risk_6m",
    "risk_parts",
    # method version 4: events and imaging cadence (analytics.worklist.events), for the buckets
    "progression_date",
    "n_progressions",
    "line_start",
    "recurrence_date",
    "ai_suspicious_at",
    "ai_label",
    "ai_probability",
    "last_imaging_date",
    "cadence_days",
    "due_date",
    "event_at",
    "event_kind",
)
EVENT_KINDS = ("progression", "recurrence", "ai_read")  # event_kind: the latest of these, by date


@dataclass(frozen=True, eq=False)
class WorklistPage:
    """One page of the worklist and the size of the whole (filtered) list.

    ``rows`` has the columns of ``WORKLIST_COLUMNS``, sorted by ``risk_6m`` descending
    (patients without any forecast last), then ``regrowth_ratio`` (latest / nadir)
    descending, then ``person_id``; sizes in mm, changes in percent, probabilities in [0, 1].
    ``risk_parts`` says what the risk includes: "tumour+survival", "tumour", "survival", "none".
    """

    rows: pd.DataFrame
    total: int
    limit: int
    offset: int
    buckets: dict[str, int] = field(default_factory=dict)  # rows per bucket (filters applied)
    # with a sign-off (buckets.SignOff): rows whose AI read is "withheld" or quoted "not_approved"
    signoff_counts: dict[str, int] = field(default_factory=dict)


RiskMap = Callable[..., list[pd.DataFrame]]
"""Runs ``risks``' chunks elsewhere: ``run(jobs, prior, as_of, line_start)`` with ``jobs`` a list of
(person_ids, with the clinic model?) returns each job's ``cohort_risk`` frame, in the jobs' order.
``dashboard.services.ray_jobs.risk_map`` runs them as Ray tasks; None runs them here."""

RISK_CHUNK = (
    20_000  # patients per vectorised risk batch: ~1.2 GB peak at 20,000, the same speed as larger
)
MAX_RISK_THREADS = 4  # batches computed at once by ``risks(threads=...)``: ~1.2 GB each


def risk_threads() -> int:
    """Threads for a full ranking: one per core, at most ``MAX_RISK_THREADS`` (memory)."""
    return max(1, min(os.cpu_count() or 1, MAX_RISK_THREADS))


def flagged(
    con: duckdb.DuckDBPyConnection,
    site: str | None = None,
    *,
    person_ids: np.ndarray | None = None,
    as_of=None,
) -> pd.DataFrame:
    """Eligible patients with their lesion summary, RECIST flags judged line by line, events and
    imaging cadence (no risk), in ``person_id`` order.

    ``person_ids``: only these patients (a writer's touched patients); None: everyone.
    """
    as_of = as_of or data_cutoff(con) or dt.date.today()
    frame = events.people(con, as_of, site, person_ids)
    ids = frame["person_id"].to_numpy(dtype=np.int64)
    parts = [
        events.progression_segments(events.readings(con, ids[i : i + RISK_CHUNK], as_of))
        for i in range(0, ids.size, RISK_CHUNK)
    ]
    segments = (
        pd.concat([p for p in parts if not p.empty], ignore_index=True)
        if any(not p.empty for p in parts)
        else events.progression_segments(pd.DataFrame())
    )
    frame = frame.merge(segments, on="person_id", how="left")
    nadir, base, latest = frame["nadir_mm"], frame["baseline_mm"], frame["latest_mm"]
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["change_from_nadir_pct"] = 100 * (latest - nadir) / nadir.where(nadir != 0)
        frame["change_from_baseline_pct"] = 100 * (latest - base) / base.where(base != 0)
        frame["regrowth_ratio"] = latest / np.maximum(nadir, events.NADIR_FLOOR_MM)
    frame["progression"] = frame["progression"].astype("boolean").fillna(False).astype(bool)
    frame["response"] = ((base > 0) & (latest <= (1 - events.RESPONSE_RELATIVE) * base)).astype(
        bool
    )
    frame["n_measurements"] = frame["n_measurements"].fillna(0).astype(np.int64)
    frame["n_progressions"] = frame["n_progressions"].fillna(0).astype(np.int64)
    return _with_event(frame)


def _with_event(frame: pd.DataFrame) -> pd.DataFrame:
    """``event_at``: the latest of progression, recurrence and suspicious AI read; ``event_kind``: which.

    Dated events (a reading's or a recurrence's date) count from midnight of that day, so a review
    later that day covers them and one the day before does not (as ``review`` compares readings).
    """
    columns = ("progression_date", "recurrence_date", "ai_suspicious_at")
    when = np.column_stack(
        [pd.to_datetime(frame[c]).astype("datetime64[ns]").to_numpy() for c in columns]
    ).reshape(len(frame), len(columns))
    none = np.isnat(when)
    ns = np.where(none, np.iinfo(np.int64).min, when.astype(np.int64))
    pick = ns.argmax(axis=1)
    has = ~none.all(axis=1)
    latest = pd.Series(
        np.where(has, ns[np.arange(len(frame)), pick], 0).astype("datetime64[ns]"),
        index=frame.index,
    ).where(has)
    kind = pd.Series(np.array(EVENT_KINDS, dtype=object)[pick], index=frame.index).where(has)
    return frame.assign(event_at=latest, event_kind=kind)


def risks(
    con: duckdb.DuckDBPyConnection,
    person_ids: np.ndarray,
    prior,
    clinic=None,
    as_of=None,
    *,
    line_start: pd.Series | None = None,
    recurred: np.ndarray | None = None,
    risk_map: RiskMap | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """``forecast.cohort_risk`` in batches of ``RISK_CHUNK`` patients (in the order given).

    ``risk_map``: where the batches run (``RiskMap``; default here, one after another). The
    batches and their order are the same whichever runs them, so the numbers are too.
    ``threads``: batches computed at once in this process, each reading through its own cursor
    of ``con`` (NumPy and DuckDB release the GIL, so two threads use two cores). Only for a
    caller whose transaction has written nothing yet: a cursor does not see uncommitted rows.

    ``line_start``: per person_id, the start of her current line (after a progression; see
    ``events``); ``recurred``: ids with a recurrence recorded, whose risk is the tumour part
    alone (the treatment model forecasts a first recurrence). Both are read from the store
    when not given.

    Why batches: the risk simulates 400 future readings per patient, and parameter draws for
    600,000 patients at once would need over 10 GB; by batch the peak stays near 1 GB. The
    batches are a fixed function of the list, so the same list gives the same numbers.
    """
    ids = np.asarray(person_ids, dtype=np.int64)
    if line_start is None or recurred is None:  # called with ids alone: take both from the store
        known = flagged(con, person_ids=ids, as_of=as_of)
        line_start, recurred = line_starts(known), recurred_ids(known)
    jobs: list[tuple[np.ndarray, bool]] = []
    for i in range(0, ids.size, RISK_CHUNK):
        chunk = ids[i : i + RISK_CHUNK]
        after = np.isin(chunk, recurred)  # recurrence recorded: no recurrence forecast
        for part, with_clinic in ((chunk[~after], clinic is not None), (chunk[after], False)):
            if part.size:
                jobs.append((part, with_clinic))
    if risk_map is not None and jobs:
        parts = risk_map(jobs, prior, as_of or data_cutoff(con) or dt.date.today(), line_start)
    elif threads > 1 and len(jobs) > 1:
        parts = _threaded(con, jobs, prior, clinic, as_of, line_start, threads)
    else:
        parts = [
            cohort_risk(
                con, part, prior, clinic if with_clinic else None, as_of, line_start=line_start
            )
            for part, with_clinic in jobs
        ]
    if not parts:
        return cohort_risk(con, ids, prior, clinic, as_of)
    return pd.concat(parts, ignore_index=True).set_index("person_id").loc[ids].reset_index()


def _threaded(con, jobs, prior, clinic, as_of, line_start, threads: int) -> list[pd.DataFrame]:
    """``cohort_risk`` of each job on a pool of threads, one DuckDB cursor per job; in job order.

    Each batch's numbers depend on its own patients and seed only, so they are those of the
    serial loop (tests/analytics/worklist/test_ranking_threads.py)."""

    def one(job: tuple[np.ndarray, bool]) -> pd.DataFrame:
        part, with_clinic = job
        cursor = con.cursor()  # a connection of its own: registrations and results per thread
        try:
            return cohort_risk(
                cursor, part, prior, clinic if with_clinic else None, as_of, line_start=line_start
            )
        finally:
            cursor.close()

    with ThreadPoolExecutor(max_workers=min(threads, len(jobs))) as pool:
        return list(pool.map(one, jobs))


def line_starts(frame: pd.DataFrame) -> pd.Series:
    """Per person_id, the start of her current RECIST line, for patients with a progression."""
    after = frame[frame["n_progressions"] > 0]
    return pd.Series(pd.to_datetime(after["line_start"]).to_numpy(), index=after["person_id"])


def recurred_ids(frame: pd.DataFrame) -> np.ndarray:
    return frame.loc[frame["recurrence_date"].notna(), "person_id"].to_numpy(dtype=np.int64)


def rank_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in risk order: ``risk_6m`` descending (no forecast last), then the latest event first
    (ties in risk are ordered by how recent her news is), regrowth ratio descending, id."""
    return (
        frame.assign(
            _missing=frame["risk_6m"].isna(),
            _no_event=frame["event_at"].isna(),
            _no_ratio=frame["regrowth_ratio"].isna(),
        )
        .sort_values(
            [
                "_missing",
                "risk_6m",
                "_no_event",
                "event_at",
                "_no_ratio",
                "regrowth_ratio",
                "person_id",
            ],
            ascending=[True, False, True, False, True, False, True],
            kind="stable",
        )
        .drop(columns=["_missing", "_no_event", "_no_ratio"])
    )


def ranked(
    con: duckdb.DuckDBPyConnection,
    site: str | None = None,
    *,
    prior=None,
    clinic=None,
    as_of=None,
    risk_map: RiskMap | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """The whole (site-filtered) list with RECIST flags and forecast risks, in rank order.

    ``threads``: see ``risks`` (only when the caller's transaction has written nothing yet).

    ``prior``: the cohort's growth-inhibition prior (estimated from the store when None), or a
    function returning it, called once the flags are computed (a full refresh estimates the
    prior on another thread meanwhile: ``analytics.worklist.stored``);
    ``clinic``: a loaded ``treatment_clinic.ClinicModel`` for the recurrence part, or None
    (the risk is then the tumour part alone, and ``risk_parts`` says so).
    """
    as_of = as_of or data_cutoff(con) or dt.date.today()
    frame = flagged(con, site, as_of=as_of)
    if prior is None:
        prior = estimate_prior(con)
    elif callable(prior):  # being estimated elsewhere meanwhile: wait for it now
        prior = prior()
    risk = risks(
        con,
        frame["person_id"].to_numpy(dtype=np.int64),
        prior,
        clinic,
        as_of,
        line_start=line_starts(frame),
        recurred=recurred_ids(frame),
        risk_map=risk_map,
        threads=threads,
    )
    frame = rank_order(frame.merge(risk, on="person_id", how="left"))
    return frame[list(WORKLIST_COLUMNS)].reset_index(drop=True)


def page(
    ranked_rows: pd.DataFrame,
    limit: int = 25,
    offset: int = 0,
    only_progression: bool = False,
    site: str | None = None,
) -> WorklistPage:
    """One page of an already ranked list; ``total`` counts the whole filtered list.

    Positions, not a filtered copy: only the page's rows are taken from the frame (the
    benchmark's pandas side pages the stored ranking of a million patients with this).
    """
    limit = max(1, int(limit))
    offset = max(0, int(offset))
    if not only_progression and not site:
        rows, total = ranked_rows.iloc[offset : offset + limit], len(ranked_rows)
    else:
        keep = np.ones(len(ranked_rows), dtype=bool)
        if only_progression:
            keep &= ranked_rows["progression"].to_numpy(dtype=bool)
        if site:
            keep &= (ranked_rows["site"] == site).to_numpy(dtype=bool)
        positions = np.flatnonzero(keep)
        rows, total = ranked_rows.iloc[positions[offset : offset + limit]], len(positions)
    return WorklistPage(rows=rows.reset_index(drop=True), total=total, limit=limit, offset=offset)


def worklist(
    con: duckdb.DuckDBPyConnection,
    limit: int = 25,
    offset: int = 0,
    only_progression: bool = False,
    site: str | None = None,
    *,
    prior=None,
    clinic=None,
) -> WorklistPage:
    """One page of patients ranked by forecast risk, computed now (see ``ranked``).

    ``site`` restricts to one treating clinic; ``only_progression`` keeps
    patients meeting RECIST 1.1 progression. ``total`` counts the whole
    filtered list, so a page can say "26-50 of 1,234". The whole list is ranked,
    then filtered, so a patient's risk does not depend on the filter (as in the
    stored worklist, ``worklist_store.read_page``, which the app reads).
    """
    return page(ranked(con, prior=prior, clinic=clinic), limit, offset, only_progression, site)


def sites(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The treating clinics present in the store, for the site filter."""
    return [
        row[0] for row in con.execute("SELECT DISTINCT site FROM person ORDER BY site").fetchall()
    ]
