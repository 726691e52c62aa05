"""The ``oncolens`` command: batch work from the shell, on the same library code as the app.

The subcommands and their JSON keys are a public interface (ARCHITECTURE.md).
Commands whose issue has not landed yet exist with their arguments and
``--help``, and exit with status 3 and a plain "not available yet" message, so
scripts written against the contract fail loudly instead of doing nothing.

Exit status: 0 success, 1 a failed input or operation (message on stderr),
2 a usage error (argparse), 3 not available yet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dashboard.cli import progress as cli_progress
from models.inference.loader import ModelLoader
from models.provenance import oncolens_version

EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report on stderr with exit status 1."""


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return value


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help="DuckDB store (default: $ONCOLENS_DB or ~/.oncolens/oncolens.duckdb)",
    )


def _db_path(args: argparse.Namespace) -> Path:
    from analytics import store

    return Path(args.db).expanduser() if args.db else store.default_db_path()


def _say(msg: str) -> None:
    print(f"oncolens: {msg}", file=sys.stderr, flush=True)


# --- demo ---------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from sample_data.demo import DemoError, write_demo

    db = _db_path(args)
    try:
        summary = write_demo(
            db,
            patients=args.patients,
            seed=args.seed,
            force=args.force,
            progress=_say,
            rank_worklist=False,
        )
    except DemoError as exc:
        raise CliError(str(exc)) from exc
    result = {
        "db": str(summary.path),
        "patients": summary.patients,
        "seed": summary.seed,
        "rows": summary.rows,
        "simulate_s": round(summary.simulate_s, 3),
        "write_s": round(summary.write_s, 3),
    }
    images = None
    if args.images > 0:
        from sample_data.demo_imaging import write_demo_images

        dicom_dir = args.dicom_dir or summary.path.with_name(f"{summary.path.stem}_dicom")
        try:
            images = write_demo_images(
                summary.path,
                dicom_dir,
                patients=args.images,
                seed=args.seed,
                progress=_say,
                track=cli_progress.track,
            )
        except DemoError as exc:
            raise CliError(f"the clinic was written, but its demo images were not: {exc}") from exc
        result |= {
            "dicom_dir": str(images.dicom_dir),
            "images": len(images.images),
            "imaged_patients": [int(p) for p in images.all_person_ids],
            "images_s": round(images.seconds, 3),
        }
    result["treatment_model"] = _demo_treatment_model(summary.path, train=not args.no_model)
    from dashboard.cli import analytics as cli_analytics

    result["worklist"] = cli_analytics.refresh_worklist(
        summary.path
    )  # after the model: its risk joins
    from dashboard.cli import governance as cli_governance

    accounts = cli_governance.demo_accounts(summary.path)
    result["accounts"] = [{"username": a["username"], "role": a["role"]} for a in accounts]
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"Demo clinic with {summary.patients:,} patients written to {summary.path} "
            f"in {summary.simulate_s + summary.write_s:.1f} s."
        )
        if images is not None:
            example = f" (e.g. patient {images.person_ids[0]})" if images.person_ids else ""
            print(
                f"{len(images.images)} demo DICOM images of {len(images.all_person_ids)} patients in "
                f"{images.dicom_dir}{example}."
            )
        model = result["treatment_model"]
        if "model_version" in model:
            print(
                f"Treatment model {model['model_version']} trained in {model['train_s']:.1f} s, saved in "
                f"{model['model_dir']}."
            )
        else:
            print(f"No treatment model: {model['skipped']}.")
        print(f"Start the app with: oncolens serve --db {summary.path}")
        cli_governance.print_demo_accounts(accounts)
    return 0


