"""The store's data-quality checks (``analytics.governance.quality``): time per check and in all.

Why measured: the Governance page runs every check when its Data quality tab is drawn (cached on
the file's stamp) and ``oncolens quality`` runs them from the shell; both read every row of the
fact table several times. The figures go to docs/governance.md.

    python -m bench.bench_quality [--db STORE] [--patients 2000] [--reps 3]

Without ``--db`` a demo store (without imaging or models) is generated in a temporary folder first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from analytics import store
from analytics.governance import quality
from sample_data.demo import write_demo


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        db = args.db
        if db is None:
            db = Path(folder) / "demo.duckdb"
            write_demo(db, patients=args.patients, seed=7)
        with store.open_store(db, read_only=True) as con:
            patients = con.execute("SELECT count(*) FROM person").fetchone()[0]
            rows = con.execute("SELECT count(*) FROM measurement").fetchone()[0]
            key = quality.store_secret(con)
            per_check: dict[str, list[float]] = {c.name: [] for c in quality.CHECKS}
            totals = []
            for _ in range(args.reps):
                start = time.perf_counter()
                for check in quality.CHECKS:
                    t = time.perf_counter()
                    quality.run_check(con, check, key=key)
                    per_check[check.name].append(time.perf_counter() - t)
                totals.append(time.perf_counter() - start)
    print(f"data-quality checks on {patients:,} patients ({rows:,} measurements), {args.reps} runs")
    print(f"{'check':<34} {'median ms':>10}")
    for name, times in sorted(per_check.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"{name:<34} {1e3 * statistics.median(times):>10.1f}")
    print(
        f"{'all ' + str(len(quality.CHECKS)) + ' checks':<34} {1e3 * statistics.median(totals):>10.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
