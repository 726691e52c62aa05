"""``oncolens recommend`` and the treatment targets of ``oncolens validate`` (``gbsg2``,
``treatment``, ``treatment-csv``): the clinic's outcome model per option."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dashboard.cli import analytics as cli_analytics
from dashboard.cli import oversight as cli_lifecycle
from dashboard.cli import progress as cli_progress
from dashboard.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    SubParsers,
    add_command,
    db_arg,
    db_path,
    say,
    whole_number,
)


def add_subparsers(subparsers: SubParsers) -> None:
    p = add_command(
        subparsers,
        "recommend",
        "treatment recommendation for one patient (or --train the clinic's model)",
        cmd_recommend,
    )
    p.add_argument("patient_id", nargs="?", metavar="PATIENT_ID")
    db_arg(p)
    p.add_argument(
        "--train",
        action="store_true",
        help="(re)train the clinic's outcome model from the store and save it with its card",
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="folder of the saved model (default: <store name>_models beside the store)",
    )
    p.add_argument(
        "--bootstrap", type=whole_number, default=25, help="--train: bootstrap refits (default 25)"
    )
    p.add_argument("--seed", type=int, default=20_261_125, help="--train: seed (default 20261125)")
    p.add_argument("--json", action="store_true")


TREATMENT_TARGETS = ("gbsg2", "treatment", "treatment-csv")


def treatment_errors() -> tuple[type[Exception], ...]:
    """The domain errors of the treatment libraries: each becomes a plain message and exit 1."""
    from analytics.treatment.clinic_data import (  # lazy: `oncolens --help` and the other commands never load it
        MissingCovariatesError,
        UnknownPatientError,
    )

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment.data import TreatmentDataError

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment.model.files import TreatmentModelError

    return (TreatmentDataError, TreatmentModelError, MissingCovariatesError, UnknownPatientError)


def _policy_line(row: dict, label: str) -> str:
    if "error" in row:
        return f"  {row['policy']}: {row['error']}"
    lo, hi = row["hazard_ratio_ci"]
    return (
        f"  {row['policy']}: followed {row['followed_patients']} vs not {row['not_followed_patients']}, "
        f"{label} {row['followed']['rfs']:.2f} vs {row['not_followed']['rfs']:.2f}, "
        f"HR {row['hazard_ratio']:.2f} ({lo:.2f}-{hi:.2f}), log-rank p {row['logrank_p']:.3g}"
    )


def _print_treatment_report(report: dict) -> None:
    data = report["data"]
    horizon = report["horizon"]
    label = horizon["label"]
    print(
        f"{data['source']}: {data['patients']} patients, {data['events']} events; options {data['options']}"
    )
    print(
        f"horizon: {label} ({horizon['horizon_days']:.0f} days; {horizon['at_risk_at_horizon']} patients "
        f"still at risk; chosen by {horizon['chosen_by']})"
    )
    for w in report["warnings"]:
        print(f"warning: {w['message']}")
    cv = report["cross_validation"]
    print(f"{cv['folds']}-fold cross-validation (seed {cv['seed']}), same folds for every learner:")
    for name, m in report["learners"].items():
        if name == "selection":
            continue
        print(
            f"  {name:11s} Harrell C {m['harrell_c']['mean']:.3f}  Uno C {m['uno_c']['mean']:.3f}  "
            f"integrated Brier {m['integrated_brier']['mean']:.4f}"
        )
    selection = report["learners"]["selection"]
    better = ", ".join(selection["better_than_kept"]) or "none"
    print(
        f"kept: {selection['kept']} (exact SHAP in percentage points); clearly better on this data "
        f"(Nadeau-Bengio corrected): {better}"
    )
    rec = report["recommendation"]
    print(
        f"recommendations (out of fold, 90% benefit intervals): {rec['counts']}; "
        f"clear {100 * rec['fraction_clear']:.1f}%"
    )
    if "shuffled_labels" in report:
        print(
            f"shuffled treatment labels (no true effect): clear for "
            f"{100 * report['shuffled_labels']['fraction_clear']:.1f}% of patients"
        )
    for row in rec["followed_vs_not"]:
        print(_policy_line(row, label))
    tree = report["policy_tree"]
    gain = tree["gain_over_best_single_option"]
    print(
        f"who benefits (depth-{tree['depth']} policy tree, out of fold): value {tree['policy_value']['value']:.3f}"
        f" vs everyone {tree['best_single_option']} "
        f"{tree['everyone_gets'][tree['best_single_option']]['value']:.3f}; gain {gain['value']:+.3f} "
        f"(95% CI {gain['ci'][0]:+.3f} to {gain['ci'][1]:+.3f}): {tree['verdict']}"
    )
    for leaf in tree["tree"]:
        print(
            f"  if {' and '.join(leaf['conditions'])}: {leaf['option']} ({leaf['patients']} patients)"
        )
    if "truth" in report and "skipped" in report["truth"]:
        print(f"against the simulation's truth: skipped ({report['truth']['skipped']})")
    elif "truth" in report:
        t = report["truth"]
        print(
            f"against the simulation's truth: recommended option truly best for "
            f"{100 * t['fraction_recommended_truly_best']:.1f}%; policy value {t['policy_value_rfs_5y']:.4f} "
            f"vs everyone {t['best_single_option']} {t['best_single_option_value_rfs_5y']:.4f} "
            f"(gain {t['policy_value_gain']:+.4f}); PEHE {t['pehe']:.4f}; 90% benefit interval covers "
            f"the true benefit for {100 * t['benefit_interval_coverage_of_true_benefit']:.1f}%"
        )
    for caveat in report["caveats"]:
        print(f"caveat: {caveat}")


def cmd_validate_treatment(args: argparse.Namespace) -> int:
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment import validation as tv

    options = {
        "folds": args.folds,
        "seed": args.seed,
        "bootstrap": args.bootstrap,
        "horizon_days": args.horizon_days,
    }
    if args.folds < 2 or args.bootstrap < 2:
        raise CliError("--folds and --bootstrap must be at least 2")
    try:
        if args.target == "gbsg2":
            report = tv.validate_gbsg2(**options)
        elif args.target == "treatment":
            # lazy: `oncolens --help` and the other commands never load it
            from analytics import store

            with store.open_store(db_path(args), read_only=True) as con:
                report = tv.validate_clinic(con, **options)
        else:
            if args.file is None or not (args.treatment and args.time and args.event):
                say(
                    "usage: oncolens validate treatment-csv FILE --treatment COL --time COL --event COL "
                    "[--covariates COL ...] [--json]"
                )
                return EXIT_USAGE
            from analytics.treatment.data import (  # lazy: `oncolens --help` and the other commands never load it
                read_trial_file,
                table_from_frame,
            )

            # lazy: `oncolens --help` and the other commands never load it
            from analytics.treatment.horizon import table_in_days

            table, unit_warnings = table_in_days(
                table_from_frame(
                    read_trial_file(args.file),
                    treatment=args.treatment,
                    time=args.time,
                    event=args.event,
                    covariates=args.covariates,
                    source=str(args.file),
                ),
                args.time_unit,
            )
            report, _, _ = tv.validate_table(
                table, keep=args.keep_covariate, extra_warnings=unit_warnings, **options
            )
    except treatment_errors() as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(report))
    else:
        _print_treatment_report(report)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from analytics.treatment.clinic import (  # lazy: `oncolens --help` and the other commands never load it
        recommend_patient,
        train_clinic_model,
    )
    from analytics.treatment.scope import OutOfScopeError  # lazy: as above

    if not args.train and args.patient_id is None:
        say("give a PATIENT_ID, or --train to (re)train the clinic's model")
        return EXIT_USAGE
    db = db_path(args)
    try:
        if args.train:
            summary = train_clinic_model(
                db,
                folder=args.model_dir,
                bootstrap=args.bootstrap,
                seed=args.seed,
                track=cli_progress.track,
                command=getattr(args, "command_line", None),
            )
            card = summary.card
            learners = card["metrics"]["learners"]
            kept = learners[card["learner"]["name"]]
            if args.json and args.patient_id is None:
                print(
                    json.dumps(
                        {
                            "model_dir": str(summary.folder),
                            "model_version": card["version"],
                            "sha256": card["weights"]["sha256"],
                            "training": card["training"],
                            "metrics": card["metrics"],
                        }
                    )
                )
            else:
                say(
                    f"trained {card['version']} on {card['training']['patients']} patients "
                    f"(cross-validated Harrell C {kept['harrell_c']['mean']:.3f}, integrated Brier "
                    f"{kept['integrated_brier']['mean']:.4f}); saved in {summary.folder}"
                )
            if args.model_dir is None:  # the model the app and the worklist use: re-rank with it
                cli_analytics.refresh_worklist(db)
            if args.patient_id is None:
                return 0
        try:
            person_id = int(args.patient_id)
        except ValueError:
            raise CliError(f"PATIENT_ID must be a whole number (got {args.patient_id!r})") from None
        result = recommend_patient(db, person_id, folder=args.model_dir)
    except OutOfScopeError as exc:
        # an answer, not a failure: the model does not apply to her, and the output says why
        scope = exc.scope
        if args.json:
            print(json.dumps(scope.to_json()))
        else:
            print(f"Patient {scope.person_id}: {scope.setting.headline}")
            print(f"  -> no recommendation: out of the treatment model's scope ({scope.reason}).")
            for line in scope.setting.lines:
                end = (
                    f"to {line.end_date:%Y-%m-%d} ({line.end_reason or 'reason not recorded'})"
                    if line.end_date
                    else "ongoing"
                )
                print(
                    f"     line {line.number}: {line.regimen or 'regimen not recorded'}, "
                    f"from {line.start_date:%Y-%m-%d} {end}"
                )
        return 0
    except treatment_errors() as exc:
        raise CliError(str(exc)) from exc
    # the version's ethics-board sign-off; its output withheld where the admin requires it (issue 22)
    out, withheld = cli_lifecycle.withhold(
        result.to_json(),
        cli_lifecycle.approval_of(db, "treatment", result.model_version),
        ("patient_id", "model_version"),
    )
    if args.json:
        print(json.dumps(out))
        return EXIT_FAILED if withheld else 0
    if withheld:
        raise CliError(out["error"])
    from dashboard.figures import formats  # lazy: pandas, which `oncolens --help` never loads

    if out["approval"].get("message"):
        print(f"NOTE: {out['approval']['message']}")
    print(f"Patient {result.person_id} (model {formats.version(result.model_version)}):")
    for o in result.options:
        lo, hi = o.rfs_ci
        print(
            f"  {o.treatment:16s} 5-year RFS {formats.pct(o.rfs):>5s} (95 % CI {formats.pct_interval(lo, hi)}), "
            f"RMST {o.rmst_days:.0f} days of 5 years"
        )
    print(f"  -> {result.statement}")
    print(
        f"  why (SHAP, percentage points of the benefit; average patient {100 * result.shap.base_value:+.1f}):"
    )
    for c in result.shap.contributions:
        print(f"     {c.feature:34s} {c.value:8.1f}  {100 * c.shap:+.2f}")
    print(f"  {result.caveat}")
    return 0
