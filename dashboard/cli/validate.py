"""``oncolens validate TARGET``: reproduce the validation figures of a model.

This module registers the command and runs the imaging-side targets
(``imaging``, ``saliency``, ``subgroups``); the treatment targets (``gbsg2``,
``treatment``, ``treatment-csv``) and ``forecast`` run in the modules of their
commands, beside the report printers and domain errors they share.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dashboard.cli import forecast as cli_forecast
from dashboard.cli import treatment as cli_treatment
from dashboard.cli.common import (
    EXIT_FAILED,
    CliError,
    SubParsers,
    add_command,
    db_arg,
    db_path,
    whole_number,
)


def add_subparsers(subparsers: SubParsers) -> None:
    p = add_command(
        subparsers, "validate", "reproduce the validation figures of a model", cmd_validate
    )
    p.add_argument(
        "target",
        choices=[
            "imaging",
            "saliency",
            "treatment",
            "gbsg2",
            "forecast",
            "treatment-csv",
            "subgroups",
        ],
    )
    p.add_argument("file", nargs="?", type=Path, metavar="FILE")
    p.add_argument("--treatment", metavar="COL")
    p.add_argument("--time", metavar="COL")
    p.add_argument("--event", metavar="COL")
    p.add_argument(
        "--covariates",
        nargs="+",
        metavar="COL",
        help="treatment-csv: covariate columns (default: all other columns)",
    )
    p.add_argument(
        "--time-unit",
        choices=["days", "weeks", "months", "years"],
        default="days",
        help="treatment-csv: unit of the time column (default days); implausible follow-up is flagged",
    )
    p.add_argument(
        "--horizon-days",
        type=float,
        default=None,
        metavar="DAYS",
        help="treatment targets: decision horizon in days (default: the largest of 1, 2, 3, 5 years "
        "that follow-up supports)",
    )
    p.add_argument(
        "--keep-covariate",
        action="append",
        default=[],
        metavar="COL",
        help="treatment-csv: keep a covariate although it predicts the treatment almost perfectly",
    )
    db_arg(p)
    p.add_argument(
        "--folds",
        type=whole_number,
        default=5,
        help="treatment and forecast targets: cross-validation folds",
    )
    p.add_argument(
        "--bootstrap",
        type=whole_number,
        default=25,
        help="treatment targets: bootstrap refits per fold for the benefit intervals",
    )
    p.add_argument(
        "--n",
        type=whole_number,
        default=None,
        help="imaging: fresh held-out phantoms per model (default 400); saliency: phantoms per "
        "model, those with a lesion scored (default 48)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=20_261_125,
        help="imaging: seed of the fresh phantom set; treatment targets: folds and bootstrap; "
        "forecast: patient halves and folds",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.40,
        help="subgroups: predicted 5-year risk at or above which a patient is flagged high risk "
        "(TPR/FPR; default 0.40)",
    )
    p.add_argument(
        "--gap-bootstrap",
        type=whole_number,
        default=100,
        help="subgroups: bootstrap resamples for the 95%% intervals of the gaps (default 100)",
    )
    p.add_argument("--json", action="store_true")


def cmd_validate(args: argparse.Namespace) -> int:
    if args.target in cli_treatment.TREATMENT_TARGETS:
        return cli_treatment.cmd_validate_treatment(args)
    if args.target == "saliency":
        return cmd_validate_saliency(args)
    if args.target == "subgroups":
        return cmd_validate_subgroups(args)
    if args.target == "forecast":
        return cli_forecast.cmd_validate_forecast(args)
    return cmd_validate_imaging(args)


def cmd_validate_imaging(args: argparse.Namespace) -> int:
    from models.inference.registry import (  # lazy: `oncolens --help` and the other commands never load it
        ModelUnavailableError,
        available_models,
        load_model,
    )

    # lazy: `oncolens --help` and the other commands never load it
    from models.training.validate import validate_imaging

    # lazy: the 3D bundles (torch.jit, MONAI) only for this command
    from models.volumes import bundle as bundles
    from models.volumes.validate import validate_volume_model  # lazy: as above

    names = available_models()
    volume_names = bundles.available_bundles()
    if not names and not volume_names:
        raise CliError(
            "no imaging model is installed; train one with `python -m models.training.train --task mammography`"
        )
    results = {}
    for name in names:
        try:
            results[name] = validate_imaging(load_model(name), n=args.n or 400, seed=args.seed)
        except ModelUnavailableError as exc:
            results[name] = {"error": str(exc)}
    for name in volume_names:  # the 3D models: built-in and registered (docs/saliency.md)
        try:
            results[name] = validate_volume_model(bundles.load_bundle(name))
        except bundles.BundleError as exc:
            results[name] = {"kind": "volume", "error": str(exc)}
    if args.json:
        print(json.dumps(results))
    else:
        for name, r in results.items():
            if "error" in r:
                print(f"{name}: error: {r['error']}")
                continue
            if r.get("kind") == "volume":
                _print_volume_report(name, r)
                continue
            auc, dice = r["auc"], r["lesion_dice"]
            print(
                f"{name}: AUC {auc['value']:.3f} (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f}), "
                f"ECE {r['ece']:.3f}, lesion Dice {dice['value']:.3f} "
                f"({dice['ci_low']:.3f}-{dice['ci_high']:.3f}), n={r['n']} seed={r['seed']}"
            )
            print(
                f"  calibration: ECE {r['ece_before_calibration']:.3f} before, "
                f"{r['ece_after_calibration']:.3f} after temperature scaling "
                f"({'applied' if r['calibration_applied'] else 'not applied'})"
            )
            g = r.get("guard")
            if g:
                print(
                    f"  input guard: AUROC {g['auroc']:.3f}; refuses {g['refusal_rate_out_of_distribution']:.0%} "
                    f"of {g['n_out_of_distribution']} out-of-distribution images and "
                    f"{g['refusal_rate_in_distribution']:.1%} of {g['n_in_distribution']} fresh phantoms"
                    + (f"; let through: {', '.join(g['let_through'])}" if g["let_through"] else "")
                )
    return EXIT_FAILED if any("error" in r for r in results.values()) else 0


def _print_volume_report(name: str, r: dict) -> None:
    """Text lines of a 3D model's entry: guard (measured), segmentation (card), saliency verdicts."""
    g, seg = r["guard"], r["segmentation"]
    print(f"{name} (3D, {r['modality']}, version {r['model_version']}):")
    if g.get("auroc") is None:
        print(
            f"  input guard: refuses {g['refusal_rate_out_of_distribution']:.0%} of "
            f"{g['n_out_of_distribution']} noise volumes; AUROC not measured: {g['auroc_not_measured']}"
        )
    else:
        print(
            f"  input guard: AUROC {g['auroc']:.3f}; refuses {g['refusal_rate_out_of_distribution']:.0%} "
            f"of {g['n_out_of_distribution']} out-of-distribution volumes and "
            f"{g['refusal_rate_in_distribution']:.0%} of {g['n_in_distribution']} fresh brains"
            + (f"; let through: {', '.join(g['let_through'])}" if g["let_through"] else "")
        )
    if "dice" in seg:
        d, h = seg["dice"], seg.get("hd95_mm") or {}
        hd = f", HD95 {h['value']:.1f} mm" if h else ""
        print(
            f"  segmentation ({seg['source']}): Dice {d['value']:.2f} "
            f"(95% CI {d['ci_low']:.2f}-{d['ci_high']:.2f}){hd}"
        )
    else:
        print(f"  segmentation: {seg.get('not_measured') or seg['source']}")
    for method, m in r["saliency"]["methods"].items():
        v = m["verdict"]
        pg = m.get("pointing_game")
        figure = f", pointing game {pg['value']:.2f}" if pg else ""
        why = f" ({'; '.join(v['reasons'])})" if v["reasons"] else ""
        print(f"  saliency {method}: {v['status']}{figure}{why}")


