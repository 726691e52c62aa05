"""Reusable cohorts (issue 20): what AND/OR groups, Table 1's SMDs and missing rows, the patient list and
saved cohorts cost, on one store.

Timed, each the median of ``--reps`` runs on a read-only connection (saving writes a copy of nothing: it
runs on the store given, so pass a scratch copy):
- the Cohorts page's whole result for one group of filters, grouped by first-line regimen
  (cohort, Kaplan-Meier, Table 1 with missing rows and SMDs, log-rank, Cox);
- the same without Table 1 (what Table 1 itself costs is the difference);
- an OR definition of two groups, grouped by ER status;
- the patient list, first 1,000 rows: with ids and MRN, and pseudonymised (rows chosen in an order
  keyed on the store's secret in SQL; only the shown rows get an HMAC);
- saving a cohort (one chained transaction with its audit event) and reading it back.

    python -m bench.bench_cohorts --db STORE [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from analytics import store
from analytics.cohorts import builder, members, saved
from analytics.cohorts.definition import CohortDefinition

ONE_GROUP = CohortDefinition.from_filters(
    ["age >= 40", "stage in II,III", "her2_status = negative"], "first_line_regimen"
)
OR_GROUPS = CohortDefinition.of(
    [["age >= 50", "grade = 3"], ["her2_status = positive"]], "er_status"
)


def _time(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    with store.open_store(args.db, read_only=True) as con:
        patients = con.execute("SELECT count(*) FROM cohort_base").fetchall()[0][0]
        ms, result = _time(lambda: builder.build_cohort(con, ONE_GROUP), args.reps)
        rows.append(("one group: cohort + KM + Table 1 (SMD, missing) + tests", ms, result.n))
        ms, _ = _time(lambda: builder.build_cohort(con, ONE_GROUP, with_table1=False), args.reps)
        rows.append(("one group: cohort + KM + tests, no Table 1", ms, result.n))
        ms, result = _time(lambda: builder.build_cohort(con, OR_GROUPS), args.reps)
        rows.append(("OR groups: cohort + KM + Table 1 + tests", ms, result.n))
        everyone = CohortDefinition()
        for identified in (True, False):
            ms, listed = _time(
                lambda i=identified: members.cohort_members(con, everyone, identified=i), args.reps
            )
            what = "ids and MRN" if identified else "pseudonyms"
            rows.append((f"patient list, first 1,000 ({what})", ms, listed.total))
    ms, kept = _time(
        lambda: saved.save_cohort(args.db, "bench", OR_GROUPS, author="bench", role="admin"), 1
    )
    rows.append(("save a cohort (+ audit event)", ms, 1))
    with store.open_store(args.db, read_only=True) as con:
        ms, _ = _time(lambda: saved.get_saved(con, kept.cohort_id), args.reps)
    rows.append(("read a saved cohort back", ms, 1))
    saved.delete_saved(args.db, kept.cohort_id, actor="bench", role="admin")
    print(f"store: {args.db} ({patients:,} patients), median of {args.reps}")
    print(f"{'what':<58}{'ms':>10}{'patients':>12}")
    for what, ms, n in rows:
        print(f"{what:<58}{ms:>10.1f}{n:>12,}")


if __name__ == "__main__":
    main()
