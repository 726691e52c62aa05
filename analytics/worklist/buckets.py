"""The worklist a nurse works top-down: act now, imaging due, then the rest by forecast risk.

- **act now**: something new since her last review: a RECIST progression, a recurrence or
  a suspicious AI read (``events``) dated after the review. Never reviewed: new within
  ``NEVER_REVIEWED_WINDOW_DAYS`` before the data's "today", so that on the first day of the
  list a progression of 2020 is history, not news. Marking a review moves her out until
  something newer happens. Most recent event first.
- **due**: her imaging is overdue for her own cadence (``events``). Most overdue first.
- **by risk**: everyone else, in the stored risk order (risk, then the most recent event).

Why buckets are applied when a page is read, not stored: they depend on reviews, which
change with every click; the ranking changes with the data. One SQL statement over the
stored rows (or the on-the-fly ranking, registered as a relation) joined with each
patient's latest review gives the page and the count of each bucket.

Every row carries ``reason``: one sentence saying why she is where she is, built from the
row's own values (``reason``), so the CLI and the page say the same.

Hide reviewed: leaves out patients reviewed since anything new (no event and no imaging
after the review); they are back as soon as something new arrives.

Note and assignee: the latest review that set them (``worklist_review``); an empty
assignee clears it.

Sign-off (issue 22, ``SignOff``): the worklist honours the ethics board's sign-off as predict,
recommend and forecast do. The caller (which opens the cards) says which imaging versions' current
weights are approved, whether approval is required, and whether the forecast that ranked the list
is withheld. The row's quoted AI read is traced to its model version in ``ai_finding``. Where
approval is required, a read of a version not approved neither drives *act now* nor is quoted:
the row falls back to the latest suspicious read of an approved version (no later than the
ranking's), and its reason says a read is withheld pending sign-off. Where it is not required, the
read is quoted with "not approved". A withheld forecast does not order *by risk*: that bucket
falls back to the next imaging due date (soonest first), then the most recent event, then the
patient id, and the risk figures and rank are left out of the rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import pandas as pd

from analytics import store
from analytics.store.worklist_schema import ENTRY_TABLE
from analytics.worklist.events import SUSPICIOUS_CLASSES
from analytics.worklist.ranking import WORKLIST_COLUMNS, WorklistPage

BUCKETS = ("act_now", "due", "by_risk")
BUCKET_TITLES = {"act_now": "Act now", "due": "Due", "by_risk": "By risk"}
NEVER_REVIEWED_WINDOW_DAYS = 90
LIVE_RELATION = "_worklist_live"  # an on-the-fly ranking registered by ``read_frame_page``
_SOURCES = (ENTRY_TABLE, LIVE_RELATION)

REVIEW_COLUMNS = ("last_reviewed_at", "reviewed_by", "review_note", "assignee")
SIGNOFF_COLUMNS = ("ai_approved", "ai_withheld_at")  # with a ``SignOff``: the quoted read's status
RISK_COLUMNS = ("p_progression_6m", "p_recurrence_6m", "risk_6m")  # left out when withheld
FALLBACK_ORDER = (
    "next imaging due date (soonest first), then the most recent event, then the patient id"
)


@dataclass(frozen=True)
class SignOff:
    """What the ethics board's sign-off lets the worklist use; built by the caller, which knows
    the current weights (analytics never opens model files).

    ``approved_reads``: ``(model_name, model_version, weights_sha256)`` of the imaging versions
    whose current weights are approved; a read is approved only when it was made by those weights
    (``ai_finding.weights_sha256``): a read of other weights under the same version string, or one
    stored before reads recorded their weights, is not;
    ``required``: the admin requires approval (unapproved reads are withheld, not marked);
    ``risk_withheld``: the forecast version that ranked the list is withheld.
    """

    approved_reads: frozenset[tuple[str, str, str]] = frozenset()
    required: bool = False
    risk_withheld: bool = False

    @property
    def approved_keys(self) -> list[str]:
        return sorted(f"{name}/{version}/{sha}" for name, version, sha in self.approved_reads)


# name and birth date from ``person`` at read time (never stored in the ranking): a nurse tells
# patients apart by them; only roles that see patients open the worklist (dashboard.session.auth)
PAGE_COLUMNS = ("bucket", *WORKLIST_COLUMNS, "name", "birth_date", *REVIEW_COLUMNS, "reason")

_REVIEWS = """(
    SELECT person_id, max(reviewed_at) AS last_reviewed_at,
           arg_max(reviewed_by, reviewed_at) AS reviewed_by,
           arg_max(note, reviewed_at) FILTER (WHERE note IS NOT NULL AND note <> '') AS review_note,
           arg_max(assignee, reviewed_at) FILTER (WHERE assignee IS NOT NULL) AS assignee
    FROM worklist_review GROUP BY person_id
)"""
_NO_REVIEWS = """(SELECT NULL::BIGINT AS person_id, NULL::TIMESTAMP AS last_reviewed_at,
    NULL::VARCHAR AS reviewed_by, NULL::VARCHAR AS review_note, NULL::VARCHAR AS assignee)"""

# the row's quoted AI read traced to its model version, and (withholding) the latest suspicious
# read of an approved version no later than it; ``{source}`` becomes ``_signed`` (constants only)
_SIGNED = """
_quoted AS (
    SELECT f.person_id,
           bool_and(list_contains($approved_reads::VARCHAR[], f.model_name || '/' || f.model_version || '/' || coalesce(f.weights_sha256, ''))) AS ok
    FROM ai_finding AS f JOIN {source} AS w
      ON f.person_id = w.person_id AND f.created_at = w.ai_suspicious_at
     AND f.predicted_class = w.ai_label
    GROUP BY f.person_id
),
_fallback AS (
    SELECT f.person_id, max(f.created_at) AS at, arg_max(f.predicted_class, f.created_at) AS label,
           arg_max(f.probability, f.created_at) AS probability
    FROM ai_finding AS f JOIN {source} AS w
      ON f.person_id = w.person_id AND f.created_at <= w.ai_suspicious_at
    WHERE $withhold_reads AND list_contains($approved_reads::VARCHAR[], f.model_name || '/' || f.model_version || '/' || coalesce(f.weights_sha256, ''))
      AND list_contains($suspicious::VARCHAR[], f.predicted_class)
    GROUP BY f.person_id
),
_flagged AS (
    SELECT w.*, $withhold_reads AND w.ai_suspicious_at IS NOT NULL AND NOT coalesce(q.ok, FALSE)
               AS _withheld,
           q.ok AS _ok, a.at AS _a_at, a.label AS _a_label, a.probability AS _a_probability
    FROM {source} AS w LEFT JOIN _quoted AS q USING (person_id)
         LEFT JOIN _fallback AS a USING (person_id)
),
_signed AS (
    SELECT * EXCLUDE (_withheld, _ok, _a_at, _a_label, _a_probability) REPLACE (
        CASE WHEN _withheld THEN _a_at ELSE ai_suspicious_at END AS ai_suspicious_at,
        CASE WHEN _withheld THEN _a_label ELSE ai_label END AS ai_label,
        CASE WHEN _withheld THEN _a_probability ELSE ai_probability END AS ai_probability,
        CASE WHEN _withheld THEN greatest(CAST(progression_date AS TIMESTAMP),
                                          CAST(recurrence_date AS TIMESTAMP), _a_at)
             ELSE event_at END AS event_at
    ),
    CASE WHEN _withheld THEN (CASE WHEN _a_at IS NULL THEN NULL ELSE TRUE END)
         WHEN ai_suspicious_at IS NULL THEN NULL ELSE coalesce(_ok, FALSE) END AS ai_approved,
    CASE WHEN _withheld THEN ai_suspicious_at END AS ai_withheld_at
    FROM _flagged
),"""
# ``listed``: every row's bucket as a code (``_b``: 0 act now, 1 due, 2 by risk, the order of
# ``BUCKETS``) and its review; no ``person`` join and no text here, so that the page's keys and the
# counts, which see every listed row, read only the narrow columns they use (``read_page``).
_BUCKETED = """
WITH {signed}
listed AS (
    SELECT w.*, r.last_reviewed_at, r.reviewed_by, r.review_note, nullif(r.assignee, '') AS assignee,
           CASE WHEN w.event_at IS NOT NULL
                     AND w.event_at > coalesce(r.last_reviewed_at, $window_start) THEN 0
                WHEN w.due_date IS NOT NULL AND w.due_date <= $as_of THEN 1
                ELSE 2 END::TINYINT AS _b
    FROM {source} AS w LEFT JOIN {reviews} AS r USING (person_id)
    WHERE ($site::VARCHAR IS NULL OR w.site = $site) AND (NOT $only_progression OR w.progression)
),
kept AS (
    SELECT * FROM listed
    WHERE NOT ($hide_reviewed AND last_reviewed_at IS NOT NULL AND _b <> 0
               AND coalesce(last_imaging_date, DATE '1900-01-01') <= CAST(last_reviewed_at AS DATE))
)
"""
_ORDER = """
WHERE $bucket::TINYINT IS NULL OR _b = $bucket
ORDER BY _b,
         CASE WHEN _b = 0 THEN event_at END DESC NULLS LAST,
         CASE WHEN _b = 1 THEN due_date END ASC NULLS LAST,
         CASE WHEN $risk_withheld THEN due_date END ASC NULLS LAST,  -- FALLBACK_ORDER
         CASE WHEN $risk_withheld THEN event_at END DESC NULLS LAST,
         CASE WHEN $risk_withheld THEN person_id END,
         rank
