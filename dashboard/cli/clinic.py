"""``oncolens demo`` and ``oncolens serve``: build the synthetic demo clinic, start the app on it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dashboard.cli import analytics as cli_analytics
from dashboard.cli import governance as cli_governance
from dashboard.cli import progress as cli_progress
from dashboard.cli.common import (
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
        "demo",
        "build the synthetic demo clinic (deterministic) into a new store",
        cmd_demo,
    )
    p.add_argument(
        "--patients", type=whole_number, default=2000, help="number of patients (default 2000)"
    )
    db_arg(p)
    p.add_argument(
        "--dicom-dir",
        type=Path,
        default=None,
        help="where to write the demo DICOM studies (default: <db name>_dicom beside the database)",
    )
    p.add_argument(
        "--images",
        type=whole_number,
        default=24,
        help="patients whose studies are written as DICOM files (default 24; 0: none)",
    )
    p.add_argument(
        "--volumes",
        type=whole_number,
        default=0,
        help="patients of each kind (brain MR with metastases, thorax CT with nodules) whose studies "
        "are written as 3D DICOM series with their true masks, the brain MR series then read in 3D "
        "into the store (default 0; a few seconds per volume)",
    )
    p.add_argument(
        "--volumes-dir",
        type=Path,
        default=None,
        help="where to write the demo volumes (default: <db name>_volumes beside the database)",
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

    p = add_command(subparsers, "serve", "start the Streamlit app on localhost", cmd_serve)
    db_arg(p)
    p.add_argument("--port", type=int, default=8501)
    p.add_argument(
        "--address", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)"
    )
    p.add_argument(
        "--open",
        action="store_true",
        help="open the app in this machine's web browser once it is up (`make run` does)",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from sample_data.demo import (  # lazy: `oncolens --help` and the other commands never load it
        DemoError,
        write_demo,
    )

    db = db_path(args)
    try:
        summary = write_demo(
            db,
            patients=args.patients,
            seed=args.seed,
            force=args.force,
            progress=say,
            rank_worklist=False,
        )
    except DemoError as exc:
        raise CliError(str(exc)) from exc
    result: dict[str, Any] = {
        "db": str(summary.path),
        "patients": summary.patients,
        "seed": summary.seed,
        "rows": summary.rows,
        "simulate_s": round(summary.simulate_s, 3),
        "write_s": round(summary.write_s, 3),
    }
    images = None
    if args.images > 0:
        # lazy: `oncolens --help` and the other commands never load it
        from sample_data.demo_imaging import write_demo_images

        dicom_dir = args.dicom_dir or summary.path.with_name(f"{summary.path.stem}_dicom")
        try:
            images = write_demo_images(
                summary.path,
                dicom_dir,
                patients=args.images,
                seed=args.seed,
                progress=say,
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
    volumes, volume_reads = _demo_volumes(args, summary.path) if args.volumes > 0 else (None, None)
    if volumes is not None:
        result |= {
            "volumes_dir": str(volumes.volumes_dir),
            "volumes": len(volumes.studies),
            "volume_patients": [int(p) for p in volumes.person_ids],
            "volumes_s": round(volumes.seconds, 3),
            "volume_reads": volume_reads,
        }
    result["treatment_model"] = _demo_treatment_model(
        summary.path, train=not args.no_model, command=getattr(args, "command_line", None)
    )
    # after the model: its risk joins
    result["worklist"] = cli_analytics.refresh_worklist(summary.path)
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
        if volumes is not None:
            print(
                f"{len(volumes.studies)} demo volumes (3D DICOM series with true masks) of "
                f"{len(volumes.person_ids)} patients in {volumes.volumes_dir}; "
                f"{volume_reads['series_read']} brain MR series read in 3D into the store "
                f"({volume_reads['refused']} refused by the input guard)."
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


def _demo_volumes(args: argparse.Namespace, db: Path):
    """Brain MR and thorax CT volumes of ``args.volumes`` patients each (``--volumes``)."""
    from sample_data.demo import DemoError  # lazy: as in cmd_demo
    from sample_data.demo_volumes import write_demo_volumes  # lazy: nibabel, scipy on request only

    folder = args.volumes_dir or db.with_name(f"{db.stem}_volumes")
    try:
        written = write_demo_volumes(
            db, folder, patients=args.volumes, seed=args.seed, progress=say
        )
    except DemoError as exc:
        raise CliError(f"the clinic was written, but its demo volumes were not: {exc}") from exc
    return written, _ingest_demo_volumes(db, written)


def _ingest_demo_volumes(db: Path, written) -> dict:
    """The demo's brain MR series through ``oncolens ingest``'s own path (de-identified copies, the
    3D read, lesions tracked across time points, the AI measurement), so the Patient page's
    timeline shows 3D reads of a fresh demo. Only MR: no built-in 3D model reads CT (the CT series
    stay on disk for `oncolens ingest` with a registered CT bundle)."""
    # lazy: the ingest path (MONAI, the 3D bundle) only when volumes were asked for
    from analytics.imaging.ingest import ingest_files
    from models.inference.loader import ModelLoader  # lazy: as above

    files = [
        path
        for study in written.studies
        if study.modality == "MR"
        for path in sorted(study.folder.glob("*.dcm"))
    ]
    if not files:
        return {"series_read": 0, "refused": 0}
    say(f"reading {len({f.parent for f in files})} demo brain MR series in 3D into the store")
    report = ingest_files(db, files, ModelLoader(), actor="oncolens demo", source="demo", workers=1)
    read = [v for v in report.volumes if "note" not in v]
    return {
        "series_read": len(read),
        "refused": sum(bool(v.get("refused")) for v in read),
        "errors": [v["note"] for v in report.volumes if "note" in v]
        + [f["error"] for f in report.failed],
    }


def _demo_treatment_model(db: Path, *, train: bool, command: str | None = None) -> dict:
    """Train the new clinic's treatment model (or say why not); a previous store's model never stays.

    The model folder lies beside the store, so a store replaced with --force would
    otherwise keep a model trained on the clinic it replaced.
    """
    # lazy: time is imported only when this is used (start-up time)
    import time

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment.data import TreatmentDataError
    from analytics.treatment.model.files import (  # lazy: `oncolens --help` and the other commands never load it
        model_dir_for,
        model_paths,
    )

    folder = model_dir_for(db)
    stale = [path for path in model_paths(folder) if path.exists()]
    for path in stale:
        path.unlink()
    if stale:
        say(f"removed the replaced store's treatment model from {folder}")
    if not train:
        return {"skipped": f"--no-model (train it later: oncolens recommend --train --db {db})"}
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment.clinic import train_clinic_model

    say("training the clinic's treatment model (--no-model skips this)")
    start = time.perf_counter()
    try:
        trained = train_clinic_model(db, track=cli_progress.track, command=command)
    except TreatmentDataError as exc:
        say(f"no treatment model: {exc}")
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
        # Streamlit's own command line, after the sign-in page's imports and checks (issue 23)
        "dashboard.server",
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
        "--client.showErrorDetails",
        "none",  # fail closed: never a traceback in the browser (docs/security.md)
        "--theme.primaryColor",
        "#0f6e8c",
        # a served app never reloads its code: no file watcher polling the sources (issue 23)
        "--server.fileWatcherType",
        "none",
    ]


def cmd_serve(args: argparse.Namespace) -> int:
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it

    db = db_path(args)
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
    if args.address not in ("127.0.0.1", "localhost", "::1"):
        say(
            f"warning: --address {args.address} lets other machines reach OncoLens; patient data then "
            "crosses the network: put it behind HTTPS and your hospital's access control "
            "(docs/security.md)"
        )
    shown = "localhost" if args.address in ("127.0.0.1", "localhost") else args.address
    say(f"OncoLens on http://{shown}:{args.port} (store {db}); Ctrl+C stops it")
    if args.open and not open_browser:
        say("no web browser on this machine: open the address above in one")
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)
    return 0  # not reached
