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
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_FAILED = 1
EXIT_NOT_AVAILABLE = 3

# What each pending command waits for, shown in its error message.
PENDING = {
    "explain": "the saliency issue (Captum explanations)",
    "recommend": "the treatment-personalisation issue",
    "forecast": "the progression-forecast issue",
    "cohort": "the analytics issue (cohort queries)",
    "import": "the analytics issue (CSV, Parquet and FHIR imports)",
    "validate": "the saliency, treatment and forecast issues",
    "report": "the hospital-connections issue (tumour-board report)",
    "users": "the governance issue (sign-in and roles)",
    "audit": "the governance issue (hash-chained audit trail)",
}


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
        summary = write_demo(db, patients=args.patients, seed=args.seed, force=args.force, progress=_say)
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
            images = write_demo_images(summary.path, dicom_dir, patients=args.images, seed=args.seed, progress=_say)
        except DemoError as exc:
            raise CliError(f"the clinic was written, but its demo images were not: {exc}") from exc
        result |= {
            "dicom_dir": str(images.dicom_dir),
            "images": len(images.images),
            "imaged_patients": [int(p) for p in images.all_person_ids],
            "images_s": round(images.seconds, 3),
        }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"Demo clinic with {summary.patients:,} patients written to {summary.path} "
            f"in {summary.simulate_s + summary.write_s:.1f} s."
        )
        if images is not None:
            example = f" (e.g. patient {images.person_ids[0]})" if images.person_ids else ""
            print(f"{len(images.images)} demo DICOM images of {len(images.all_person_ids)} patients in "
                  f"{images.dicom_dir}{example}.")  # fmt: skip
        print(f"Start the app with: oncolens serve --db {summary.path}")
    return 0


# --- serve --------------------------------------------------------------------