def _demo_treatment_model(db: Path, *, train: bool) -> dict:
    """Train the new clinic's treatment model (or say why not); a previous store's model never stays.

    The model folder lies beside the store, so a store replaced with --force would
    otherwise keep a model trained on the clinic it replaced.
    """
    import time

    from analytics.treatment.data import TreatmentDataError
    from analytics.treatment.model.files import model_dir_for, model_paths

    folder = model_dir_for(db)
    stale = [path for path in model_paths(folder) if path.exists()]
    for path in stale:
        path.unlink()
    if stale:
        _say(f"removed the replaced store's treatment model from {folder}")
    if not train:
        return {"skipped": f"--no-model (train it later: oncolens recommend --train --db {db})"}
    from analytics.treatment.clinic import train_clinic_model

    _say("training the clinic's treatment model (--no-model skips this)")
    start = time.perf_counter()
    try:
        trained = train_clinic_model(db, track=cli_progress.track)
    except TreatmentDataError as exc:
        _say(f"no treatment model: {exc}")
        return {"skipped": str(exc)}
    return {
        "model_dir": str(trained.folder),
        "model_version": trained.card["version"],
        "train_s": round(time.perf_counter() - start, 3),
    }


# --- serve --------------------------------------------------------------------


def browser_at_hand(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether this machine can show a web browser: macOS and Windows can, Linux only with a display."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    return platform in ("darwin", "win32") or bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def streamlit_command(db: Path, port: int, address: str, open_browser: bool = False) -> list[str]:
    """The ``streamlit run`` command line; security settings given explicitly so they hold anywhere.

    ``open_browser``: Streamlit opens the app in the default browser once it is up
    (not headless), without its first-run e-mail prompt.
    """
    app = Path(__file__).resolve().parents[1] / "app.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "false" if open_browser else "true",
        "--server.showEmailPrompt",
        "false",
        "--server.enableXsrfProtection",
        "true",
        "--server.maxUploadSize",
        "200",
        "--browser.gatherUsageStats",
        "false",
        "--theme.primaryColor",
        "#0f6e8c",
    ]


def cmd_serve(args: argparse.Namespace) -> int:
    from analytics import store

    db = _db_path(args)
    try:
        with store.open_store(db, read_only=True, wait_s=10):
            pass
    except store.StoreError as exc:
        raise CliError(str(exc)) from exc
    if not 1 <= args.port <= 65535:
        raise CliError(f"--port must be between 1 and 65535 (got {args.port})")
    open_browser = args.open and browser_at_hand()
    cmd = streamlit_command(db.absolute(), args.port, args.address, open_browser=open_browser)
    env = dict(os.environ, ONCOLENS_DB=str(db.absolute()))
    project_root = Path(__file__).resolve().parents[2]
    if (project_root / ".streamlit" / "config.toml").exists():
        os.chdir(project_root)  # picks up the theme in .streamlit/config.toml
    shown = "localhost" if args.address in ("127.0.0.1", "localhost") else args.address
    _say(f"OncoLens on http://{shown}:{args.port} (store {db}); Ctrl+C stops it")
    if args.open and not open_browser:
        _say("no web browser on this machine: open the address above in one")
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)
    return 0  # not reached


# --- imaging: predict, ingest, validate imaging -------------------------------


def cmd_predict(args: argparse.Namespace) -> int:
    from models.inference.read import iter_dicom_paths, predict_file

    load = ModelLoader()
    failed = 0
    files = list(iter_dicom_paths(args.paths))
    seen = len(files)
    for path in cli_progress.track(files, "AI read", seen):
        result = predict_file(path, load, args.model)
        failed += "error" in result
        if args.json:
            cli_progress.echo(json.dumps(result))
        elif "error" in result:
            cli_progress.echo(f"{result['file']}: error: {result['error']}")
        else:
            probs = ", ".join(f"{k} {v:.2f}" for k, v in result["probabilities"].items())
            lesion = result["lesion"]
            size = (
                f"; lesion {lesion['longest_diameter_mm']:.1f} mm"
                if lesion and "longest_diameter_mm" in lesion
                else ""
            )
            cli_progress.echo(
                f"{result['file']}: {result['label']} ({probs}){size} [{result['model']} "
                f"{result['model_version']}, {result['latency_ms']:.0f} ms]"
            )
    if seen == 0:
        raise CliError("no files found under the given paths")
    if failed:
        _say(f"{failed} of {seen} file(s) could not be read by a model")
        return EXIT_FAILED
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from analytics.imaging.ingest import ingest_files
    from models.inference.read import iter_dicom_paths

    if args.dicomweb is not None or args.study:
        from dashboard.cli import hospital as cli_hospital

        try:
            return cli_hospital.cmd_ingest_pacs(args, _db_path(args), ModelLoader())
        except cli_hospital.HospitalCliError as exc:
            raise CliError(str(exc)) from None
    if not args.paths:
        raise CliError("give DICOM files or folders to ingest")
    files = list(iter_dicom_paths(args.paths))
    if not files:
        raise CliError("no files found under the given paths")
    report = ingest_files(
        _db_path(args),
        cli_progress.track(files, "reading and AI read", len(files)),
        ModelLoader(),
    )
    for entry in report.stored:
        print(json.dumps(entry), flush=True)
    for entry in report.failed:
        print(json.dumps(entry), flush=True)
    _say(f"stored {len(report.stored)} image(s) in {_db_path(args)}; {len(report.failed)} failed")
    return EXIT_FAILED if report.failed else 0


