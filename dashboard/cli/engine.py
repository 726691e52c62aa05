"""``--engine``, ``--address`` and ``--workers``: where a batch command runs (docs/scaling.md).

Why one module: ``predict`` and ``worklist refresh`` take the same three options and mean the
same by them. ``local`` (the default) runs on this machine, in worker processes, one per core;
``ray`` hands the same library functions to Ray tasks, on a local Ray cluster started for the
run or, with ``--address``, on an existing one. Ray is imported only when asked for, so every
other command starts as fast as before.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from dashboard.cli.common import CliError, whole_number


def engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: worker processes on this machine (default); ray: Ray tasks (docs/scaling.md)",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: an existing Ray cluster (e.g. ray://head:10001 or auto); "
        "default: a local cluster started for this run",
    )
    p.add_argument(
        "--workers",
        type=whole_number,
        metavar="N",
        help="worker processes (local) or Ray CPUs for a local cluster (default: one per core)",
    )


def check_engine(args: argparse.Namespace) -> None:
    """Refuse option combinations that would silently mean something else."""
    if args.address and args.engine != "ray":
        raise CliError("--address names a Ray cluster: use it with --engine ray")
    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be at least 1")


def read_many(files: list[Path], model: str | None, args: argparse.Namespace) -> Iterator[dict]:
    """``predict_file``'s result for every file, in order, on the engine the options name."""
    check_engine(args)
    if args.engine == "ray":
        # lazy: Ray (and its start-up) only for --engine ray
        from dashboard.services import ray_jobs

        return ray_jobs.predict_files(files, model, address=args.address, workers=args.workers)
    # lazy: `oncolens --help` and the other commands never load it
    from models.inference.batch import predict_files

    return predict_files(files, model, workers=args.workers)
