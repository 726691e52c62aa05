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
    "ingest": "the imaging issue (DICOM reading and the AI read)",
    "predict": "the imaging issue (trained models)",
    "explain": "the saliency issue (Captum explanations)",
    "recommend": "the treatment-personalisation issue",
    "forecast": "the progression-forecast issue",
    "cohort": "the analytics issue (cohort queries)",
    "import": "the analytics issue (CSV, Parquet and FHIR imports)",
    "validate": "the imaging, saliency, treatment and forecast issues",
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
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"Demo clinic with {summary.patients:,} patients written to {summary.path} "
            f"in {summary.simulate_s + summary.write_s:.1f} s.\n"
            f"Start the app with: oncolens serve --db {summary.path}"
        )
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
    p.add_argument("--dicom-dir", type=Path, default=None, help="where to write the demo DICOM studies")
    p.add_argument("--seed", type=int, default=20261125, help="random seed (default 20261125)")
    p.add_argument("--force", action="store_true", help="replace an existing store at --db")
    p.add_argument("--json", action="store_true", help="print a JSON summary")

    p = add("serve", "start the Streamlit app on localhost", cmd_serve)
    _db_arg(p)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")

    p = add("ingest", "read DICOM files or folders (or a PACS) into the store and run the AI read", cmd_pending)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    _db_arg(p)
    p.add_argument("--dicomweb", metavar="URL")
    p.add_argument("--study", metavar="UID")

    p = add("predict", "run an imaging model on DICOM files", cmd_pending)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--model", metavar="NAME")
    p.add_argument("--json", action="store_true")

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

    p = add("validate", "reproduce the validation figures of a model", cmd_pending)
    p.add_argument("target", choices=["imaging", "saliency", "treatment", "gbsg2", "forecast", "treatment-csv"])
    p.add_argument("file", nargs="?", type=Path, metavar="FILE")
    p.add_argument("--treatment", metavar="COL")
    p.add_argument("--time", metavar="COL")
    p.add_argument("--event", metavar="COL")
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
