"""Progression forecasts: one patient warm, and a whole worklist refresh.

What is measured, on a freshly built demo clinic (``--patients``, default
10,000) with an outcome model fitted on it (``--bootstrap`` refits, stacked as
the app stacks them), or on an existing store and its saved model (``--db``,
loaded as the app loads it):

- the cohort's growth-inhibition prior (empirical Bayes on a fixed sample of
  up to 3,000 patients, with the recalibration of its bands fitted on the same
  sample's held-out readings), once per data version in the app;
- one patient's forecast, warm (prior and model loaded, the store open):
  median and p95 over ``--latency-n`` patients, each timed ``--repeats`` times;
  her record (one query), tumour fit and bands, survival per option with its
  refits, all included;
- the worklist: every eligible patient ranked by six-month risk
  (``analytics.worklist.ranking.ranked``), with the prior already estimated (as the
  app's cache has it) and from cold (prior included).

Targets (issue 7, 2 cores): <= 50 ms per patient warm; a 10,000-patient
worklist refresh <= 30 s.

    python -m bench.bench_forecast [--patients 10000] [--latency-n 50] [--db STORE]

On a shared machine the timings are noisy: compare medians, and say how loaded it was.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from analytics import store
from analytics.forecast.patient import estimate_prior, patient_forecast
from analytics.treatment.clinic import ClinicModel, load_clinic_model
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.outcome_model import OutcomeModel
from analytics.worklist import ranking as worklist
from sample_data.demo import write_demo


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_forecast")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--latency-n", type=int, default=50)
    parser.add_argument("--bootstrap", type=int, default=25)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--db", type=Path, default=None, help="an existing store with its saved model"
    )
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db
        if db is None:
            db = Path(tmp) / "bench.duckdb"
            t = time.perf_counter()
            write_demo(db, patients=args.patients, seed=args.seed)
            rows.append(
                (
                    "demo clinic written",
                    f"{time.perf_counter() - t:.1f} s ({args.patients:,} patients)",
                )
            )
        with store.open_store(db, read_only=True) as con:
            if args.db is None:
                table, _ = clinic_training_table(con)
                t = time.perf_counter()
                model = OutcomeModel(bootstrap=args.bootstrap, seed=args.seed).fit(table).compile()
                rows.append(
                    (
                        "outcome model fitted (not timed by the targets)",
                        f"{time.perf_counter() - t:.1f} s, {args.bootstrap} refits",
                    )
                )
                clinic = ClinicModel(model, {"version": "bench"}, explainer=None, folder=Path(tmp))
            else:
                clinic = load_clinic_model(db, stack_refits=True)
                patients = con.execute("SELECT count(*) FROM person").fetchall()[0][0]
                rows.append(("store", f"{db} ({patients:,} patients, its saved model)"))
            t = time.perf_counter()
            prior = estimate_prior(con)
            rows.append(
                (
                    "growth-inhibition prior (once per data version)",
                    f"{time.perf_counter() - t:.2f} s",
                )
            )
            ids = (
                con.execute(
                    "SELECT person_id FROM person WHERE person_id NOT IN (SELECT person_id FROM outcome_event) "
                    "ORDER BY hash(person_id) LIMIT ?",
                    [args.latency_n + 5],
                )
                .df()["person_id"]
                .tolist()
            )
            for pid in ids[:5]:
                patient_forecast(con, pid, prior, clinic)
            times = []
            for _ in range(args.repeats):
                for pid in ids[5:]:
                    t = time.perf_counter()
                    patient_forecast(con, pid, prior, clinic)
                    times.append(time.perf_counter() - t)
            ms = np.asarray(times) * 1e3
            rows.append(
                (
                    "one patient, warm (median / p95)",
                    f"{np.median(ms):.1f} / {np.percentile(ms, 95):.1f} ms (target <= 50 ms)",
                )
            )
            t = time.perf_counter()
            ranked = worklist.ranked(con, prior=prior, clinic=clinic)
            warm = time.perf_counter() - t
            rows.append(
                (
                    f"worklist refresh, prior cached ({len(ranked):,} eligible)",
                    f"{warm:.2f} s (target <= 30 s)",
                )
            )
            t = time.perf_counter()
            worklist.ranked(con, clinic=clinic)
            rows.append(
                ("worklist refresh from cold (prior included)", f"{time.perf_counter() - t:.2f} s")
            )
    width = max(len(k) for k, _ in rows)
    print(
        f"Forecast benchmark ({os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f})"
    )
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
