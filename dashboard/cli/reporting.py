"""``oncolens checklist`` and ``oncolens dossier``: a model's reporting checklists and its dossier PDF.

Both call ``dashboard.services.dossier``, as the Governance page does (issue 22, items 1-2).

- ``checklist MODEL [--db] [--json | --csv] [--missing]``: TRIPOD+AI (treatment, forecast) or CLAIM
  (imaging models), and DECIDE-AI, each item answered from the evidence or missing; ``--json``
  prints one object (counts and items), ``--csv`` one row per item, plain text a table.
- ``dossier MODEL --out FILE.pdf [--db] [--phantoms N] [--json]``: the dossier, written atomically
  and recorded in the audit trail.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboard.cli.common import (
    CliError,
    SubParsers,
    actor,
    add_command,
    db_arg,
    db_path,
    say,
    whole_number,
)


def add_subparsers(subparsers: SubParsers) -> None:
    p = add_command(
        subparsers,
        "checklist",
        "a model's reporting checklist (TRIPOD+AI, CLAIM, DECIDE-AI) filled from its card, validation "
        "runs and the store",
        cmd_checklist,
    )
    p.add_argument("model", metavar="MODEL", help="treatment, forecast or an imaging model's name")
    db_arg(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object: counts and every item")
    fmt.add_argument("--csv", action="store_true", help="one CSV row per item")
    p.add_argument("--missing", action="store_true", help="only the items that are missing")

    p = add_command(
        subparsers,
        "dossier",
        "a model's dossier as PDF: use, data, discrimination, calibration, subgroups, input guard, "
        "saliency, failure modes, checklist, versions and hashes, audit summary",
        cmd_dossier,
    )
    p.add_argument("model", metavar="MODEL", help="treatment, forecast or an imaging model's name")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.pdf")
    db_arg(p)
    p.add_argument(
        "--phantoms",
        type=whole_number,
        default=100,
        help="imaging models: fresh phantoms for the subgroup audit (default 100, about 10 s; 0 skips it)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary of what was written")


def _checklist(model: str, db: Path):
    # lazy: `oncolens --help` and the other commands never load it (torch, plotly)
    from dashboard.services import dossier

    if not db.exists():
        raise CliError(f"no store at {db}")
    try:
        return dossier.model_checklist(model, db)
    except dossier.UnknownModelError as exc:
        raise CliError(str(exc)) from None


def cmd_checklist(args: argparse.Namespace) -> int:
    result = _checklist(args.model, db_path(args))
    rows = result.rows(only_missing=args.missing)
    if args.json:
        print(json.dumps({**result.to_json(), "items": rows}))
    elif args.csv:
        sys.stdout.write(result.to_csv(only_missing=args.missing))
    else:
        for name, c in result.counts().items():
            print(f"{name}: {c['answered']} answered, {c['missing']} missing")
        for r in rows:
            detail = r["answer"] if r["status"] == "answered" else f"needs {r['needs']}"
            print(f"{r['checklist']} {r['item']:>5}  {r['status']:<8}  {r['text']}: {detail}")
    return 0


def cmd_dossier(args: argparse.Namespace) -> int:
    # lazy: `oncolens --help` and the other commands never load it (torch, plotly, fpdf)
    from dashboard.services import dossier

    db = db_path(args)
    if args.out.suffix.lower() != ".pdf":
        raise CliError(f"--out must name a .pdf file (got {args.out})")
    if not db.exists():
        raise CliError(f"no store at {db}")
    try:
        result = dossier.write_dossier(
            args.model, db, args.out, actor=actor(), role=None, phantoms=args.phantoms
        )
    except dossier.UnknownModelError as exc:
        raise CliError(f"{exc}; no dossier written") from None
    if args.json:
        print(json.dumps(result))
    else:
        counts = ", ".join(
            f"{k} {v['answered']}/{v['answered'] + v['missing']}"
            for k, v in result["checklist"].items()
        )
        say(
            f"wrote the dossier of {args.model} {result['version'] or ''} to {result['out']} "
            f"({result['bytes'] // 1024} KiB; checklist answered {counts}; figures by {result['renderer']})"
        )
    return 0
