"""What changed in one patient's record since this user last looked: the Patient page's first section.

"Last looked" is the latest of the user's own worklist review of her and the user's own view
of her record (``view_patient`` in the audit trail), before the visit now on screen: a nurse
who opened her record on Monday sees on Thursday what arrived since Monday, whoever else
looked meanwhile. The page takes the moment once per visit, before it records the visit's own
view (``last_look``), so a rerun does not reset it.

What counts, each by the clock it carries: readings (``measurement``; AI readings behind the
sign-off, ``analytics.governance.lifecycle.measurements``) and outcome events by
their clinical date, after the day of the last look (as the worklist compares readings); AI
reads (2D, and 3D reads of a series, not those the input check refused) by when the model read
the image and treatment decisions by when they were recorded,
after the moment of the last look. Never looked: the ``FIRST_LOOK_DAYS`` before the data's
"today", so a first visit shows the recent course rather than everything.

The AI reads carry their ``model_version`` and ``weights_sha256`` so that ``signed_off`` can put
them behind the ethics board's sign-off as every other place a read shows does
(``dashboard.session.signoff.gate_reads``, the worklist's ``SignOff``): where approval is
required, the reads of versions (or weights) not approved are left out and not counted;
otherwise they stay, marked ``approved = False``. ``since_last_look`` keeps every AI read (a
patient's reads since a look are few) so that the count after the gate is exact; ``signed_off``
cuts them to ``LIMIT``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import duckdb
import pandas as pd

from analytics import store
from analytics.governance.lifecycle import measurements as ai_measurements
from analytics.worklist.buckets import SignOff

FIRST_LOOK_DAYS = 90
LIMIT = 50  # rows per kind shown; ``counts`` has the whole numbers


@dataclass(frozen=True, eq=False)
class RecordChanges:
    """Changes since ``since`` (None: never looked; then since ``window_start``)."""

    since: dt.datetime | None
    window_start: dt.datetime
    as_of: dt.date  # the data's "today" (its cut-off, else the calendar date)
    readings: pd.DataFrame  # measurement_date, concept, value, unit
    # created_at, model_name, predicted_class, probability (2D: calibrated; 3D: not, not to be shown),
    # volume_read, study_date and total_volume_ml (3D reads)
    ai_reads: pd.DataFrame
    events: pd.DataFrame  # event_date, event_type
    decisions: (
        pd.DataFrame
    )  # decided_at, chosen, actor (no recommendation: the care team reads this)
    counts: dict[str, int]

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())


def last_look(
    con: duckdb.DuckDBPyConnection,
    person_id: int,
    username: str,
    before: dt.datetime | None = None,
) -> dt.datetime | None:
    """The latest of ``username``'s reviews and recorded views of this patient (UTC) before
    ``before`` (the start of the session asking; None: any), None if never."""
    return store.one_row(
        con.execute(
            "SELECT max(occurred_at) FROM audit_event WHERE actor = ? AND subject = ? "
            "AND action IN ('view_patient', 'worklist_review') "
            "AND (?::TIMESTAMP IS NULL OR occurred_at < ?::TIMESTAMP)",
            [username, str(int(person_id)), before, before],
        )
    )[0]


# A 2D read's probability is calibrated; a 3D read's is its most confident voxel (not calibrated), so
# a 3D row carries what the read measured instead (its study date and total lesion volume) and the
# page says that, never the voxel's "100 %" beside the 2D reads' calibrated figures.
_AI_READS_2D = """
    SELECT created_at, model_name, predicted_class, probability,
           false AS volume_read, NULL::DATE AS study_date, NULL::DOUBLE AS total_volume_ml,
           model_version, weights_sha256
    FROM ai_finding
    WHERE person_id = ? AND created_at > ? ORDER BY created_at DESC
