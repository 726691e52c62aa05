"""The ``oncolens`` command: batch work from the shell, on the same library code as the app.

This module only builds the parser from the command groups, dispatches, and
turns failures into one line on stderr. Each group module registers its own
commands with ``add_subparsers(subparsers)`` and ``set_defaults(func=...)``
(the layout of pydicom's ``cli``); what they share is in ``common``.

The subcommands and their JSON keys are a public interface (ARCHITECTURE.md).
Commands whose issue has not landed yet exist with their arguments and
``--help``, and exit with status 3 and a plain "not available yet" message, so
scripts written against the contract fail loudly instead of doing nothing.

Exit status: 0 success, 1 a failed input or operation (message on stderr),
2 a usage error (argparse), 3 not available yet.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence

from dashboard.cli import (
    analytics,
    clinic,
    forecast,
    governance,
    hospital,
    imaging,
    oversight,
    treatment,
    validate,
)
from dashboard.cli.common import EXIT_FAILED, CliError, SubParsers, say
from models.provenance import oncolens_version

# In the order ``oncolens --help`` lists their commands.
GROUPS: tuple[Callable[[SubParsers], None], ...] = (
    clinic.add_subparsers,  # demo, serve
    imaging.add_subparsers,  # ingest (files, or a PACS through hospital), deidentify, predict, explain
    treatment.add_subparsers,  # recommend
    forecast.add_subparsers,  # forecast
    analytics.add_subparsers,  # cohort, worklist, import
    validate.add_subparsers,  # validate TARGET
    hospital.add_subparsers,  # report
    governance.add_subparsers,  # users, audit
    oversight.add_subparsers,  # checklist, dossier, lineage, drift (issue 22)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oncolens",
        description="OncoLens: oncology imaging decision support (research use, not a medical device).",
    )
    parser.add_argument("--version", action="version", version=f"oncolens {oncolens_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_subparsers in GROUPS:
        add_subparsers(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # the command as typed, for the lineage a training writes into its model card (issue 22)
    args.command_line = shlex.join(["oncolens", *(sys.argv[1:] if argv is None else argv)])
    # lazy: `oncolens --help` never loads it (the store loads it anyway)
    import duckdb

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.store import StoreError

    try:
        return args.func(args)
    except (CliError, StoreError) as exc:
        say(f"error: {exc}")
        return EXIT_FAILED
    except (
        duckdb.Error
    ) as exc:  # a store altered by hand (a dropped table): one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        say(f"error: the store could not do this ({first}); check it with `oncolens audit verify`")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
