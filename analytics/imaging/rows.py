"""The ingest writer's rows, gathered in memory and written with one statement per table.

Why: ``ingest_files`` used to run a dozen statements per file inside its transaction (the
owner checks, a DELETE and an INSERT per table), each a DuckDB round trip, and the DELETEs on
``measurement`` (no index) scanned the whole table once per file: on a store of a million
patients that table holds tens of millions of rows (issue 23). Here the owner checks read dicts
loaded once per ingest (the rows of the UIDs the files carry) and kept up to date as files are
filed, exactly as the store would answer mid-transaction; each table's replaced rows are
deleted with one statement and its new rows inserted with one (parallel ``unnest`` of typed
lists: no SQL is built from the input). The final rows are those the per-file statements left:
a key filed twice keeps its last row, a row deleted and not replaced is gone, and ids are
numbered as before (tests/analytics/imaging/test_ingest_rows.py compares the tables).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from analytics.governance.lifecycle.tables import STAT_COLUMNS

__all__ = ["PendingRows"]

_READ_INPUT_COLUMNS = (
    "sop_instance_uid",
    "person_id",
    "model_name",
    "model_version",
    "study_date",
    "read_at",
    "refused",
    "score",
    "feature_distance",
    "statistics_distance",
    *STAT_COLUMNS,
)
_READ_INPUT_TYPES = (
    "VARCHAR",
    "BIGINT",
    "VARCHAR",
    "VARCHAR",
    "DATE",
    "TIMESTAMP",
    "BOOLEAN",
    *["DOUBLE"] * (3 + len(STAT_COLUMNS)),
)


def _put(table: dict, key: Any, row: Any) -> None:
    """``row`` under ``key``, moved to the end: the order of the rows' last inserts, as the
    per-file DELETE + INSERT left them."""
    table.pop(key, None)
    table[key] = row


def _select(types: Iterable[str]) -> str:
    """``SELECT unnest(?::T1[]), unnest(?::T2[]), ...``: typed columns zipped from lists."""
    return "SELECT " + ", ".join(f"unnest(?::{t}[])" for t in types)


def _columns(rows: list[tuple]) -> list[list]:
    return [list(c) for c in zip(*rows, strict=True)]


@dataclass
class PendingRows:
    """What ``ingest_files`` writes in its transaction, and who owns each UID meanwhile.

    The three owner maps hold, for every UID asked about, the store's answer at this point of
    the transaction (None: no such row): loaded in bulk by ``preload`` for the UIDs the files
    are expected to carry, any other looked up on first use, and updated as files are filed."""

    con: Any
    study_person: dict[str, int | None] = field(default_factory=dict)  # imaging_study.person_id
    series_study: dict[str, str | None] = field(default_factory=dict)  # imaging_series.study_uid
    instance_series: dict[str, str | None] = field(default_factory=dict)  # instance.series_uid
    studies: dict[str, tuple] = field(default_factory=dict)
    series: dict[str, tuple] = field(default_factory=dict)
    instances: dict[str, tuple] = field(default_factory=dict)
    refusals: dict[tuple[str, str], tuple | None] = field(default_factory=dict)
    findings: dict[tuple[str, str], tuple | None] = field(default_factory=dict)
    measurements: dict[tuple[str, str], tuple | None] = field(default_factory=dict)
    read_inputs: dict[tuple[str, str], tuple] = field(default_factory=dict)

    def preload(self, sops: Iterable[str], series: Iterable[str], studies: Iterable[str]) -> None:
        """The store's rows for these UIDs and for the series and studies they point to, in
        three queries (a UID guessed wrong costs one lookup later, never a wrong answer)."""
        self._load(self.instance_series, "imaging_instance", "sop_instance_uid", "series_uid", sops)
        wanted = set(series) | {v for v in self.instance_series.values() if v is not None}
        self._load(self.series_study, "imaging_series", "series_uid", "study_uid", wanted)
        wanted = set(studies) | {v for v in self.series_study.values() if v is not None}
        self._load(self.study_person, "imaging_study", "study_uid", "person_id", wanted)

    def _load(self, into: dict, table: str, key: str, value: str, uids: Iterable[str]) -> None:
        todo = sorted({u for u in uids if u not in into})
        if not todo:
            return
        into.update(dict.fromkeys(todo))
        # the table and column names are this module's constants, never input
        into.update(
            self.con.execute(
                f"SELECT {key}, {value} FROM {table} "  # noqa: S608
                f"WHERE {key} IN (SELECT unnest(?::VARCHAR[]))",
                [todo],
            ).fetchall()
        )

    # --- the owner checks (what the store would answer at this point of the transaction) ----

    def study_owner(self, study_uid: str) -> int | None:
        self._load(self.study_person, "imaging_study", "study_uid", "person_id", [study_uid])
        return self.study_person[study_uid]

    def series_owner(self, series_uid: str) -> int | None:
        self._load(self.series_study, "imaging_series", "series_uid", "study_uid", [series_uid])
        study = self.series_study[series_uid]
        return None if study is None else self.study_owner(study)

    def instance_owner(self, sop_uid: str) -> int | None:
        self._load(
            self.instance_series, "imaging_instance", "sop_instance_uid", "series_uid", [sop_uid]
        )
        series = self.instance_series[sop_uid]
        return None if series is None else self.series_owner(series)

    # --- the writes ---------------------------------------------------------------------------

    def add_study(self, row: tuple) -> None:
        """A new imaging_study row (study_uid, person_id, date, modality, description, accession)."""
        self.studies[row[0]] = row
        self.study_person[row[0]] = row[1]

    def replace_series(self, row: tuple) -> None:
        """imaging_series (series_uid, study_uid, modality, body_part, description)."""
        _put(self.series, row[0], row)
        self.series_study[row[0]] = row[1]

    def replace_instance(self, row: tuple) -> None:
        """imaging_instance (sop_instance_uid, series_uid, file_path, rows, columns, spacing)."""
        _put(self.instances, row[0], row)
        self.instance_series[row[0]] = row[1]

    def set_refusal(self, sop_uid: str, model: str, row: tuple | None) -> None:
        """ai_refusal of (instance, model): ``row`` (the table's columns), or None: deleted."""
        _put(self.refusals, (sop_uid, model), row)

    def set_finding(self, sop_uid: str, model: str, row: tuple | None) -> None:
        """ai_finding of (instance, model): ``row`` (finding_id, person_id, sop, model, version,
        class, probability, diameter, created_at, weights_sha256), or None: deleted."""
        _put(self.findings, (sop_uid, model), row)

    def set_measurement(self, study_uid: str, concept: str, row: tuple | None) -> None:
        """The AI measurement of (study, concept): ``row`` (measurement_id, person_id, date,
        concept, value, study_uid, model_name, model_version, weights_sha256; unit 'mm', source
        'ai'), or None: deleted."""
        _put(self.measurements, (study_uid, concept), row)

    def replace_read_input(self, row: tuple) -> None:
        """ai_read_input (``_READ_INPUT_COLUMNS``), keyed by (instance, model)."""
        _put(self.read_inputs, (row[0], row[2]), row)

    def flush(self) -> None:
        """Every table's replaced rows deleted and its new rows inserted: one statement each."""
        con = self.con
        if self.studies:
            con.execute(
                "INSERT INTO imaging_study "
                + _select(("VARCHAR", "BIGINT", "DATE", "VARCHAR", "VARCHAR", "VARCHAR")),
                _columns(list(self.studies.values())),
            )
        if self.series:
            con.execute(
                "DELETE FROM imaging_series WHERE series_uid IN (SELECT unnest(?::VARCHAR[]))",
                [list(self.series)],
            )
            con.execute(
                "INSERT INTO imaging_series "
                + _select(("VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR")),
                _columns(list(self.series.values())),
            )
        if self.instances:
            con.execute(
                "DELETE FROM imaging_instance "
                "WHERE sop_instance_uid IN (SELECT unnest(?::VARCHAR[]))",
                [list(self.instances)],
            )
            con.execute(
                "INSERT INTO imaging_instance "
                + _select(("VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "INTEGER", "DOUBLE")),
                _columns(list(self.instances.values())),
            )
        self._replace(
            con,
            "ai_refusal",
            ("sop_instance_uid", "model_name"),
            self.refusals,
            "INSERT INTO ai_refusal "
            + _select(
                ("VARCHAR", "BIGINT", "VARCHAR", "VARCHAR", "DOUBLE", "DOUBLE", "VARCHAR")
                + ("TIMESTAMP",)
            ),
        )
        self._replace(
            con,
            "ai_finding",
            ("sop_instance_uid", "model_name"),
            self.findings,
            "INSERT INTO ai_finding (finding_id, person_id, sop_instance_uid, model_name, "
            "model_version, predicted_class, probability, longest_diameter_mm, created_at, "
            "weights_sha256) "
            + _select(
                ("BIGINT", "BIGINT", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "DOUBLE")
                + ("DOUBLE", "TIMESTAMP", "VARCHAR")
            ),
        )
        self._replace(
            con,
            "measurement",
            ("study_uid", "concept"),
            self.measurements,
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, "
            "value, unit, source, study_uid, model_name, model_version, weights_sha256) "
            "SELECT m, p, d, c, v, 'mm', 'ai', s, n, r, w FROM ("
            "SELECT unnest(?::BIGINT[]) AS m, unnest(?::BIGINT[]) AS p, unnest(?::DATE[]) AS d, "
            "unnest(?::VARCHAR[]) AS c, unnest(?::DOUBLE[]) AS v, unnest(?::VARCHAR[]) AS s, "
            "unnest(?::VARCHAR[]) AS n, unnest(?::VARCHAR[]) AS r, unnest(?::VARCHAR[]) AS w)",
            only_ai=True,
        )
        if self.read_inputs:
            con.execute(
                f"INSERT OR REPLACE INTO ai_read_input ({', '.join(_READ_INPUT_COLUMNS)}) "
                + _select(_READ_INPUT_TYPES),
                _columns(list(self.read_inputs.values())),
            )

    @staticmethod
    def _replace(
        con,
        table: str,
        key_columns: tuple[str, str],
        rows: dict[tuple[str, str], tuple | None],
        insert: str,
        *,
        only_ai: bool = False,
    ) -> None:
        # the table and column names are this module's constants, never input
        if not rows:
            return
        first, second = key_columns
        keys = list(rows)
        con.execute(
            f"DELETE FROM {table} USING (SELECT unnest(?::VARCHAR[]) AS k1, "  # noqa: S608
            f"unnest(?::VARCHAR[]) AS k2) AS k WHERE {table}.{first} = k.k1 "
            f"AND {table}.{second} = k.k2" + (f" AND {table}.source = 'ai'" if only_ai else ""),
            [[k[0] for k in keys], [k[1] for k in keys]],
        )
        kept = [row for row in rows.values() if row is not None]
        if kept:
            con.execute(insert, _columns(kept))
