"""``oncolens cohort`` and ``oncolens import``: the analytics commands, on the same library code as the pages.

Kept out of ``dashboard/cli.py`` so that the parser file stays readable; ``cli``
wires these handlers to its sub-parsers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_FAILED = 1


def _say(msg: str) -> None:
    print(f"oncolens: {msg}", file=sys.stderr, flush=True)


def cmd_cohort(args: argparse.Namespace, db: Path) -> int:
    """Build the cohort read-only and print it (JSON object with ``--json``, a short table otherwise)."""
    from analytics import store
    from analytics.cohorts import CohortError, build_cohort

    try:
        with store.open_store(db, read_only=True) as con:
            result = build_cohort(con, list(args.filter or []), args.group_by)
    except CohortError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        _say(f"error: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False))
        return 0
    filters = "; ".join(str(f) for f in result.filters) or "all patients"
    print(f"cohort: {filters} — {result.n:,} patients, {result.events:,} recurrences or deaths")
    print(f"{'group':<22}{'patients':>10}{'events':>10}{'median RFS (years)':>20}")
    for g in result.groups:
        median = "not reached" if g.median_days is None else f"{g.median_days / 365.25:.1f}"
        print(f"{g.name:<22}{g.n:>10,}{g.events:>10,}{median:>20}")
    if result.logrank_p is not None:
        print(f"log-rank p = {result.logrank_p:.3g}; hazard ratios against {result.reference}:")
        for r in result.hazard_ratios.itertuples(index=False):
            print(f"  {r.group}: HR {r.hr:.2f} (95 % CI {r.lo:.2f}–{r.hi:.2f}), p = {r.p:.3g}")
        print("groups were not randomised: hazard ratios describe the cohort, not treatment effects")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def cmd_import(args: argparse.Namespace, db: Path) -> int:
    """Import each file in its own transaction; one summary line per file, JSON objects with ``--json``."""
    from analytics.imports import import_files

    if not db.exists():
        from analytics import store

        raise store.MissingDatabaseError(
            f"no OncoLens database at {db}; create one with `oncolens demo --db {db}` first"
        )
    failed = False
    for report in import_files(db, list(args.files), args.report_dir):
        failed |= report.error is not None or report.total("rejected") > 0
        if getattr(args, "json", False):
            print(json.dumps(report.to_json()), flush=True)
        print(f"oncolens: {report.summary()}", file=sys.stderr if args.json else sys.stdout, flush=True)
    return EXIT_FAILED if failed else 0
