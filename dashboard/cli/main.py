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
import os
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


def _older_store(db: object) -> str | None:
    """Why a read failed when the store predates this OncoLens: reading never migrates (a page or a
    report must not take the writer's lock), so a command that only reads an older store meets a
    missing column. Says so, and how to bring it forward, instead of DuckDB's binder error."""
    if not isinstance(db, str | os.PathLike):
        return None
    # lazy: the store's modules only on this error path
    from analytics.store import SCHEMA_VERSION, StoreError, open_store, schema_version

    try:
        with open_store(db, read_only=True, wait_s=2.0) as con:
            version = schema_version(con)
    except (StoreError, OSError):
        return None
    if version >= SCHEMA_VERSION:
        return None
    return (
        f"the store is at schema version {version}, older than this OncoLens ({SCHEMA_VERSION}), "
        "and reading never migrates it; any writing command brings it forward "
        "(for example `oncolens worklist --refresh`)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # the command as typed, for the lineage a training writes into its model card (issue 22)
    args.command_line = shlex.join(["oncolens", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except CliError as exc:
        say(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except BrokenPipeError:
        # the reader stopped (`oncolens cohort ... | head`): no traceback. Python would raise
        # again when it flushes stdout at exit, so stdout points at /dev/null from here on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        # The store's and DuckDB's errors, recognised without importing either: a command that
        # never opened a store (`predict` of a folder) must not pay a second of imports for its
        # error handling (issue 23); one that raised them has them loaded already.
        errors = sys.modules.get("analytics.store.errors")
        if errors is not None and isinstance(exc, errors.StoreError):
            say(f"error: {exc}")
            return EXIT_FAILED
        duckdb = sys.modules.get("duckdb")
        if duckdb is None or not isinstance(exc, duckdb.Error):
            raise
        # a store altered by hand (a dropped table): one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        older = _older_store(getattr(args, "db", None))
        if older:
            say(f"error: {older}")
        else:
            say(
                f"error: the store could not do this ({first}); check it with `oncolens audit verify`"
            )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
