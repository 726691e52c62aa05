"""What gating AI measurements behind the sign-off costs the readers of ``measurement`` (aigate).

On a copy of an existing store (``--db``, e.g. a 2,000-patient ``oncolens demo``), each timed in
CPU-seconds of this process (every thread) and wall seconds: a full worklist refresh (no treatment
model), the live cohort with its Kaplan-Meier curves, the forecast prior, every patient's lesion
series, and 200 one-patient reads (the forecast's record, the Patient page's record).
``--required`` first turns on the admin's "require approval" (with one approved version), so the
sign-off's full condition is evaluated; without it the condition is ``TRUE`` after one lookup.
Run it with the code before and after a change, on copies of the same store, and compare.

    python -m bench.bench_signoff --db STORE [--required]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(out: dict, label: str, fn: Callable[[], object]) -> None:
    t0, c0 = time.perf_counter(), _cpu_s()
    fn()
    out[label] = {"wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(_cpu_s() - c0, 3)}


def _require(db: Path) -> None:
    """Approval required, one (unrelated) version approved: the full condition, nothing withheld
    in a demo without AI measurements, so the results are the same and only the cost differs."""
    # lazy: only this option writes accounts and decisions
    from analytics import store
    from analytics.governance import users
    from analytics.governance.lifecycle import approvals

    with store.open_store(db) as con:
        users.add_user(con, "bench_board", "ethics_board", password="bench-board-pass-1")
        users.add_user(con, "bench_admin", "admin", password="bench-admin-pass-1")
        approvals.decide(
            con, model_name="bench", model_version="1", version_id="a" * 64,
            decision=approvals.APPROVED, comment="bench", actor="bench_board",
        )  # fmt: skip
        approvals.set_require_approval(con, True, actor="bench_admin")


def run(db: Path, *, required: bool, reps: int = 2, patients: int = 200) -> dict:
    # lazy: imported after the argument check, so --help is instant
    from analytics import store
    from analytics.cohorts.builder import build_cohort
    from analytics.forecast import data as forecast_data
    from analytics.forecast.patient import estimate_prior
    from analytics.patients import patient_summary
    from analytics.worklist import stored as worklist_store

    with store.open_store(db):  # migrates once, outside the timings
        pass
    if required:
        _require(db)
    out: dict = {}
    with store.open_store(db) as con:
        for rep in range(reps):
            con.execute("BEGIN TRANSACTION")
            _timed(out, f"refresh_full_{rep}", lambda: worklist_store.refresh(con, None, None))
            con.execute("COMMIT")
    with store.open_store(db, read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT person_id FROM person ORDER BY person_id LIMIT ?", [patients]).fetchall()]  # fmt: skip
        for rep in range(reps):
            _timed(out, f"cohort_km_live_{rep}", lambda: build_cohort(con, live=True))
            _timed(out, f"prior_{rep}", lambda: estimate_prior(con))
            _timed(out, f"segments_all_{rep}", lambda: forecast_data.lesion_segments(con))
        _timed(out, f"patient_record_x{len(ids)}", lambda: [forecast_data.patient_record(con, p) for p in ids])  # fmt: skip
        _timed(out, f"patient_summary_x{len(ids)}", lambda: [patient_summary(con, p) for p in ids])  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_signoff", description=__doc__)
    parser.add_argument("--db", type=Path, required=True, help="a store (copied, never changed)")
    parser.add_argument("--required", action="store_true", help="require approval first")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.db.is_file():
        print(f"bench_signoff: no store at {args.db}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copy(args.db, Path(tmp) / "bench.duckdb"))
        out = run(copy, required=args.required, reps=args.reps)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