def cmd_deidentify(args: argparse.Namespace) -> int:
    """De-identify DICOM files into --out (PS3.15 Annex E Basic Profile); originals are left as they are."""
    from models.deid import deidentify as deid
    from models.inference.read import iter_dicom_paths

    files = list(iter_dicom_paths(args.paths))
    if not files:
        raise CliError("no files found under the given paths")
    if args.out.resolve() in {p.resolve().parent for p in files}:
        raise CliError(
            "--out must not be a folder of the input files (originals are never overwritten)"
        )
    # default: the store's own key, so these files map UIDs exactly as its ingest does; never kept in --out
    key_file = args.key_file or deid.key_path_for_store(_db_path(args))
    try:
        key = deid.load_or_create_key(key_file)
    except (deid.DeidentificationError, OSError) as exc:
        raise CliError(f"cannot use the key file {key_file}: {exc}") from exc
    failed = 0
    for result in deid.deidentify_files(
        cli_progress.track(files, "de-identifying", len(files)), args.out, key
    ):
        failed += "error" in result
        if args.json:
            cli_progress.echo(json.dumps(result))
        elif "error" in result:
            cli_progress.echo(f"{result['file']}: error: {result['error']}")
        else:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(result["counts"].items()))
            cli_progress.echo(f"{result['file']} -> {result['out']} ({counts})")
            for warning in result["warnings"]:
                cli_progress.echo(f"  warning: {warning}")
    _say(
        f"{len(files) - failed} of {len(files)} file(s) de-identified into {args.out} (key {key_file}; "
        "the same key maps the same UIDs to the same new UIDs)"
    )
    return EXIT_FAILED if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    if args.target in TREATMENT_TARGETS:
        return cmd_validate_treatment(args)
    if args.target == "saliency":
        return cmd_validate_saliency(args)
    if args.target == "subgroups":
        return cmd_validate_subgroups(args)
    if args.target == "forecast":
        return cmd_validate_forecast(args)
    from models.inference.registry import ModelUnavailableError, available_models, load_model
    from models.training.validate import validate_imaging

    names = available_models()
    if not names:
        raise CliError(
            "no imaging model is installed; train one with `python -m models.training.train --task mammography`"
        )
    results = {}
    for name in names:
        try:
            results[name] = validate_imaging(load_model(name), n=args.n or 400, seed=args.seed)
        except ModelUnavailableError as exc:
            results[name] = {"error": str(exc)}
    if args.json:
        print(json.dumps(results))
    else:
        for name, r in results.items():
            if "error" in r:
                print(f"{name}: error: {r['error']}")
                continue
            auc, dice = r["auc"], r["lesion_dice"]
            print(
                f"{name}: AUC {auc['value']:.3f} (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f}), "
                f"ECE {r['ece']:.3f}, lesion Dice {dice['value']:.3f} "
                f"({dice['ci_low']:.3f}-{dice['ci_high']:.3f}), n={r['n']} seed={r['seed']}"
            )
    return EXIT_FAILED if any("error" in r for r in results.values()) else 0


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
    from analytics import store
    from analytics.governance.subgroup_treatment import treatment_subgroup_report
    from analytics.treatment.clinic import load_clinic_model
    from dashboard.services.subgroups import imaging_subgroup_report
    from models.inference.registry import ModelUnavailableError, available_models, load_model

    if not 0 < args.threshold < 1:
        raise CliError("--threshold must be between 0 and 1")
    result: dict = {"treatment": None, "imaging": {}}
    try:
        clinic = load_clinic_model(_db_path(args))
        with store.open_store(_db_path(args), read_only=True) as con:
            result["treatment"] = treatment_subgroup_report(
                con, clinic, threshold=args.threshold, bootstrap=args.gap_bootstrap, seed=args.seed
            )
    except _treatment_errors() as exc:
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