"""
_AI_READS_2D_3D = """
    SELECT created_at, model_name, predicted_class, probability,
           false AS volume_read, NULL::DATE AS study_date, NULL::DOUBLE AS total_volume_ml,
           model_version, weights_sha256
    FROM ai_finding
    WHERE person_id = ? AND created_at > ?
    UNION ALL
    SELECT read_at, model_name, label, probability, true, study_date, total_volume_ml,
           model_version, weights_sha256
    FROM ai_volume_read
    WHERE person_id = ? AND read_at > ? AND refused IS NULL
    ORDER BY created_at DESC, study_date DESC
"""


def since_last_look(
    con: duckdb.DuckDBPyConnection, person_id: int, since: dt.datetime | None, as_of: dt.date
) -> RecordChanges:
    """Her readings, AI reads, outcome events and treatment decisions after ``since`` (see the module)."""
    pid = int(person_id)
    window_start = dt.datetime.combine(as_of, dt.time()) - dt.timedelta(days=FIRST_LOOK_DAYS)
    moment = since if since is not None else window_start
    day = moment.date() if since is not None else window_start.date() - dt.timedelta(days=1)
    has_3d = store.has_table(con, "ai_volume_read")  # a store read-only before version 14 has none
    queries = {
        "readings": (
            "SELECT measurement_date, concept, value, unit FROM measurement AS m "  # noqa: S608
            f"WHERE person_id = ? AND measurement_date > ? AND {ai_measurements.shown(con)} "
            "ORDER BY measurement_date DESC, concept",  # a constant condition, never input
            [pid, day],
        ),
        "ai_reads": (  # 2D reads and 3D reads of a series (not those the input check refused)
            _AI_READS_2D_3D if has_3d else _AI_READS_2D,
            [pid, moment, pid, moment] if has_3d else [pid, moment],
        ),
        "events": (
            "SELECT event_date, event_type FROM outcome_event WHERE person_id = ? AND event_date > ? "
            "ORDER BY event_date DESC",
            [pid, day],
        ),
        "decisions": (
            "SELECT decided_at, chosen, actor FROM treatment_decision WHERE person_id = ? "
            "AND decided_at > ? ORDER BY decided_at DESC",
            [pid, moment],
        ),
    }
    frames, counts = {}, {}
    for name, (sql, params) in queries.items():
        frame = con.execute(sql, params).df()
        counts[name] = len(frame)
        # every AI read: ``signed_off`` counts and cuts them after the sign-off's gate
        frames[name] = (frame if name == "ai_reads" else frame.head(LIMIT)).reset_index(drop=True)
    return RecordChanges(since, window_start, as_of, counts=counts, **frames)


def read_versions(changes: RecordChanges) -> list[tuple[str, str]]:
    """The (model_name, model_version) pairs of its AI reads: the sign-offs ``signed_off`` needs."""
    reads = changes.ai_reads
    if reads.empty or "model_version" not in reads:
        return []
    pairs = zip(reads["model_name"].astype(str), reads["model_version"].astype(str), strict=True)
    return sorted(set(pairs))


def signed_off(changes: RecordChanges, signoff: SignOff) -> RecordChanges:
    """``changes`` with its AI reads behind the ethics board's sign-off (``SignOff``'s rule: a read
    is approved only when its version's current, approved weights made it). Where approval is
    required the others are dropped and not counted; otherwise kept with ``approved`` False, so
    the page says so beside the label. At most ``LIMIT`` reads are kept, as for the other kinds."""
    reads = changes.ai_reads
    # a frame without versions or weights (an older caller's) cannot show that a read is approved
    versions = reads["model_version"] if "model_version" in reads else [None] * len(reads)
    weights = reads["weights_sha256"] if "weights_sha256" in reads else [None] * len(reads)
    approved = pd.Series(
        [
            (str(n), str(v), str(w)) in signoff.approved_reads
            for n, v, w in zip(reads.get("model_name", []), versions, weights, strict=True)
        ],
        index=reads.index,
        dtype=bool,
    )
    reads = reads.assign(approved=approved)
    if signoff.required:
        reads = reads[reads["approved"]]
    counts = {**changes.counts, "ai_reads": len(reads)}
    return dataclasses.replace(
        changes, ai_reads=reads.head(LIMIT).reset_index(drop=True), counts=counts
    )
