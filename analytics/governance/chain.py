"""The audit chain on an open connection: hashing, appending, sealing and verifying events.

Why apart from ``audit``: the store's version-3 migration seals the events written before
the chain existed, on the migration's own connection. This module never opens the store,
so ``analytics.store.migrations`` imports it without a cycle; ``audit`` adds the calls that
open the store by path and is what the rest of OncoLens imports.

The audit trail: what the system showed or did, to whom, and when, hash-chained.

Why a chain: an ethics board must be able to trust that the trail it reads is the
trail that was written. Each event stores ``prev_hash`` (the hash of the event
before it) and ``hash = sha256(prev_hash + canonical JSON of its own fields)``,
so changing a row breaks its own hash, and removing or reordering rows breaks
the next event's ``prev_hash``. ``audit_chain_head`` (one row) holds the number
of events and the last hash, so removing the *last* events is caught too.
``verify`` walks the chain and names the first bad event.

What the chain does not do: someone who can write the file can also recompute
every hash after an edit. Anchors close that gap (issue 24): ``oncolens audit anchor``
writes the number of events and the head hash at that moment (``anchor``) to a file
kept outside the store, or prints it for an external log; ``audit verify --anchor FILE``
checks that the chain still holds that hash at that position (``check_anchor``), so a
chain edited and recomputed before an anchor is caught. Events after the last anchor
are protected only by the chain until the next anchor.

Concurrency. Events are written through ``store.open_store`` like every other
write. DuckDB lets one process hold the file at a time, so writers in
different processes (the app, a CLI) are serialised by the file lock; writers
in one process (the app's sessions are threads) take ``_CHAIN_LOCK`` around
their transaction. Each append reads the head and updates it in the same
transaction, so even a writer that skipped the lock cannot fork the chain:
DuckDB refuses the second concurrent update of the head row.

Never store passwords or direct identifiers here: ``subject`` is a patient id
(a surrogate key, never a name or MRN), ``actor`` a staff username.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import pandas as pd

GENESIS = "0" * 64  # prev_hash of the first event
# Fields covered by each event's hash, in the order they are read back for verification.
HASHED_FIELDS = (
    "event_id",
    "occurred_at",
    "actor",
    "role",
    "action",
    "subject",
    "model_name",
    "model_version",
    "inputs_sha256",
    "details",
)
# HASHED_FIELDS as SQL text, written out: no SQL here is built from strings
_COLUMNS = "event_id, occurred_at, actor, role, action, subject, model_name, model_version, inputs_sha256, details"
_CHAIN_LOCK = threading.RLock()
_IN_CHAINED: set[int] = set()  # id() of connections inside chained_transaction (under the lock)


@dataclass(frozen=True)
class Verification:
    """Result of walking the chain: ``first_bad`` names the first event that fails, if any."""

    ok: bool
    events: int
    head_hash: str
    first_bad: int | None = None
    problem: str | None = None
    unsealed: bool = False  # a store from before the chain: nothing to verify, not tampering


def canonical_json(value: object) -> str:
    """Sorted keys, no spaces, UTF-8 as is: one byte string per value, on every machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def inputs_hash(*parts: bytes | str | int | float | dict | list | None) -> str:
    """sha256 of what a model was given (image bytes, frame, covariates): links events without copying data."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, bytes):
            chunk = part
        elif isinstance(part, str):
            chunk = part.encode()
        else:
            chunk = canonical_json(part).encode()
        digest.update(len(chunk).to_bytes(8, "big"))  # length-prefixed: ("ab","c") != ("a","bc")
        digest.update(chunk)
    return digest.hexdigest()


def _timestamp_text(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


def event_hash(prev_hash: str, fields: dict) -> str:
    """``sha256(prev_hash + canonical JSON of the event's fields)``, hex."""
    row = {k: fields[k] for k in HASHED_FIELDS}
    row["occurred_at"] = _timestamp_text(row["occurred_at"])
    return hashlib.sha256((prev_hash + canonical_json(row)).encode()).hexdigest()


@contextlib.contextmanager
def chained_transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One write transaction holding this process's chain lock: use it around ``append_event``.

    Callers that write their own rows with an event (a treatment decision and its
    audit entry) put both in this transaction, so they commit or fail together.
    """
    with _CHAIN_LOCK:
        con.execute("BEGIN TRANSACTION")
        _IN_CHAINED.add(id(con))
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            _IN_CHAINED.discard(id(con))


def append_event(
    con: duckdb.DuckDBPyConnection,
    *,
    actor: str,
    action: str,
    role: str | None = None,
    subject: str | None = None,
    details: dict | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    inputs_sha256: str | None = None,
) -> int:
    """Append one chained event on an open, writable connection and return its id.

    Inside ``chained_transaction`` the event joins the caller's transaction; on a
    connection in autocommit mode it runs in a transaction of its own. Do not call
    it inside a transaction begun with a plain ``BEGIN``: DuckDB has no way to ask
    whether one is open, and a second ``BEGIN`` aborts it.
    """
    if id(con) in _IN_CHAINED:
        return _append(
            con, actor, action, role, subject, details, model_name, model_version, inputs_sha256
        )
    with chained_transaction(con):
        return _append(
            con, actor, action, role, subject, details, model_name, model_version, inputs_sha256
        )


def _append(
    con, actor, action, role, subject, details, model_name, model_version, inputs_sha256
) -> int:
    head = con.execute("SELECT events, last_hash FROM audit_chain_head WHERE id = 1").fetchall()
    events, prev_hash = (int(head[0][0]), str(head[0][1])) if head else (0, GENESIS)
    fields = {
        "event_id": int(con.execute("SELECT nextval('audit_event_seq')").fetchall()[0][0]),
        "occurred_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "actor": str(actor),
        "role": role,
        "action": str(action),
        "subject": None if subject is None else str(subject),
        "model_name": model_name,
        "model_version": None if model_version is None else str(model_version),
        "inputs_sha256": inputs_sha256,
        "details": canonical_json(details or {}),
    }
    digest = event_hash(prev_hash, fields)
    con.execute(
        "INSERT INTO audit_event (event_id, occurred_at, actor, role, action, subject, model_name, model_version, inputs_sha256, details, prev_hash, hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [*(fields[k] for k in HASHED_FIELDS), prev_hash, digest],
    )
    # INSERT OR REPLACE would delete and re-insert the row: an UPDATE conflicts with a concurrent one
    if head:
        con.execute(
            "UPDATE audit_chain_head SET events = ?, last_event_id = ?, last_hash = ? WHERE id = 1",
            [events + 1, fields["event_id"], digest],
        )
    else:
        con.execute(
            "INSERT INTO audit_chain_head VALUES (1, ?, ?, ?)",
            [events + 1, fields["event_id"], digest],
        )
    return fields["event_id"]


def seal_unchained(con: duckdb.DuckDBPyConnection) -> int:
    """Chain the events written before version 3 (in id order) and set the head; returns how many.

    Runs once, inside the version-3 migration's transaction. Events sealed here
    were not protected before the migration; from then on they are.
    """
    rows = con.execute(
        "SELECT event_id, occurred_at, actor, role, action, subject, model_name, model_version, inputs_sha256, details FROM audit_event ORDER BY event_id"
    ).fetchall()
    prev, links = GENESIS, []
    for row in rows:
        fields = dict(zip(HASHED_FIELDS, row, strict=True))
        digest = event_hash(prev, fields)
        links.append((fields["event_id"], prev, digest))
        prev = digest
    if links:
        frame = pd.DataFrame(links, columns=["event_id", "prev_hash", "hash"])
        con.register("oncolens_audit_links", frame)
        try:
            con.execute(
                "UPDATE audit_event SET prev_hash = l.prev_hash, hash = l.hash "
                "FROM oncolens_audit_links AS l WHERE audit_event.event_id = l.event_id"
            )
        finally:
            con.unregister("oncolens_audit_links")
    last_id = links[-1][0] if links else None
    con.execute("DELETE FROM audit_chain_head")
    con.execute("INSERT INTO audit_chain_head VALUES (1, ?, ?, ?)", [len(links), last_id, prev])
    return len(links)


def verify(con: duckdb.DuckDBPyConnection, batch: int = 10_000) -> Verification:
    """Walk the chain in id order; the first event whose links or hash do not hold is named."""
    tables = {
        str(r[0])
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name IN ('audit_event', 'audit_chain_head')"
        ).fetchall()
    }
    if "audit_event" not in tables:
        return Verification(
            False,
            0,
            GENESIS,
            None,
            "the audit_event table is missing: the audit trail was removed from this store",
        )
    if "audit_chain_head" not in tables:
        return Verification(
            False,
            0,
            GENESIS,
            None,
            "this store predates the hash chain (schema version < 3): its events carry no hashes "
            "to verify; the first write of this OncoLens seals them (e.g. `oncolens audit anchor`, "
            "which then records the head), after which they can be verified",
            unsealed=True,
        )
    cursor = con.execute(
        "SELECT event_id, occurred_at, actor, role, action, subject, model_name, model_version, inputs_sha256, details, prev_hash, hash FROM audit_event ORDER BY event_id"
    )
    expected_prev, n = GENESIS, 0
    while chunk := cursor.fetchmany(batch):
        for row in chunk:
            n += 1
            fields = dict(zip(HASHED_FIELDS, row[: len(HASHED_FIELDS)], strict=True))
            prev_hash, stored = row[-2], row[-1]
            event_id = fields["event_id"]
            if stored is None or prev_hash is None:
                return Verification(
                    False,
                    n,
                    expected_prev,
                    event_id,
                    "it has no hash: it was written around the chain",
                )
            if prev_hash != expected_prev:
                return Verification(
                    False,
                    n,
                    expected_prev,
                    event_id,
                    "it does not follow the event before it: an event was removed or the events "
                    "were reordered just before it",
                )
            if event_hash(prev_hash, fields) != stored:
                return Verification(
                    False, n, expected_prev, event_id, "it was changed after it was written"
                )
            expected_prev = stored
    head = con.execute(
        "SELECT events, last_event_id, last_hash FROM audit_chain_head WHERE id = 1"
    ).fetchall()
    if not head:
        return Verification(
            False,
            n,
            expected_prev,
            None,
            f"the chain's head row is missing (audit_chain_head was emptied or dropped): the {n} "
            "events present hold together, but nothing shows whether later events were removed",
        )
    if head[0][2] != expected_prev or int(head[0][0]) != n:
        recorded = (int(head[0][0]), head[0][1]) if head else (0, None)
        return Verification(
            False,
            n,
            expected_prev,
            recorded[1],
            f"the chain ends early: {recorded[0]} events were written, up to event {recorded[1]}, "
            f"{n} remain (the last events were removed, or the head was edited)",
        )
    return Verification(True, n, expected_prev)


@dataclass(frozen=True)
class Anchor:
    """The chain at one moment, kept outside the store: ``events`` events ending in ``head``."""

    events: int
    head: str
    event_id: int | None = None
    anchored_at: str | None = None

    def to_json(self) -> dict:
        return {
            "events": self.events,
            "event_id": self.event_id,
            "head": self.head,
            "anchored_at": self.anchored_at,
        }

    @classmethod
    def from_json(cls, value: object) -> Anchor:
        """An anchor from its JSON object; ``ValueError`` with a reason for anything else."""
        if not isinstance(value, dict):
            raise ValueError("an anchor is a JSON object")
        events, head = value.get("events"), value.get("head")
        if not isinstance(events, int) or isinstance(events, bool) or events < 0:
            raise ValueError("an anchor's 'events' must be a whole number")
        if (
            not isinstance(head, str)
            or len(head) != 64
            or any(c not in "0123456789abcdef" for c in head)
        ):
            raise ValueError("an anchor's 'head' must be a sha256 in hex")
        event_id = value.get("event_id")
        return cls(
            events, head, event_id if isinstance(event_id, int) else None, value.get("anchored_at")
        )


def anchor(con: duckdb.DuckDBPyConnection) -> tuple[Verification, Anchor | None]:
    """Verify the chain and, when it holds, the anchor of its present head (None when it does not)."""
    result = verify(con)
    if not result.ok:
        return result, None
    head = con.execute("SELECT last_event_id FROM audit_chain_head WHERE id = 1").fetchall()
    return result, Anchor(
        result.events,
        result.head_hash,
        None if not head or head[0][0] is None else int(head[0][0]),
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def check_anchor(con: duckdb.DuckDBPyConnection, mark: Anchor) -> str | None:
    """None when the chain still holds ``mark``'s hash as its ``mark.events``-th event; else why not.

    A chain edited before the anchor and recomputed has another hash there; one cut short has no
    event there. (Call ``verify`` too: this checks the position, not the links after it.)
    """
    if mark.events == 0:
        return None if mark.head == GENESIS else "the anchor names a hash for an empty chain"
    row = con.execute(
        "SELECT event_id, hash FROM audit_event ORDER BY event_id LIMIT 1 OFFSET ?",
        [mark.events - 1],
    ).fetchall()
    if not row:
        return f"the anchor was taken at {mark.events} events but the store has fewer: events were removed"
    if row[0][1] != mark.head:
        return (
            f"event {row[0][0]} (number {mark.events}) does not have the anchored hash: the trail "
            "was changed before the anchor and its chain recomputed"
        )
    return None