# --- saliency: explain, validate saliency ----------------------------------------


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from models.dicom.reader import DicomReadError, display
    from models.inference.read import NoModelForImageError
    from models.inference.registry import ModelUnavailableError
    from models.saliency import methods as saliency

    error = None
    try:
        params = saliency.with_params(None, baseline=args.baseline, n_steps=args.steps)
        result, exp, image = saliency.explain_file(
            args.path, ModelLoader(), args.method, args.target, params, args.model
        )
    except FileNotFoundError:
        error = "file not found"
    except IsADirectoryError:
        error = "is a folder (explain takes one DICOM file)"
    except (
        DicomReadError,
        NoModelForImageError,
        ModelUnavailableError,
        saliency.SaliencyError,
    ) as exc:
        error = str(exc)
    if error is not None:
        if args.json:
            print(json.dumps({"file": str(args.path), "error": error}), flush=True)
        raise CliError(f"{args.path}: {error}")
    try:
        if args.out_npy:
            args.out_npy.parent.mkdir(parents=True, exist_ok=True)
            np.save(args.out_npy, exp.attribution)
            result["out_npy"] = str(args.out_npy)
        if args.out:
            from dashboard.figures.saliency import write_overlay_png

            write_overlay_png(args.out, display(image), exp.attribution)
            result["out"] = str(args.out)
    except OSError as exc:
        raise CliError(f"cannot write the output: {exc}") from exc
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    delta = (
        f", convergence delta {result['convergence_delta']:.3g}"
        if "convergence_delta" in result
        else ""
    )
    print(
        f"{result['file']}: {saliency.METHOD_TITLES[args.method]} of '{result['target']}' "
        f"[{result['model']} {result['model_version']}]: peak at row {exp.peak_rc[0]}, column {exp.peak_rc[1]}; "
        f"{result['latency_ms']:.0f} ms{delta}"
    )
    if result["sanity_check"] == "failed":
        _say(
            f"warning: {args.method} failed the model-randomisation sanity check for this model "
            "(see `oncolens validate saliency`): the map may reflect the image more than the model"
        )
    return 0


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
    from models.inference.registry import ModelUnavailableError, available_models, load_model
    from models.saliency.quality import DEFAULT_N, saliency_quality

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


# --- treatment: validate gbsg2 | treatment | treatment-csv, recommend ------------

TREATMENT_TARGETS = ("gbsg2", "treatment", "treatment-csv")


def _treatment_errors():
    """The domain errors of the treatment libraries: each becomes a plain message and exit 1."""
    from analytics.treatment.clinic_data import MissingCovariatesError, UnknownPatientError
    from analytics.treatment.data import TreatmentDataError
    from analytics.treatment.model.files import TreatmentModelError

    return (TreatmentDataError, TreatmentModelError, MissingCovariatesError, UnknownPatientError)


def _policy_line(row: dict) -> str:
    if "error" in row:
        return f"  {row['policy']}: {row['error']}"
    lo, hi = row["hazard_ratio_ci"]
    return (
        f"  {row['policy']}: followed {row['followed_patients']} vs not {row['not_followed_patients']}, "
        f"5-year RFS {row['followed']['rfs_5y']:.2f} vs {row['not_followed']['rfs_5y']:.2f}, "
        f"HR {row['hazard_ratio']:.2f} ({lo:.2f}-{hi:.2f}), log-rank p {row['logrank_p']:.3g}"
    )