"""
# the page's keys: its rows' ranks (unique in both sources) and patients, in page order
_PAGE_KEYS = "SELECT rank, person_id FROM kept" + _ORDER + "LIMIT $limit OFFSET $offset"  # noqa: S608 - constants only
# the page's rows: the same statement over those ranks only, with name and birth date
_NAMED = """,
named AS (
    SELECT k.*, {buckets}[k._b + 1] AS bucket,
           p.family_name || ', ' || p.given_name AS name, p.birth_date
    FROM kept AS k LEFT JOIN (
        SELECT person_id, family_name, given_name, birth_date FROM person
        WHERE person_id = ANY($page_people::BIGINT[])
    ) AS p USING (person_id)
)
""".replace("{buckets}", "[" + ", ".join(f"'{b}'" for b in BUCKETS) + "]")
_PAGE_ROWS = _NAMED + "SELECT {columns} FROM named" + _ORDER  # noqa: S608 - constants only
# the page's ranks: the source restricted to them (``{source}``: a constant relation name)
_ON_PAGE = "(SELECT * FROM {source} WHERE rank = ANY($page_ranks::BIGINT[]))"
_COUNTS = "SELECT _b, count(*) FROM kept GROUP BY _b"
_SIGNOFF_COUNTS = (
    "SELECT count(*) FILTER (WHERE ai_withheld_at IS NOT NULL), "
    "count(*) FILTER (WHERE ai_approved = FALSE) FROM kept"
)


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(
        store.one_row(
            con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
                [name],
            )
        )[0]
    )


def _reviews_relation(con: duckdb.DuckDBPyConnection) -> str:
    """The latest review per patient; a constant empty relation in a store from before version 7
    (opened read-only before its migration), where nobody has a note or an assignee yet."""
    columns = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'worklist_review'"
        ).fetchall()
    }
    return _REVIEWS if {"note", "assignee"} <= columns else _NO_REVIEWS


def read_page(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    limit: int = 25,
    offset: int = 0,
    *,
    only_progression: bool = False,
    site: str | None = None,
    hide_reviewed: bool = False,
    bucket: str | None = None,
    source: str = ENTRY_TABLE,
    signoff: SignOff | None = None,
) -> WorklistPage:
    """One page of the bucketed worklist; ``total`` and ``buckets`` count the whole filtered list.

    ``source``: the stored rows (``worklist_entry``) or ``LIVE_RELATION`` (see ``read_frame_page``);
    both carry ``rank`` (risk order). Rows have ``PAGE_COLUMNS`` (and ``SIGNOFF_COLUMNS`` with
    ``signoff``: the ethics board's sign-off applied as the module docstring says; None: not
    checked, for callers that show no model output).
    """
    if source not in _SOURCES:
        raise ValueError(f"unknown worklist source {source!r}")
    if bucket is not None and bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}: one of {', '.join(BUCKETS)}")
    limit, offset = max(1, int(limit)), max(0, int(offset))
    reviews = _reviews_relation(con)

    def statement(relation: str) -> str:  # the CTEs over ``relation`` (constants only)
        if signoff is None:
            return _BUCKETED.format(signed="", source=relation, reviews=reviews)
        signed = _SIGNED.format(source=relation)
        return _BUCKETED.format(signed=signed, source="_signed", reviews=reviews)

    params: dict[str, object] = {
        "window_start": dt.datetime.combine(as_of, dt.time())
        - dt.timedelta(days=NEVER_REVIEWED_WINDOW_DAYS),
        "as_of": as_of,
        "site": site or None,
        "only_progression": bool(only_progression),
        "hide_reviewed": bool(hide_reviewed),
    }
    if signoff is not None:
        params |= {
            "approved_reads": signoff.approved_keys,
            "withhold_reads": bool(signoff.required),
            "suspicious": list(SUSPICIOUS_CLASSES),
        }
    risk_withheld = signoff is not None and signoff.risk_withheld
    names = PAGE_COLUMNS if signoff is None else (*PAGE_COLUMNS, *SIGNOFF_COLUMNS)
    columns = ", ".join(c for c in names if c != "reason")
    ordering = {
        "bucket": None if bucket is None else BUCKETS.index(bucket),
        "risk_withheld": risk_withheld,
    }
    # Two statements, not one: the buckets and the order need every listed row, but only their
    # narrow columns, whereas the page's 25 rows need every column and the name. In one statement
    # the top-N carried every column of every row and joined all of ``person`` (at a million
    # patients 0.9-1.6 s a page instead of ~20 ms, docs/benchmarks.md). A rank is unique in both
    # sources, and each row's bucket and sort keys are its own (its review, its sign-off), so the
    # second statement over the page's ranks alone gives the same rows in the same order.
    whole = statement(source)
    with _one_snapshot(con):  # the page, its counts and its total from one ranking
        keys = con.execute(
            whole + _PAGE_KEYS, {**params, **ordering, "limit": limit, "offset": offset}
        ).fetchall()
        rows = con.execute(
            statement(_ON_PAGE.format(source=source)) + _PAGE_ROWS.format(columns=columns),
            {
                **params,
                **ordering,
                "page_ranks": [int(r) for r, _ in keys],
                "page_people": [int(p) for _, p in keys],
            },
        ).df()
        counts = {b: 0 for b in BUCKETS}
        counts.update(
            {BUCKETS[k]: int(v) for k, v in con.execute(whole + _COUNTS, params).fetchall()}
        )
        total = counts[bucket] if bucket else sum(counts.values())
        signoff_counts = {}
        if signoff is not None:
            withheld, unapproved = con.execute(whole + _SIGNOFF_COUNTS, params).fetchall()[0]
            signoff_counts = {"withheld": int(withheld), "not_approved": int(unapproved)}
    rows["progression"] = rows["progression"].astype(bool)
    rows["response"] = rows["response"].astype(bool)
    # one unit for dates whichever relation was read (a stored TIMESTAMP comes back in
    # microseconds, a ranking registered from pandas in nanoseconds)
    for column in rows.select_dtypes(include=["datetime"]).columns:
        rows[column] = rows[column].astype("datetime64[ns]")
    if risk_withheld:  # the forecast's output is not shown: neither its risks nor its order
        rows[list(RISK_COLUMNS)] = float("nan")
        rows["rank"] = pd.array([pd.NA] * len(rows), dtype="Int64")
        rows["risk_withheld"] = True
    rows["reason"] = [reason(row, as_of) for row in rows.to_dict("records")]
    return WorklistPage(
        rows=rows,
        total=total,
        limit=limit,
        offset=offset,
        buckets=counts,
        signoff_counts=signoff_counts,
    )


@contextlib.contextmanager
def _one_snapshot(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The page's statements in one transaction, so they read one snapshot of the store.

    Why: the page's rows, its buckets' counts and the sign-off counts are separate statements; a
    refresh committing between them (the app's background refresh, an import) could give a page
    whose rows and counts come from two rankings. DuckDB reads every statement of a transaction
    from the snapshot it began with. A caller already inside a transaction has its snapshot;
    nothing is written here, so the transaction is rolled back.
    """
    try:
        con.begin()
    except duckdb.TransactionException:  # the caller's own transaction is that snapshot
        yield
        return
    try:
        yield
    finally:
        con.rollback()


