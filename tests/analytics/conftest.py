"""Fixtures for the analytics tests: a connection to the shared demo store, hand-built tiny stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from analytics import store


@pytest.fixture
def demo_con(demo_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with store.open_store(demo_db, read_only=True) as con:
        yield con


class TinyClinic:
    """Writes hand-chosen rows into an empty store, so that expected values are known exactly."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._next_id = 1

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def person(
        self,
        person_id: int,
        *,
        site: str = "North",
        birth: str = "1960-06-15",
        diagnosis: str | None = "2020-01-01",
        end: str = "2025-01-01",
        end_reason: str = "data_cutoff",
        menopausal_status: str = "post",
    ) -> None:
        self.con.execute(
            "INSERT INTO person VALUES (?, ?, 'Test', 'Patient', ?, 'F', ?, ?)",
            [person_id, f"MRN{person_id:08d}", birth, site, menopausal_status],
        )
        start = diagnosis or "2020-01-01"
        self.con.execute(
            "INSERT INTO observation_period VALUES (?, ?, ?, ?)",
            [person_id, start, end, end_reason],
        )
        if diagnosis is not None:
            self.con.execute(
                "INSERT INTO condition_occurrence VALUES "
                "(?, ?, 'breast_cancer', ?, 'left', 'II', 2, 25.0, 3, 60.0, 12.0, true, true, false)",
                [self._id(), person_id, diagnosis],
            )

    def lesion(self, person_id: int, *readings: tuple[str, float]) -> None:
        for day, mm in readings:
            self.measurement(person_id, day, "lesion_longest_diameter", mm, "mm")

    def measurement(self, person_id: int, day: str, concept: str, value: float, unit: str) -> None:
        self.con.execute(
            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit, source, study_uid) VALUES (?, ?, ?, ?, ?, ?, 'clinic', NULL)",
            [self._id(), person_id, day, concept, value, unit],
        )

    def event(self, person_id: int, event_type: str, day: str) -> None:
        self.con.execute(
            "INSERT INTO outcome_event VALUES (?, ?, ?, ?)",
            [self._id(), person_id, event_type, day],
        )

    def treatment(
        self,
        person_id: int,
        line: int,
        klass: str,
        regimen: str | None,
        start: str,
        end: str | None,
    ) -> None:
        self.con.execute(
            "INSERT INTO treatment_exposure VALUES (?, ?, 'drug', ?, 'agent', ?, ?, ?, ?)",
            [self._id(), person_id, klass, line, regimen, start, end],
        )


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[TinyClinic]:
    """An empty store (current schema) to fill by hand."""
    con = store.connect(tmp_path / "tiny.duckdb", create=True)
    try:
        yield TinyClinic(con)
    finally:
        con.close()
