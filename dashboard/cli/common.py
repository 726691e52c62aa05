"""What every command group of ``oncolens`` shares: the failure, exit codes, ``--db``, messages.

Command modules import this and never ``main``, so ``main`` can import every
group without a cycle. A command fails by raising :class:`CliError`;
``main`` prints it as one line on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeAlias

EXIT_FAILED = 1
EXIT_USAGE = 2

Handler: TypeAlias = Callable[[argparse.Namespace], int]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A failure to report on stderr with exit status 1."""


def add_command(
    subparsers: SubParsers, name: str, help_: str, func: Handler
) -> argparse.ArgumentParser:
    """Register command ``name`` (its help doubles as its description) run by ``func(args)``."""
    p = subparsers.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=func)
    return p


def whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    return value


def db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help="DuckDB store (default: $ONCOLENS_DB or ~/.oncolens/oncolens.duckdb)",
    )


def db_path(args: argparse.Namespace) -> Path:
    """``--db``, else ``analytics.store.default_db_path()``'s answer (``$ONCOLENS_DB``, else
    ~/.oncolens/oncolens.duckdb), worked out here: importing the store package (DuckDB, pandas:
    about a second) only to learn a path cost every ``predict`` without a store (issue 23).
    tests/dashboard/cli/test_cli_imaging.py holds the two to the same answer."""
    if args.db:
        return Path(args.db).expanduser()
    env = os.environ.get("ONCOLENS_DB")
    return Path(env).expanduser() if env else Path.home() / ".oncolens" / "oncolens.duckdb"


def say(msg: str) -> None:
    """A message for the person at the terminal: stderr, prefixed ``oncolens:``."""
    print(f"oncolens: {msg}", file=sys.stderr, flush=True)


def print_json_lines(
    entries: Iterable[object], *, default: Callable[[Any], Any] | None = None
) -> None:
    """One JSON object per line on stdout, each flushed (scripts read results as they come)."""
    for entry in entries:
        print(json.dumps(entry, default=default), flush=True)


def actor() -> str:
    """Who ran the command, for the audit trail: ``cli:<login name>``, or ``cli`` without one."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in a container: still say it came from the CLI
        return "cli"


# --engine, --address and --workers: where a batch command runs (docs/scaling.md). ``predict`` and
# ``worklist --refresh`` take the same three options and mean the same by them: ``local`` (default)
# runs in worker processes on this machine, ``ray`` hands the same library functions to Ray tasks.


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