def read_frame_page(
    con: duckdb.DuckDBPyConnection, ranked_rows: pd.DataFrame, as_of: dt.date, *args, **kwargs
) -> WorklistPage:
    """``read_page`` over a ranking computed now (``ranking.ranked``'s rows, in risk order)."""
    frame = ranked_rows.assign(rank=range(1, len(ranked_rows) + 1))
    con.register(LIVE_RELATION, frame)
    try:
        return read_page(con, as_of, *args, source=LIVE_RELATION, **kwargs)
    finally:
        con.unregister(LIVE_RELATION)


# --- the one sentence per row --------------------------------------------------------------------


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _day(value) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def interval_text(days: float) -> str:
    """A usual imaging interval in the unit a clinic says it: weeks under four months, else months."""
    if days < 120:
        return f"every {round(days / 7):.0f} weeks"
    months = round(days / 30.44)
    return "every year" if months == 12 else f"every {months:.0f} months"


def _span(days: int) -> str:
    """A delay as a nurse says it: days under two months, then months, then years."""
    if days < 60:
        return f"{days} day{'s' if days != 1 else ''}"
    if days < 730:
        return f"{round(days / 30.44)} months"
    return f"{days / 365.25:.1f} years"


def _new_since(row: dict, threshold: pd.Timestamp) -> list[str]:
    """What happened after ``threshold``: progression, recurrence, suspicious AI read."""
    said = []
    progressed = row.get("progression_date")
    if not _missing(progressed) and pd.Timestamp(progressed) > threshold:
        text = f"Progression {_day(progressed)}"
        if row.get("progression") and not _missing(row.get("change_from_nadir_pct")):
            text += (
                f": {row['latest_mm']:.0f} mm, {row['change_from_nadir_pct']:+.0f} % vs "
                f"nadir {row['nadir_mm']:.0f} mm"
            )
        said.append(text)
    recurred = row.get("recurrence_date")
    if not _missing(recurred) and pd.Timestamp(recurred) > threshold:
        said.append(f"recurrence {_day(recurred)}")
    read_at = row.get("ai_suspicious_at")
    if not _missing(read_at) and pd.Timestamp(read_at) > threshold:
        probability = row.get("ai_probability")
        share = "" if _missing(probability) else f" {probability:.0%}"
        approved = row.get("ai_approved")
        mark = "" if _missing(approved) or bool(approved) else " (model not approved)"
        said.append(f"AI read “{row.get('ai_label') or 'suspicious'}”{share}{mark} {_day(read_at)}")
    return said


