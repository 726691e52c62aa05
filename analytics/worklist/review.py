"""Worklist reviews: who looked at a patient last, and what changed since.

The care team works the list top-down; the question at each row is "is there
anything new since someone last looked?". A review is one row in
``worklist_review`` (schema version 6, append-only, like the audit trail it is
mirrored in: the same action lands as a chained audit event in the same
transaction), and ``changes_since_review`` answers for the rows of one page:

- ``last_reviewed_at`` / ``reviewed_by``: the latest review, None when never;
- ``new_readings``: lesion readings dated after the review day (all of them when
  never reviewed), AI readings behind the sign-off (``analytics.governance.lifecycle.measurements``);
- ``new_ai_findings``: AI reads stored after the review: 2D reads (``ai_finding.created_at``)
  and 3D reads of a series (``ai_volume_read.read_at``, schema 14), one per series and model;
  a read the input check refused is not counted (for 2D it sits in ``ai_refusal``, never here);
  with a ``SignOff`` where approval is required, only reads by approved weights count (the
  worklist's rule: ``buckets.SignOff``, as ``dashboard.session.signoff.gate_reads``), so the count
  never announces a read the page withholds;
- ``new_progression``: the RECIST progression flag is set and its latest reading
  is dated after the review (or never reviewed).

Why readings compare by date and AI findings by time: a lesion reading carries
the clinical date it was measured, not when it was stored; an AI finding carries
the moment the model read the image. A reading imported today but measured
before the last review therefore does not count as new; the import's own audit
event records that it arrived.

Why per page, not stored: reviews change with every click while the stored
ranking changes with the data; a page is 25 patients, and the three lookups
below read only their rows (``person_id IN`` on tables stored in patient order).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import duckdb
import pandas as pd

from analytics import store
from analytics.governance import audit
from analytics.governance.lifecycle import measurements as ai_measurements
from analytics.worklist.buckets import SignOff
from analytics.worklist.ranking import LESION_CONCEPT

ACTION = "worklist_review"
NOTE_MAX_CHARS = 280  # a short note: what was done or who to call, not a clinical letter
ASSIGNABLE_ROLES = frozenset({"oncologist", "care_team"})  # the roles that open the worklist

CHANGE_COLUMNS = ("person_id", "last_reviewed_at", "reviewed_by", "new_readings", "new_ai_findings")


class ReviewError(ValueError):
    pass


def mark_reviewed(
    con: duckdb.DuckDBPyConnection,
    person_id: int,
    actor: str,
    role: str | None = None,
    *,
    note: str | None = None,
    assignee: str | None = None,
) -> datetime:
    """Record that ``actor`` reviewed the patient now (row + chained audit event, one transaction).

    ``note``: a short free text (at most ``NOTE_MAX_CHARS``), kept in ``worklist_review`` only: the
    audit event records that a note was written and its SHA-256, not the text, which may name
    people (no PHI in the audit trail, as for a treatment decision's reason). ``assignee``: the
    username of an account that may open the worklist, or "" to clear the assignment; None
    leaves it as it was.
    """
    pid = int(person_id)
    if not store.one_row(con.execute("SELECT count(*) FROM person WHERE person_id = ?", [pid]))[0]:
        raise ReviewError(f"no patient with id {pid} in this store")
    if not str(actor or "").strip():
        raise ReviewError("a review needs the name of who reviewed")
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX_CHARS:
        raise ReviewError(f"the note is {len(note)} characters long; at most {NOTE_MAX_CHARS}")
    if assignee:
        assignee = assignee.strip()
        found = con.execute("SELECT role FROM app_user WHERE username = ?", [assignee]).fetchall()
        if not found:
            raise ReviewError(f"no account named {assignee!r} to assign her to")
        if found[0][0] not in ASSIGNABLE_ROLES:
            raise ReviewError(f"{assignee} ({found[0][0]}) does not work the worklist")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    details: dict = {"reviewed_at": now.isoformat(timespec="seconds")}
    if note is not None:
        details["note_sha256"] = hashlib.sha256(note.encode()).hexdigest()
    if assignee is not None:
        details["assignee"] = assignee
    with audit.chained_transaction(con):
        con.execute(
            "INSERT INTO worklist_review (person_id, reviewed_at, reviewed_by, role, note, assignee) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [pid, now, str(actor), role, note, assignee],
        )
        audit.append_event(
            con,
            actor=str(actor),
            role=role,
            action=ACTION,
            subject=str(pid),
            details=details,
        )
    return now


def assignable(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Usernames a patient can be assigned to (accounts whose role works the worklist)."""
    return [
        row[0]
        for row in con.execute(
            "SELECT username FROM app_user WHERE role IN (SELECT unnest(?::VARCHAR[])) ORDER BY username",
            [sorted(ASSIGNABLE_ROLES)],
        ).fetchall()
    ]


def _has_reviews(con: duckdb.DuckDBPyConnection) -> bool:
    return store.has_table(con, "worklist_review")


def last_review(con: duckdb.DuckDBPyConnection, person_id: int) -> tuple[datetime, str] | None:
    if not _has_reviews(con):
        return None
    row = con.execute(
        "SELECT reviewed_at, reviewed_by FROM worklist_review WHERE person_id = ? ORDER BY reviewed_at DESC LIMIT 1",
        [int(person_id)],
    ).fetchone()
    return None if row is None else (row[0], row[1])


def changes_since_review(
    con: duckdb.DuckDBPyConnection, person_ids, signoff: SignOff | None = None
) -> pd.DataFrame:
    """One row per id in ``person_ids`` (same order) with ``CHANGE_COLUMNS``. ``signoff``: the
    ethics board's sign-off applied to ``new_ai_findings`` (None: every read counts, for callers
    that show no model output)."""
    ids = [int(p) for p in person_ids]
    if not ids:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CHANGE_COLUMNS})
    # a store opened read-only before its migration to version 6 has no reviews yet: "never reviewed"
    reviews = (
        "worklist_review"
        if _has_reviews(con)
        else (
            "(SELECT NULL::BIGINT AS person_id, NULL::TIMESTAMP AS reviewed_at, NULL::VARCHAR AS reviewed_by)"
        )
    )
    # 3D reads count like 2D ones; a store read-only before version 14 has none
    reads_3d = (
        "(SELECT person_id, read_at, model_name, model_version, weights_sha256 "
        "FROM ai_volume_read WHERE refused IS NULL)"
        if store.has_table(con, "ai_volume_read")
        else "(SELECT NULL::BIGINT AS person_id, NULL::TIMESTAMP AS read_at, NULL::VARCHAR AS "
        "model_name, NULL::VARCHAR AS model_version, NULL::VARCHAR AS weights_sha256)"
    )
    shown = ai_measurements.shown(con)
    out = con.execute(
        f"""
        WITH ids AS (SELECT unnest(?::BIGINT[]) AS person_id),
        last AS (
            SELECT person_id, max(reviewed_at) AS last_reviewed_at,
                   arg_max(reviewed_by, reviewed_at) AS reviewed_by
            FROM {reviews} WHERE person_id IN (SELECT person_id FROM ids) GROUP BY person_id
        ),
        readings AS (
            SELECT m.person_id, count(*) AS new_readings
            FROM measurement AS m LEFT JOIN last AS l USING (person_id)
            WHERE m.person_id IN (SELECT person_id FROM ids) AND m.concept = ?
              AND (l.last_reviewed_at IS NULL OR m.measurement_date > CAST(l.last_reviewed_at AS DATE))
              AND {shown}
            GROUP BY m.person_id
        ),
        reads AS (
            SELECT person_id, created_at AS at, model_name, model_version, weights_sha256
            FROM ai_finding WHERE person_id IN (SELECT person_id FROM ids)
            UNION ALL
            SELECT person_id, read_at AS at, model_name, model_version, weights_sha256
            FROM {reads_3d} WHERE person_id IN (SELECT person_id FROM ids)
        ),
        findings AS (
            SELECT f.person_id, count(*) AS new_ai_findings
            FROM reads AS f LEFT JOIN last AS l USING (person_id)
            WHERE (l.last_reviewed_at IS NULL OR f.at > l.last_reviewed_at)
              AND (NOT ?::BOOLEAN OR list_contains(?::VARCHAR[], f.model_name || '/' ||
                   f.model_version || '/' || coalesce(f.weights_sha256, '')))
            GROUP BY f.person_id
        )
        SELECT ids.person_id, last.last_reviewed_at, last.reviewed_by,
               coalesce(readings.new_readings, 0) AS new_readings,
               coalesce(findings.new_ai_findings, 0) AS new_ai_findings
        FROM ids LEFT JOIN last USING (person_id) LEFT JOIN readings USING (person_id)
                 LEFT JOIN findings USING (person_id)
        """,  # noqa: S608 - {reviews}, {reads_3d}, {shown}: a few constants each; values are parameters
        [
            ids,
            LESION_CONCEPT,
            signoff is not None and signoff.required,
            [] if signoff is None else signoff.approved_keys,
        ],
    ).df()
    return out.set_index("person_id").loc[ids].reset_index()[list(CHANGE_COLUMNS)]


def with_changes(
    con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, signoff: SignOff | None = None
) -> pd.DataFrame:
    """A worklist page's rows with the review columns and ``new_progression`` joined (row order
    kept); ``signoff`` as ``changes_since_review``."""
    changes = changes_since_review(con, rows["person_id"].tolist(), signoff).drop(
        columns="person_id"
    )
    changes = changes.drop(columns=[c for c in changes.columns if c in rows.columns])
    out = pd.concat([rows.reset_index(drop=True), changes.reset_index(drop=True)], axis=1)
    reviewed_day = pd.to_datetime(out["last_reviewed_at"]).dt.normalize()
    progressed = pd.to_datetime(out["progression_date"])  # the latest progression, line by line
    out["new_progression"] = progressed.notna() & (
        reviewed_day.isna() | (progressed > reviewed_day)
    )
    return out