def _print_treatment_report(report: dict) -> None:
    data = report["data"]
    print(
        f"{data['source']}: {data['patients']} patients, {data['events']} events; options {data['options']}"
    )
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
        f"kept: {selection['kept']} (exact SHAP in percentage points); clearly better on this data: {better}"
    )
    rec = report["recommendation"]
    print(f"recommendations (out of fold): {rec['counts']}")
    for row in rec["followed_vs_not"]:
        print(_policy_line(row))
    if "truth" in report:
        t = report["truth"]
        print(
            f"against the simulation's truth: recommended option truly best for "
            f"{100 * t['fraction_recommended_truly_best']:.1f}%; policy value {t['policy_value_rfs_5y']:.4f} "
            f"vs everyone {t['best_single_option']} {t['best_single_option_value_rfs_5y']:.4f} "
            f"(gain {t['policy_value_gain']:+.4f}); PEHE {t['pehe']:.4f}"
        )
    for caveat in report["caveats"]:
        print(f"caveat: {caveat}")


def cmd_validate_treatment(args: argparse.Namespace) -> int:
    from analytics.treatment import validation as tv

    options = {"folds": args.folds, "seed": args.seed, "bootstrap": args.bootstrap}
    if args.folds < 2 or args.bootstrap < 2:
        raise CliError("--folds and --bootstrap must be at least 2")
    try:
        if args.target == "gbsg2":
            report = tv.validate_gbsg2(**options)
        elif args.target == "treatment":
            from analytics import store

            with store.open_store(_db_path(args), read_only=True) as con:
                report = tv.validate_clinic(con, **options)
        else:
            if args.file is None or not (args.treatment and args.time and args.event):
                _say(
                    "usage: oncolens validate treatment-csv FILE --treatment COL --time COL --event COL "
                    "[--covariates COL ...] [--json]"
                )
                return EXIT_USAGE
            from analytics.treatment.data import read_trial_file, table_from_frame

            table = table_from_frame(
                read_trial_file(args.file),
                treatment=args.treatment,
                time=args.time,
                event=args.event,
                covariates=args.covariates,
                source=str(args.file),
            )
            report, _, _ = tv.validate_table(table, **options)
    except _treatment_errors() as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(report))
    else:
        _print_treatment_report(report)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from analytics.treatment.clinic import recommend_patient, train_clinic_model

    if not args.train and args.patient_id is None:
        _say("give a PATIENT_ID, or --train to (re)train the clinic's model")
        return EXIT_USAGE
    db = _db_path(args)
    try:
        if args.train:
            summary = train_clinic_model(
                db,
                folder=args.model_dir,
                bootstrap=args.bootstrap,
                seed=args.seed,
                track=cli_progress.track,
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
                _say(
                    f"trained {card['version']} on {card['training']['patients']} patients "
                    f"(cross-validated Harrell C {kept['harrell_c']['mean']:.3f}, integrated Brier "
                    f"{kept['integrated_brier']['mean']:.4f}); saved in {summary.folder}"
                )
            if args.model_dir is None:  # the model the app and the worklist use: re-rank with it
                from dashboard.cli import analytics as cli_analytics

                cli_analytics.refresh_worklist(db)
            if args.patient_id is None:
                return 0
        try:
            person_id = int(args.patient_id)
        except ValueError:
            raise CliError(f"PATIENT_ID must be a whole number (got {args.patient_id!r})") from None
        result = recommend_patient(db, person_id, folder=args.model_dir)
    except _treatment_errors() as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(f"Patient {result.person_id} (model {result.model_version}):")
    for o in result.options:
        lo, hi = o.rfs_ci
        print(
            f"  {o.treatment:16s} 5-year RFS {100 * o.rfs:5.1f}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}), "
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


# --- forecast: one patient, validate forecast ---------------------------------------


def cmd_forecast(args: argparse.Namespace) -> int:
    from analytics import store
    from analytics.forecast.patient import (
        ForecastError,
        UnknownPatientError,
        estimate_prior,
        patient_forecast,
    )
    from analytics.treatment.clinic import load_clinic_model
    from analytics.treatment.model.files import TreatmentModelError

    try:
        person_id = int(args.patient_id)
    except ValueError:
        raise CliError(f"PATIENT_ID must be a whole number (got {args.patient_id!r})") from None
    db = _db_path(args)
    with store.open_store(db, read_only=True) as con:
        known = con.execute(
            "SELECT count(*) FROM person WHERE person_id = ?", [person_id]
        ).fetchall()[0][0]
        if not known:
            raise CliError(f"no patient with id {person_id} in {db}")
        try:
            clinic = load_clinic_model(db, stack_refits=False)
        except TreatmentModelError:
            clinic = None  # the forecast says what this leaves out
        try:
            forecast = patient_forecast(con, person_id, estimate_prior(con), clinic)
        except (ForecastError, UnknownPatientError) as exc:
            raise CliError(str(exc)) from exc
    result = forecast.to_json()
    if args.json:
        print(json.dumps(result))
        return 0
    tumour, info = result["tumour"], result["survival_info"]
    print(f"Patient {person_id}, as of {result['as_of']} ({result['caveat']})")
    if tumour["observed"]:
        last = tumour["observed"][-1]
        print(
            f"  lesion: {len(tumour['observed'])} reading(s), last {last['mm']} mm on {last['date']}, "
            f"nadir {tumour['nadir_mm']} mm; RECIST progression {tumour['progression_status'].replace('_', ' ')}"
            f"{' on ' + tumour['progression_date'] if tumour['progression_date'] else ''}"
        )
        if tumour["progression_probability_6m"] is not None:
            print(
                f"  probability that her last reading expected within 6 months meets progression: "
                f"{100 * tumour['progression_probability_6m']:.0f}%"
            )
    for option, rows in result["survival"].items():
        end = rows[-1]
        print(
            f"  {option:16s} recurrence-free to day {end['day']:.0f}: {100 * end['s']:.1f}% "
            f"(95% {100 * end['lo']:.1f}-{100 * end['hi']:.1f}), given recurrence-free to day {rows[0]['day']:.0f}"
        )
    for note in [*tumour["notes"], *info["notes"]]:
        print(f"  note: {note}")
    return 0


def cmd_validate_forecast(args: argparse.Namespace) -> int:
    from analytics import store
    from analytics.forecast.validation import validate_forecast

    if args.folds < 2:
        raise CliError("--folds must be at least 2")
    try:
        with store.open_store(_db_path(args), read_only=True) as con:
            report = validate_forecast(con, seed=args.seed, folds=args.folds)
    except (ValueError, *_treatment_errors()) as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(report))
        return 0
    t = report["tumour"]["overall"]
    mae = t["mae_mm"]
    print(
        f"tumour size, held-out later readings ({t['readings']} readings, {t['patients']} patients): MAE "
        f"growth-inhibition {mae['tgi']:.2f} mm, last value {mae['locf']:.2f} mm, linear trend {mae['trend']:.2f} mm; "
        f"coverage 80% band {t['coverage_80']:.3f}, 95% band {t['coverage_95']:.3f} (recalibrated; raw bands "
        f"{t['uncalibrated']['coverage_80']:.3f}, {t['uncalibrated']['coverage_95']:.3f})"
    )
    s = report["survival"]
    ibs = s["integrated_brier"]
    print(
        f"survival ({s['patients']} patients, {s['events']} events): integrated Brier {ibs['model']:.4f} "
        f"(Kaplan-Meier reference {ibs['kaplan_meier_reference']:.4f})"
    )
    for year, c in s["calibration"].items():
        print(
            f"  {year}: mean predicted {c['mean_predicted']:.3f} vs observed {c['observed_km']:.3f}; "
            f"quintile calibration error mean {c['mean_abs_error']:.3f}, max {c['max_abs_error']:.3f}"
        )
    r = report["risk_6m"]
    if "unavailable" in r:
        print(f"worklist six-month risk: not checked ({r['unavailable']})")
    else:
        m, base = r["model"], r["baselines"]
        print(
            f"worklist six-month risk, forecast at {r['cut']} ({m['patients']} patients, {m['events']} events): "
            f"mean predicted {m['mean_predicted']:.3f} vs observed {m['observed_rate']:.3f}; Brier "
            f"{m['brier']:.4f} (base rate {base['base_rate']['brier']:.4f}); AUC {m['auc']:.3f} (regrowth "
            f"ratio {base['regrowth_ratio']['auc']:.3f})"
        )
        for b in m["bins"]:
            print(
                f"  predicted {b['bin']}: {b['patients']} patients, mean predicted {b['mean_predicted']:.3f}, "
                f"observed {b['observed']:.3f} (95% {b['observed_95ci'][0]:.3f}-{b['observed_95ci'][1]:.3f})"
            )
    print(f"caveat: {report['caveat']}")
    return 0


# --- users and audit (dashboard/cli/governance.py) ----------------------------


def cmd_users(args: argparse.Namespace) -> int:
    from dashboard.cli import governance as cli_governance

    try:
        return cli_governance.cmd_users(args, _db_path(args))
    except cli_governance.GovernanceCliError as exc:
        raise CliError(str(exc)) from None


def cmd_audit(args: argparse.Namespace) -> int:
    from dashboard.cli import governance as cli_governance

    return cli_governance.cmd_audit(args, _db_path(args))


def cmd_report(args: argparse.Namespace) -> int:
    from dashboard.cli import hospital as cli_hospital

    try:
        return cli_hospital.cmd_report(args, _db_path(args))
    except cli_hospital.HospitalCliError as exc:
        raise CliError(str(exc)) from None


def cmd_cohort(args: argparse.Namespace) -> int:
    from dashboard.cli import analytics as cli_analytics

    return cli_analytics.cmd_cohort(args, _db_path(args))


def cmd_worklist(args: argparse.Namespace) -> int:
    from dashboard.cli import analytics as cli_analytics

    return cli_analytics.cmd_worklist(args, _db_path(args))


def cmd_import(args: argparse.Namespace) -> int:
    from dashboard.cli import analytics as cli_analytics

    return cli_analytics.cmd_import(args, _db_path(args))


# --- parser -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oncolens",
        description="OncoLens: oncology imaging decision support (research use, not a medical device).",
    )
    parser.add_argument("--version", action="version", version=f"oncolens {oncolens_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, help_: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = add("demo", "build the synthetic demo clinic (deterministic) into a new store", cmd_demo)
    p.add_argument(
        "--patients", type=_whole_number, default=2000, help="number of patients (default 2000)"
    )
    _db_arg(p)
    p.add_argument(
        "--dicom-dir",
        type=Path,
        default=None,
        help="where to write the demo DICOM studies (default: <db name>_dicom beside the database)",
    )
    p.add_argument(
        "--images",
        type=_whole_number,
        default=24,
        help="patients whose studies are written as DICOM files (default 24; 0: none)",
    )
    p.add_argument("--seed", type=int, default=20261125, help="random seed (default 20261125)")
    p.add_argument("--force", action="store_true", help="replace an existing store at --db")
    p.add_argument(
        "--no-model",
        action="store_true",
        help="do not train the clinic's treatment model (about 10 s at 2000 patients on 2 cores); "
        "train it later with `oncolens recommend --train`",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")

    p = add("serve", "start the Streamlit app on localhost", cmd_serve)
    _db_arg(p)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument(
        "--address", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)"
    )
    p.add_argument(
        "--open",
        action="store_true",
        help="open the app in this machine's web browser once it is up (`make run` does)",
    )

    p = add(
        "ingest",
        "read DICOM files or folders (or a PACS) into the store and run the AI read",
        cmd_ingest,
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    _db_arg(p)
    from dashboard.cli import hospital as cli_hospital

    cli_hospital.add_ingest_arguments(p)

    p = add(
        "deidentify",
        "de-identify DICOM files (PS3.15 Annex E Basic Profile) into a folder",
        cmd_deidentify,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder: <pseudonym>/<study>/<instance>.dcm",
    )
    p.add_argument(
        "--key-file",
        type=Path,
        default=None,
        metavar="F",
        help="key for UIDs and pseudonyms (hex; created if missing; default: the store's "
        "<name>_deid.key beside --db, so UIDs match its ingested files)",
    )
    _db_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file, with the report")

    p = add("predict", "run an imaging model on DICOM files (folders are walked)", cmd_predict)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument(
        "--model",
        metavar="NAME",
        help="force a model (mammography, brain_mri); default: by modality",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image")

    p = add("explain", "saliency map of the AI read of one DICOM file", cmd_explain)
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument(
        "--method", choices=["integrated_gradients", "gradcam", "occlusion"], required=True
    )
    p.add_argument("--out", type=Path, metavar="FILE.png", help="the heat map over the image (PNG)")
    p.add_argument(
        "--out-npy",
        type=Path,
        metavar="FILE.npy",
        help="the raw signed attribution map at the image's rows x columns",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="class to explain, index or name (default: the predicted class)",
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="force a model (mammography, brain_mri); default: by modality",
    )
    p.add_argument(
        "--baseline",
        choices=["black", "blurred", "mean"],
        help="integrated_gradients: baseline image (default black)",
    )
    p.add_argument(
        "--steps", type=_whole_number, help="integrated_gradients: integration steps (default 32)"
    )
    p.add_argument("--json", action="store_true")

    p = add(
        "recommend",
        "treatment recommendation for one patient (or --train the clinic's model)",
        cmd_recommend,
    )
    p.add_argument("patient_id", nargs="?", metavar="PATIENT_ID")
    _db_arg(p)
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
        "--bootstrap", type=_whole_number, default=25, help="--train: bootstrap refits (default 25)"
    )
    p.add_argument("--seed", type=int, default=20_261_125, help="--train: seed (default 20261125)")
    p.add_argument("--json", action="store_true")

    p = add(
        "forecast",
        "progression forecast for one patient (survival per option, tumour-size trajectory)",
        cmd_forecast,
    )
    p.add_argument("patient_id", metavar="PATIENT_ID")
    _db_arg(p)
    p.add_argument("--json", action="store_true")

    p = add("cohort", "cohort size, survival and characteristics", cmd_cohort)
    p.add_argument("--filter", action="append", default=[], metavar='"FIELD OP VALUE"')
    p.add_argument("--group-by", metavar="FIELD")
    _db_arg(p)
    p.add_argument("--json", action="store_true")

    p = add(
        "worklist",
        "the care team's worklist ranked by six-month forecast risk (stored; --refresh "
        "recomputes it)",
        cmd_worklist,
    )
    _db_arg(p)
    p.add_argument(
        "--refresh",
        action="store_true",
        help="rank every eligible patient again first (about 5 minutes at a million patients)",
    )
    p.add_argument("--site", metavar="SITE", help="one treating clinic")
    p.add_argument("--progression", action="store_true", help="RECIST progression only")
    p.add_argument("--limit", type=_whole_number, default=25)
    p.add_argument("--offset", type=_whole_number, default=0)
    p.add_argument("--json", action="store_true")

    p = add("import", "import CSV, Parquet or FHIR R4 bundles into the store", cmd_import)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _db_arg(p)
    p.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where rejected and duplicate rows are listed (default: <store name>_imports beside the store)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per file")

    p = add("validate", "reproduce the validation figures of a model", cmd_validate)
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
    _db_arg(p)
    p.add_argument(
        "--folds",
        type=_whole_number,
        default=5,
        help="treatment and forecast targets: cross-validation folds",
    )
    p.add_argument(
        "--bootstrap",
        type=_whole_number,
        default=25,
        help="treatment targets: bootstrap refits per fold for the benefit intervals",
    )
    p.add_argument(
        "--n",
        type=_whole_number,
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
        type=_whole_number,
        default=100,
        help="subgroups: bootstrap resamples for the 95%% intervals of the gaps (default 100)",
    )
    p.add_argument("--json", action="store_true")

    p = add("report", "tumour-board report (PDF) for one patient", cmd_report)
    p.add_argument("patient_id", metavar="PATIENT_ID")
    _db_arg(p)
    p.add_argument("--out", type=Path, required=True, metavar="FILE.pdf")
    cli_hospital.add_report_arguments(p)

    from dashboard.cli import governance as cli_governance

    cli_governance.add_arguments(
        add("users", "manage local accounts (sign-in and roles)", cmd_users),
        add("audit", "verify the hash-chained audit trail", cmd_audit),
        _db_arg,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from analytics.store import StoreError

    try:
        return args.handler(args)
    except (CliError, StoreError) as exc:
        _say(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