def _withheld_read(row: dict) -> str:
    """The sentence for a read withheld pending sign-off (empty when none)."""
    at = row.get("ai_withheld_at")
    if _missing(at):
        return ""
    return f" An AI read of {_day(at)} is withheld pending the ethics board's sign-off."


def _risk_text(row: dict) -> str:
    if row.get("risk_withheld"):
        return (
            "Forecast risk withheld: its model version is not approved (listed by next imaging due)"
        )
    risk = row.get("risk_6m")
    if _missing(risk):
        return "No six-month forecast (no lesion readings and no treatment-model forecast)"
    what = {
        "tumour": "RECIST progression",
        "survival": "recurrence",
    }.get(str(row.get("risk_parts")), "progression or recurrence")
    return f"{risk:.0%} risk of {what} in 6 months"


def reason(row: dict, as_of: dt.date) -> str:
    """One sentence: why this row is in its bucket (``row``: a page row with ``bucket``)."""
    bucket = row.get("bucket")
    reviewed = row.get("last_reviewed_at")
    if bucket == "act_now":
        threshold = (
            pd.Timestamp(as_of) - pd.Timedelta(days=NEVER_REVIEWED_WINDOW_DAYS)
            if _missing(reviewed)
            else pd.Timestamp(reviewed)
        )
        news = "; ".join(_new_since(row, threshold)) or "a new event"
        when = (
            "not reviewed yet"
            if _missing(reviewed)
            else f"new since review {_day(reviewed)} ({row.get('reviewed_by') or 'unknown'})"
        )
        return f"{news[0].upper()}{news[1:]}; {when}.{_withheld_read(row)}"
    return _later_reason(row, as_of) + _withheld_read(row)


