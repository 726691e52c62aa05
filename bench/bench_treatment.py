"""Treatment recommendations: per-patient latency, cohort SHAP, TreeSHAP versus KernelSHAP.

What is measured, on a freshly built demo clinic (``--patients``, default
2000) and its clinic model trained as ``oncolens demo`` trains it:

- training time of the clinic model (cross-validation of three learners plus
  the full fit and its bootstrap refits);
- one patient's recommendation with its SHAP explanation, warm (model loaded,
  covariates in memory), median and p95 over ``--latency-n`` patients: as the
  app runs it (bootstrap refits stacked into one NumPy evaluation) and as one
  CLI call runs it (each refit asked through xgboost); and the app's whole
  uncached path, covariates read from the store included;
- recommendations and SHAP of the benefit over a cohort of ``--cohort``
  patients (a second demo clinic of that size, its own covariates);
- the cohort's SHAP by the app's TreeSHAP tables and by shap's TreeExplainer
  (the same numbers; the tables are ~20x faster);
- TreeSHAP (shap.TreeExplainer) versus KernelSHAP on the same model, the same
  benefit and the same reference patients, over ``--kernel-n`` patients: time
  per patient, their ratio, and agreement (largest absolute difference in
  percentage points, correlation, same top feature).

Targets (issue 6, 2 cores): one patient's recommendation with SHAP <= 20 ms
warm; SHAP over 10,000 patients <= 10 s.

    python -m bench.bench_treatment [--patients 2000] [--cohort 10000] [--kernel-n 20]
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
from analytics.treatment.clinic import (
    load_clinic_model,
    recommendation_for,
    recommendation_from_covariates,
    train_clinic_model,
)
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.shap_values import BenefitExplainer
from analytics.treatment.recommend import recommend
from analytics.treatment.scope import OutOfScopeError
from sample_data.demo import write_demo


def _ms(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values) * 1e3
    return float(np.median(a)), float(np.percentile(a, 95))


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def latency(clinic, covariates: list, warm: int = 10) -> tuple[float, float]:
    for c in covariates[:warm]:
        recommendation_from_covariates(clinic, 0, c)
    times = []
    for c in covariates:
        start = time.perf_counter()
        recommendation_from_covariates(clinic, 0, c)
        times.append(time.perf_counter() - start)
    return _ms(times)


def store_path_latency(db: Path, clinic, ids: list[int]) -> tuple[float, float]:
    """What the app does on a cache miss: read the covariates (short read-only connection), recommend.

    Only patients inside the model's decision are timed: one outside it (recurred, treated
    before surgery, metastatic) is refused after the scope query, which would flatter the median.
    """
    times = []
    for pid in ids:
        start = time.perf_counter()
        with store.open_store(db, read_only=True) as con:
            try:
                recommendation_for(clinic, con, pid)
            except OutOfScopeError:
                continue
        times.append(time.perf_counter() - start)
    return _ms(times)


def kernel_versus_tree(
    clinic, covariates, n: int, seed: int = 0, budgets=("auto", 20)
) -> list[dict]:
    """KernelSHAP of the same benefit function, TreeSHAP's reference patients as its background.

    One result per KernelSHAP sample budget. With the clinic's 8 features the default budget
    (2 * 8 + 2048) covers all 2**8 - 2 coalitions, so KernelSHAP is exact there and only its cost
    differs; a small budget (20) shows the approximation.
    """
    import pandas as pd
    import shap

    model = clinic.model
    tree_explainer = BenefitExplainer(model, engine="shap").warm()  # the library's TreeSHAP
    rec = recommend(model, covariates)
    opts = np.asarray(model.options_, dtype=object)
    pick = np.sort(
        np.random.default_rng(seed).choice(
            len(covariates), size=min(n, len(covariates)), replace=False
        )
    )
    x = covariates.iloc[pick].reset_index(drop=True)
    better, worse = opts[rec.best[pick]], opts[rec.next_best[pick]]
    columns = model.feature_columns
    tree_values, tree_s = [], 0.0
    kernel_values = {b: [] for b in budgets}
    kernel_s = dict.fromkeys(budgets, 0.0)
    for i in range(len(x)):
        row = x.iloc[[i]]
        j, k = model.options_.index(better[i]), model.options_.index(worse[i])

        def benefit(a: np.ndarray, j=j, k=k) -> np.ndarray:
            rfs = model.rfs_5y(pd.DataFrame(a, columns=columns))
            return rfs[:, j] - rfs[:, k]

        start = time.perf_counter()
        tree_values.append(tree_explainer.explain(row, better[i], worse[i]).values[0])
        tree_s += time.perf_counter() - start
        for budget in budgets:
            start = time.perf_counter()
            kernel = shap.KernelExplainer(
                benefit, model.background_.to_numpy(), seed=seed
            ).shap_values(row.to_numpy(), nsamples=budget, silent=True)
            kernel_s[budget] += time.perf_counter() - start
            kernel_values[budget].append(np.asarray(kernel).reshape(-1))
    t = np.asarray(tree_values)
    results = []
    for budget in budgets:
        kv = np.asarray(kernel_values[budget])
        results.append(
            {
                "budget": budget,
                "n": len(x),
                "tree_ms": 1e3 * tree_s / len(x),
                "kernel_ms": 1e3 * kernel_s[budget] / len(x),
                "max_abs_diff_pp": 100 * float(np.max(np.abs(t - kv))),
                "correlation": float(np.corrcoef(t.ravel(), kv.ravel())[0, 1]),
                "same_top_feature": float(
                    np.mean(np.argmax(np.abs(t), axis=1) == np.argmax(np.abs(kv), axis=1))
                ),
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--patients", type=int, default=2000, help="demo clinic the model is trained on"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=25, help="bootstrap refits (as `oncolens demo`)"
    )
    parser.add_argument(
        "--cohort", type=int, default=10_000, help="patients in the cohort-wide SHAP"
    )
    parser.add_argument("--latency-n", type=int, default=200, help="patients timed one by one")
    parser.add_argument("--kernel-n", type=int, default=20, help="patients explained by KernelSHAP")
    parser.add_argument("--seed", type=int, default=20261125)
    args = parser.parse_args(argv)
    print(
        f"# treatment recommendations on {os.cpu_count()} cores; model trained on a "
        f"{args.patients:,}-patient demo clinic, {args.bootstrap} bootstrap refits"
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "clinic.duckdb"
        write_demo(db, patients=args.patients, seed=args.seed)
        trained, train_s = _timed(lambda: train_clinic_model(db, bootstrap=args.bootstrap))
        print(
            f"training (3-learner cross-validation + fit + refits): {train_s:.1f} s, "
            f"model {trained.card['version']}"
        )
        with store.open_store(db, read_only=True) as con:
            table, ids = clinic_training_table(con)
        n = min(args.latency_n, table.n)
        one_by_one = [table.covariates.iloc[[i]].reset_index(drop=True) for i in range(n)]

        app, load_s = _timed(lambda: load_clinic_model(db, stack_refits=True))
        cli, cli_load_s = _timed(lambda: load_clinic_model(db))
        rows = [
            (
                "recommend + SHAP, app (stacked refits)",
                latency(app, one_by_one),
                f"load {load_s:.1f} s",
            ),
            (
                "recommend + SHAP, CLI (refits one by one)",
                latency(cli, one_by_one),
                f"load {cli_load_s:.1f} s",
            ),
            (
                "app cache miss: store read + recommend + SHAP",
                store_path_latency(db, app, [int(i) for i in ids[:n]]),
                "",
            ),
        ]
        print(
            f"\n{'one patient, warm (' + str(n) + ' patients)':<48} {'median ms':>10} {'p95 ms':>8}  note"
        )
        for name, (median, p95), note in rows:
            print(f"{name:<48} {median:>10.1f} {p95:>8.1f}  {note}")

        cohort_db = Path(tmp) / "cohort.duckdb"
        write_demo(cohort_db, patients=args.cohort, seed=args.seed + 1)
        with store.open_store(cohort_db, read_only=True) as con:
            cohort, _ = clinic_training_table(con, max_patients=args.cohort)
        cov = cohort.covariates
        opts = np.asarray(app.model.options_, dtype=object)
        # which pair to explain needs only the point predictions (the same stable ranking as recommend())
        rfs, point_s = _timed(app.model.rfs_5y, cov)
        order = np.argsort(-rfs, axis=1, kind="stable")
        better, worse = opts[order[:, 0]], opts[order[:, 1]]
        _, rec_s = _timed(recommend, app.model, cov)
        tables, tables_s = _timed(app.explainer.explain, cov, better, worse)
        reference = BenefitExplainer(app.model, engine="shap").warm()
        library, library_s = _timed(reference.explain, cov, better, worse)
        print(
            f"\n{'cohort (' + f'{len(cov):,}' + ' patients)':<48} {'seconds':>10} {'per patient':>12}"
        )
        for name, secs in (
            ("predictions of every option (full-data model)", point_s),
            (f"recommendations with intervals (+ {app.model.bootstrap} refits)", rec_s),
            ("SHAP of the benefit, TreeSHAP tables (app/CLI)", tables_s),
            ("SHAP of the benefit, shap.TreeExplainer", library_s),
        ):
            print(f"{name:<48} {secs:>10.2f} {1e3 * secs / len(cov):>9.3f} ms")
        print(
            f"tables vs shap.TreeExplainer: largest difference {np.abs(tables.values - library.values).max():.1e}; "
            f"additivity error {tables.additivity_error:.1e} (5-year RFS probability)"
        )

        results = kernel_versus_tree(app, table.covariates, args.kernel_n)
        print(
            f"\n{'TreeSHAP vs KernelSHAP (' + str(results[0]['n']) + ' patients)':<48} {'ms/patient':>10} "
            f"{'x Tree':>7} {'max diff pp':>12} {'corr':>9} {'same top':>9}"
        )
        print(f"{'shap.TreeExplainer (exact, interventional)':<48} {results[0]['tree_ms']:>10.1f}")
        for r in results:
            name = f"KernelSHAP, nsamples={r['budget']}, same background"
            print(
                f"{name:<48} {r['kernel_ms']:>10.1f} {r['kernel_ms'] / r['tree_ms']:>7.0f} "
                f"{r['max_abs_diff_pp']:>12.2g} {r['correlation']:>9.5f} {100 * r['same_top_feature']:>8.0f}%"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