def streamlit_command(db: Path, port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line; security settings given explicitly so they hold anywhere."""
    app = Path(__file__).with_name("app.py")
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", "true",
        "--server.enableXsrfProtection", "true",
        "--server.maxUploadSize", "200",
        "--browser.gatherUsageStats", "false",
        "--theme.primaryColor", "#0f6e8c",
    ]  # fmt: skip


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
    cmd = streamlit_command(db.absolute(), args.port, args.address)
    env = dict(os.environ, ONCOLENS_DB=str(db.absolute()))
    project_root = Path(__file__).resolve().parents[1]
    if (project_root / ".streamlit" / "config.toml").exists():
        os.chdir(project_root)  # picks up the theme in .streamlit/config.toml
    shown = "localhost" if args.address in ("127.0.0.1", "localhost") else args.address
    _say(f"OncoLens on http://{shown}:{args.port} (store {db}); Ctrl+C stops it")
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)
    return 0  # not reached


# --- imaging: predict, ingest, validate imaging -------------------------------


def _model_loader():
    """Load each model once per command; a missing or altered model is an error per file, not a crash."""
    from models.registry import ModelUnavailableError, load_model

    cache: dict[str, object] = {}

    def load(name: str):
        if name not in cache:
            try:
                cache[name] = load_model(name)
            except ModelUnavailableError as exc:
                cache[name] = exc
        found = cache[name]
        if isinstance(found, Exception):
            raise found
        return found

    return load


def cmd_predict(args: argparse.Namespace) -> int:
    from models.inference import iter_dicom_paths, predict_file

    load = _model_loader()
    failed = 0
    seen = 0
    for path in iter_dicom_paths(args.paths):
        seen += 1
        result = predict_file(path, load, args.model)
        failed += "error" in result
        if args.json:
            print(json.dumps(result), flush=True)
        elif "error" in result:
            print(f"{result['file']}: error: {result['error']}", flush=True)
        else:
            probs = ", ".join(f"{k} {v:.2f}" for k, v in result["probabilities"].items())
            lesion = result["lesion"]
            size = (
                f"; lesion {lesion['longest_diameter_mm']:.1f} mm"
                if lesion and "longest_diameter_mm" in lesion
                else ""
            )
            print(f"{result['file']}: {result['label']} ({probs}){size} [{result['model']} "
                  f"{result['model_version']}, {result['latency_ms']:.0f} ms]", flush=True)
    if seen == 0:
        raise CliError("no files found under the given paths")
    if failed:
        _say(f"{failed} of {seen} file(s) could not be read by a model")
        return EXIT_FAILED
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from analytics.imaging_ingest import ingest_files
    from models.inference import iter_dicom_paths

    if args.dicomweb or args.study:
        raise CliError("--dicomweb arrives with the hospital-connections issue; ingest local files for now")
    if not args.paths:
        raise CliError("give DICOM files or folders to ingest")
    files = list(iter_dicom_paths(args.paths))
    if not files:
        raise CliError("no files found under the given paths")
    report = ingest_files(_db_path(args), files, _model_loader())
    for entry in report.stored:
        print(json.dumps(entry), flush=True)
    for entry in report.failed:
        print(json.dumps(entry), flush=True)
    _say(f"stored {len(report.stored)} image(s) in {_db_path(args)}; {len(report.failed)} failed")
    return EXIT_FAILED if report.failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    if args.target != "imaging":
        return cmd_pending(args)
    from models.registry import ModelUnavailableError, available_models, load_model
    from models.validate import validate_imaging

    names = available_models()
    if not names:
        raise CliError("no imaging model is installed; train one with `python -m models.train --task mammography`")
    results = {}
    for name in names:
        try:
            results[name] = validate_imaging(load_model(name), n=args.n, seed=args.seed)
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
            print(f"{name}: AUC {auc['value']:.3f} (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f}), "
                  f"ECE {r['ece']:.3f}, lesion Dice {dice['value']:.3f} "
                  f"({dice['ci_low']:.3f}-{dice['ci_high']:.3f}), n={r['n']} seed={r['seed']}")
    return EXIT_FAILED if any("error" in r for r in results.values()) else 0


# --- commands whose issues have not landed ------------------------------------


def cmd_pending(args: argparse.Namespace) -> int:
    name = args.command
    _say(f"`{name}` is not available yet: it arrives with {PENDING[name]}.")
    return EXIT_NOT_AVAILABLE


# --- parser -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oncolens",
        description="OncoLens: oncology imaging decision support (research use, not a medical device).",
    )
    parser.add_argument("--version", action="version", version=f"oncolens {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = add("demo", "build the synthetic demo clinic (deterministic) into a new store", cmd_demo)
    p.add_argument("--patients", type=_whole_number, default=2000, help="number of patients (default 2000)")
    _db_arg(p)
    p.add_argument("--dicom-dir", type=Path, default=None,
                   help="where to write the demo DICOM studies (default: <db name>_dicom beside the database)")
    p.add_argument("--images", type=_whole_number, default=24,
                   help="patients whose studies are written as DICOM files (default 24; 0: none)")
    p.add_argument("--seed", type=int, default=20261125, help="random seed (default 20261125)")
    p.add_argument("--force", action="store_true", help="replace an existing store at --db")
    p.add_argument("--json", action="store_true", help="print a JSON summary")

    p = add("serve", "start the Streamlit app on localhost", cmd_serve)
    _db_arg(p)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")

    p = add("ingest", "read DICOM files or folders (or a PACS) into the store and run the AI read", cmd_ingest)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    _db_arg(p)
    p.add_argument("--dicomweb", metavar="URL")
    p.add_argument("--study", metavar="UID")

    p = add("predict", "run an imaging model on DICOM files (folders are walked)", cmd_predict)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--model", metavar="NAME", help="force a model (mammography, brain_mri); default: by modality")
    p.add_argument("--json", action="store_true", help="one JSON object per image")

    p = add("explain", "saliency map of the AI read of one DICOM file", cmd_pending)
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--method", choices=["integrated_gradients", "gradcam", "occlusion"], required=True)
    p.add_argument("--out", type=Path, metavar="FILE.png")
    p.add_argument("--out-npy", type=Path, metavar="FILE.npy")
    p.add_argument("--json", action="store_true")

    for name, help_ in (
        ("recommend", "treatment recommendation for one patient"),
        ("forecast", "progression forecast for one patient"),
    ):
        p = add(name, help_, cmd_pending)
        p.add_argument("patient_id", metavar="PATIENT_ID")
        _db_arg(p)
        p.add_argument("--json", action="store_true")

    p = add("cohort", "cohort size, survival and characteristics", cmd_pending)
    p.add_argument("--filter", action="append", default=[], metavar='"FIELD OP VALUE"')
    p.add_argument("--group-by", metavar="FIELD")
    _db_arg(p)
    p.add_argument("--json", action="store_true")

    p = add("import", "import CSV, Parquet or FHIR R4 bundles into the store", cmd_pending)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _db_arg(p)

    p = add("validate", "reproduce the validation figures of a model", cmd_validate)
    p.add_argument("target", choices=["imaging", "saliency", "treatment", "gbsg2", "forecast", "treatment-csv"])
    p.add_argument("file", nargs="?", type=Path, metavar="FILE")
    p.add_argument("--treatment", metavar="COL")
    p.add_argument("--time", metavar="COL")
    p.add_argument("--event", metavar="COL")
    p.add_argument("--n", type=_whole_number, default=400, help="imaging: fresh held-out phantoms per model")
    p.add_argument("--seed", type=int, default=20_261_125, help="imaging: seed of the fresh phantom set")
    p.add_argument("--json", action="store_true")

    p = add("report", "tumour-board report (PDF) for one patient", cmd_pending)
    p.add_argument("patient_id", metavar="PATIENT_ID")
    _db_arg(p)
    p.add_argument("--out", type=Path, required=True, metavar="FILE.pdf")

    p = add("users", "manage local accounts", cmd_pending)
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("rest", nargs=argparse.REMAINDER)

    p = add("audit", "verify the audit trail", cmd_pending)
    p.add_argument("action", choices=["verify"])
    _db_arg(p)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("oncolens")
    except Exception:
        return "unknown"


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