def _later_reason(row: dict, as_of: dt.date) -> str:
    bucket = row.get("bucket")
    if bucket == "due":
        overdue = (pd.Timestamp(as_of) - pd.Timestamp(row["due_date"])).days
        cadence = row.get("cadence_days")
        usual = (
            ""
            if cadence is None or _missing(cadence)
            else f", usually {interval_text(float(cadence))}"
        )
        late = f"{_span(overdue)} past due" if overdue > 0 else "due today"
        last, recurred = row.get("last_imaging_date"), row.get("recurrence_date")
        if not _missing(recurred) and (
            _missing(last) or pd.Timestamp(last) < pd.Timestamp(recurred)
        ):
            # the due date runs from the recurrence: no restaging since (events._with_due)
            return f"Imaging overdue, {late}: not imaged since the recurrence on {_day(recurred)}."
        if _missing(last):
            return f"Imaging overdue, {late}: no imaging on record."
        return f"Imaging overdue, {late}: last {_day(last)}{usual}."
    due = row.get("due_date")
    if not _missing(due):
        nxt = f"imaging due {_day(due)}"
    elif _missing(row.get("cadence_days")):  # events._with_due: best supportive care only
        nxt = "best supportive care: no imaging scheduled"
    else:
        nxt = "no imaging on record"
    return f"{_risk_text(row)}; {nxt}."