def _print_gaps(title: str, report: dict) -> None:
    print(title)
    for row in report["largest_gap"].values():
        ci = (
            ""
            if row["ci_low"] is None
            else f" (95% CI {row['ci_low']:+.3f} to {row['ci_high']:+.3f})"
        )
        print(
            f"  largest {row['title']} gap: {row['gap']:.3f}{ci} by {row['attribute']}: "
            f"{row['low_group']} {row['low_value']:.3f} (n={row['n_low']}) vs "
            f"{row['high_group']} {row['high_value']:.3f} (n={row['n_high']})"
        )
    for attribute, why in report["skipped"].items():
        print(f"  not audited: {attribute}: {why}")


def cmd_validate_subgroups(args: argparse.Namespace) -> int:
    """Subgroup audit (fairlearn MetricFrame): the treatment model on the store, imaging models on phantoms."""
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.governance.subgroup_treatment import treatment_subgroup_report

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment.clinic import load_clinic_model

    # lazy: `oncolens --help` and the other commands never load it
    from dashboard.services.subgroups import imaging_subgroup_report
    from models.inference.registry import (  # lazy: `oncolens --help` and the other commands never load it
        ModelUnavailableError,
        available_models,
        load_model,
    )

    if not 0 < args.threshold < 1:
        raise CliError("--threshold must be between 0 and 1")
    result: dict = {"treatment": None, "imaging": {}}
    try:
        clinic = load_clinic_model(db_path(args))
        with store.open_store(db_path(args), read_only=True) as con:
            result["treatment"] = treatment_subgroup_report(
                con, clinic, threshold=args.threshold, bootstrap=args.gap_bootstrap, seed=args.seed
            )
    except cli_treatment.treatment_errors() as exc:
        result["treatment"] = {"error": str(exc)}
    for name in available_models():
        try:
            result["imaging"][name] = imaging_subgroup_report(
                load_model(name), n=args.n or 400, seed=args.seed, bootstrap=args.gap_bootstrap
            )
        except (ModelUnavailableError, ValueError) as exc:
            result["imaging"][name] = {"error": str(exc)}
    parts = [result["treatment"], *result["imaging"].values()]
    if args.json:
        print(json.dumps(result))
    else:
        t = result["treatment"]
        if "error" in t:
            print(f"treatment: error: {t['error']}")
        else:
            print(f"treatment model {t['model_version']}: {t['data']}; {t['decision']}")
            _print_gaps("  survival (all patients):", t["survival"])
            _print_gaps(
                f"  5-year outcome ({t['known_5y_status']} with known 5-year status):",
                t["five_year"],
            )
        for name, r in result["imaging"].items():
            if "error" in r:
                print(f"{name}: error: {r['error']}")
            else:
                _print_gaps(f"{name} v{r['model_version']}: {r['data']}; {r['note']}", r)
    return EXIT_FAILED if any("error" in p for p in parts) else 0


