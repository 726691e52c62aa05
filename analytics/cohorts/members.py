"""The cohort's patient list: who is in it, shown as the reader's role may see them.

Why the protection happens here, in the query, and not on the page: a list for the ethics board
must never carry what it may not see, so the MRN is not even selected for it, dates are cut to
the month in SQL, and the store's id is replaced by its keyed pseudonym
(``analytics.governance.pseudonyms``, the one implementation, under the store's own secret)
before the frame leaves this module. Roles that treat patients get the store's id and the MRN
(to find the record), never names: a research list needs no names.

A cohort may hold a million patients; a list is for reading, so at most ``limit`` rows come back
with the cohort's total beside them (the export carries every row): for clinical roles the first by
``person_id``; for the others a selection in an order keyed on the store's secret, shown sorted by
pseudonym, so neither the choice nor the order says anything about when patients were registered.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from analytics.cohorts.base import base_source
from analytics.cohorts.builder import cohort_sql
from analytics.cohorts.definition import CohortDefinition
from analytics.cohorts.fields import CohortError
from analytics.governance import pseudonyms

LIST_LIMIT = 1000

# What the list shows besides the id: the index diagnosis and how the patient fared (constant SQL).
_CLINICAL = (
    "base.age_years, base.stage, base.grade, base.er_status, base.pr_status, base.her2_status, "
    "base.first_line_regimen, base.rfs_days, base.event"
)


@dataclass(frozen=True, eq=False)
class PatientList:
    """``rows``: the shown patients; ``total``: the cohort's size; ``identified``: ids and MRN (True)
    or pseudonyms and months (False)."""

    rows: pd.DataFrame
    total: int
    identified: bool

    @property
    def truncated(self) -> bool:
        return self.total > len(self.rows)


def cohort_members(
    con: duckdb.DuckDBPyConnection,
    definition: CohortDefinition,
    *,
    identified: bool,
    limit: int = LIST_LIMIT,
) -> PatientList:
    """The cohort's patients: ``identified`` gives person_id, MRN and the diagnosis date; otherwise a
    pseudonym and the diagnosis month only (no MRN, no exact date)."""
    sql, params = cohort_sql(definition, None, base_source(con))
    total = int(con.execute(f"SELECT count(*) FROM ({sql})", params).fetchall()[0][0])  # noqa: S608
    if identified:
        rows = con.execute(
            f"SELECT base.person_id, p.mrn, base.diagnosis_date, {_CLINICAL} "  # noqa: S608 - constant text
            f"FROM ({sql}) AS base JOIN person AS p USING (person_id) "
            "ORDER BY base.person_id LIMIT ?",
            [*params, int(limit)],
        ).df()
        return PatientList(rows, total, True)
    key = pseudonyms.store_secret(con)
    if key is None:  # a store older than schema 3 has no secret: nothing safe to show
        raise CohortError(
            "this store has no pseudonym key yet, so no list can be shown to your role; "
            "the next write (signing in) creates it"
        )
    # Which rows: the first ``limit`` in an order keyed on the store's secret (DuckDB's hash of the id
    # and a salt derived from the key), so the list says nothing about registration order and only the
    # shown rows need an HMAC (every member's HMAC was ~10 ms per 1,000 patients in Python).
    salt = pseudonyms.keyed_hash(key, "cohort-list-order", "v1")[:16]
    rows = con.execute(
        f"SELECT base.person_id, strftime(base.diagnosis_date, '%Y-%m') AS diagnosis_month, "  # noqa: S608
        f"{_CLINICAL} FROM ({sql}) AS base "
        "ORDER BY hash(base.person_id::VARCHAR || ?), base.person_id LIMIT ?",
        [*params, salt, int(limit)],
    ).df()
    rows.insert(0, "pseudonym", [pseudonyms.pseudonym(key, int(p)) for p in rows["person_id"]])
    rows = rows.drop(columns=["person_id"]).sort_values("pseudonym", ignore_index=True)
    return PatientList(rows, total, False)
