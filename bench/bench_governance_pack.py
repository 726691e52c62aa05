"""The governance pack (issue 22, items 1-2): time to gather a model's evidence, fill its checklists,
and build its dossier PDF, per model.

Why measured: the Governance page fills the chosen model's checklist on every change of the data or
of the model's use (cached otherwise), and the dossier is built on a button press; both run the
store's data-quality checks and, for the treatment dossier, the subgroup audit.

    python -m bench.bench_governance_pack --db STORE [--reps 3] [--phantoms 0]

The store needs its treatment model (`oncolens demo` trains it); dossiers are written to a temporary
folder and their audit events go into a copy of the store, never the store itself.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from analytics.governance.reporting.checklist import fill
from analytics.treatment.model.files import model_dir_for
from dashboard.services import dossier


def _median_s(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--phantoms", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.duckdb"
        shutil.copy(args.db, db)
        if model_dir_for(args.db).exists():
            shutil.copytree(model_dir_for(args.db), model_dir_for(db))
        print(f"governance pack on {args.db.name} (median of {args.reps}; dossier once)")
        print(
            f"{'model':<12} {'evidence s':>11} {'checklist s':>12} {'dossier s':>10} {'answered':>10}"
        )
        for model in dossier.model_names():
            evidence = _median_s(lambda m=model: dossier.model_evidence(m, db), args.reps)
            ev = dossier.model_evidence(model, db)
            filled = fill(ev)
            fill_s = _median_s(lambda e=ev: fill(e), args.reps)
            t = time.perf_counter()
            dossier.write_dossier(
                model,
                db,
                Path(folder) / f"{model}.pdf",
                actor="bench",
                role=None,
                phantoms=args.phantoms,
            )
            dossier_s = time.perf_counter() - t
            answered = sum(c["answered"] for c in filled.counts().values())
            total = sum(c["answered"] + c["missing"] for c in filled.counts().values())
            print(
                f"{model:<12} {evidence:>11.3f} {fill_s:>12.4f} {dossier_s:>10.1f} {answered:>5}/{total}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