def _print_saliency_report(name: str, r: dict) -> None:
    print(f"{name} v{r['model_version']}: {r['data']}; explaining {r['target']}")
    print(
        f"  {'method':22s} {'pointing game':>22s} {'deletion (random)':>18s} {'insertion (random)':>19s} "
        f"{'infidelity':>10s} {'max-sens':>8s} {'randomisation rho':>18s} {'ms':>6s}"
    )
    for method, m in r["methods"].items():
        pg, rho = m["pointing_game"], m["sanity"]["spearman_abs"]
        verdict = "pass" if m["sanity"]["passed"] else "FAIL"
        print(
            f"  {method:22s} {pg['value']:>6.2f} ({pg['ci_low']:.2f}-{pg['ci_high']:.2f})     "
            f"{m['deletion_auc']:>7.3f} ({m['deletion_auc_random']:.3f}) {m['insertion_auc']:>8.3f} "
            f"({m['insertion_auc_random']:.3f}) {m['infidelity']:>10.3g} {m['sensitivity_max'] or float('nan'):>8.3f} "
            f"{rho['value']:>12.2f} {verdict:>5s} {m['latency_ms']['median']:>6.0f}"
        )
    print(
        f"  sanity threshold {r['sanity_threshold']} (Spearman of |map|, trained vs re-initialised); "
        f"recommended (pointing game >= {r['pointing_game_aim']} and sanity passed): "
        f"{', '.join(r['recommended']) or 'none'}"
    )


def cmd_validate_saliency(args: argparse.Namespace) -> int:
    from models.inference.registry import (  # lazy: `oncolens --help` and the other commands never load it
        ModelUnavailableError,
        available_models,
        load_model,
    )
    from models.saliency.quality import (  # lazy: `oncolens --help` and the other commands never load it
        DEFAULT_N,
        saliency_quality,
    )

    names = available_models()
    if not names:
        raise CliError(
            "no imaging model is installed; train one with `python -m models.training.train --task mammography`"
        )
    results = {}
    for name in names:
        try:
            results[name] = saliency_quality(
                load_model(name), n=args.n or DEFAULT_N, seed=args.seed
            )
        except (ModelUnavailableError, ValueError) as exc:
            results[name] = {"error": str(exc)}
    if args.json:
        print(json.dumps(results))
    else:
        for name, r in results.items():
            if "error" in r:
                print(f"{name}: error: {r['error']}")
            else:
                _print_saliency_report(name, r)
    return EXIT_FAILED if any("error" in r for r in results.values()) else 0
