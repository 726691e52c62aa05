"""What the ethics board reads from the command line: a model's checklist and dossier, its versions'
lineage, drift, and the sign-off status every output carries (issue 22).

``oncolens checklist`` and ``oncolens dossier``: a model's reporting checklists and its dossier PDF.

Both call ``dashboard.services.dossier``, as the Governance page does (issue 22, items 1-2).

- ``checklist MODEL [--db] [--json | --csv] [--missing]``: TRIPOD+AI (treatment, forecast) or CLAIM
  (imaging models), and DECIDE-AI, each item answered from the evidence or missing; ``--json``
  prints one object (counts and items), ``--csv`` one row per item, plain text a table.
- ``dossier MODEL --out FILE.pdf [--db] [--phantoms N] [--json]``: the dossier, written atomically
  and recorded in the audit trail.

``oncolens lineage`` and ``oncolens drift``: the model versions with their lineage, and drift.

Both print one JSON object per line with ``--json`` (per model version; per model and what is
monitored), from the same functions as the Governance page (``dashboard.services.lifecycle``).
``drift`` exits 0 when it could compute, alerts or not: an alert is a finding for the board, not
a failure of the command; ``--fail-on-alert`` makes it exit 1 for a scheduled check.

``approval_of`` and ``withhold`` give ``predict``, ``recommend`` and ``forecast`` their ``approval``
key and withhold an unapproved version's output when the admin requires approval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboard.cli.common import (
    EXIT_FAILED,
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
    _add_lifecycle(subparsers)
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


# --- lineage, drift and the sign-off of outputs (issue 22 items 3-5) ---


def _add_lifecycle(subparsers: SubParsers) -> None:
    p = add_command(
        subparsers,
        "lineage",
        "model versions: data, code and command each was trained with; its sign-off",
        cmd_lineage,
    )
    db_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per model version")
    p = add_command(
        subparsers,
        "drift",
        "drift of each model's inputs (and calibration) per time window against its validation",
        cmd_drift,
    )
    db_arg(p)
    p.add_argument(
        "--frequency",
        choices=["month", "quarter", "year"],
        default="month",
        help="window of the imaging inputs (default month)",
    )
    p.add_argument(
        "--patient-frequency",
        choices=["month", "quarter", "year"],
        default="year",
        help="window of the patients' covariates (default year)",
    )
    p.add_argument("--fail-on-alert", action="store_true", help="exit 1 when any alert fires")
    p.add_argument("--json", action="store_true", help="one JSON object per model and monitor")


def approval_of(db: Path, model_name: str, model_version: str | None) -> dict:
    """The ``approval`` key for one output (``dashboard.services.lifecycle.approval``).

    Without a store there is no sign-off to look up, and the answer is given here: the lookup's
    modules (pandas, the governance and treatment-model packages) cost ``oncolens predict`` about
    2 CPU-seconds of imports in its parent process otherwise (issue 23). The same dict as
    ``lifecycle.approval``'s (tests/dashboard/cli/test_cli_lifecycle.py compares them)."""
    if model_version is not None and not Path(db).expanduser().exists():
        return {
            "model": model_name,
            "model_version": model_version,
            "status": "unknown",
            "required": False,
            "withheld": False,
            "message": f"no store at {Path(db).expanduser()}: the ethics board's sign-off was not "
            "checked",
        }
    # lazy: `oncolens --help` and the other commands never load it
    from dashboard.services import lifecycle

    return lifecycle.approval(db, model_name, model_version)


def withhold(result: dict, status: dict, keep: tuple[str, ...]) -> tuple[dict, bool]:
    """``result`` with its ``approval``; when withheld, only ``keep`` keys, the approval and an
    ``error`` that says why (so the CLI counts it as a failed input and exits non-zero).

    Here and not in ``dashboard.services.lifecycle``: it needs none of that module's imports
    (pandas, scikit-learn: seconds that ``oncolens predict`` paid for a dict merge, issue 23)."""
    if not status.get("withheld"):
        return {**result, "approval": status}, False
    return (
        {
            **{k: result[k] for k in keep if k in result},
            "approval": status,
            "error": status.get("message") or "output withheld: model version not approved",
        },
        True,
    )


def cmd_lineage(args: argparse.Namespace) -> int:
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it
    from analytics.governance.lifecycle import (  # lazy: as above
        approvals,
    )
    from dashboard.services import lifecycle  # lazy: as above

    db = db_path(args)
    versions, usage = lifecycle.model_registry(db)
    counts = {(r.model_name, r.model_version): int(r.predictions) for r in usage.itertuples()}
    with store.open_store(db, read_only=True) as con:
        states = {
            (v.model_name, v.version): approvals.approval(
                con, v.model_name, v.version, v.version_id
            )
            for v in versions
        }
    for v in versions:
        status = states[(v.model_name, v.version)]
        row = {
            **v.to_json(),
            "predictions_in_trail": counts.get((v.model_name, v.version), 0),
            "approval": status.to_json(),
        }
        if args.json:
            print(json.dumps(row, default=str))
        else:
            print(
                f"{v.model_name} {v.version} [{v.short_id}] trained {v.trained_at or 'not recorded'}; "
                f"{row['predictions_in_trail']} prediction(s) in the trail; {status.status_text}"
                + (f"; not recorded: {', '.join(v.missing)}" if v.missing else "")
            )
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    # lazy: `oncolens --help` and the other commands never load it
    from dashboard.services import lifecycle

    db = db_path(args)
    reports, notes = lifecycle.drift(db, args.frequency, args.patient_frequency)
    alerts = 0
    for report in reports:
        alerts += len(report.alerts)
        if args.json:
            print(json.dumps(report.to_json(), default=str))
        else:
            print(
                f"{report.model} ({report.monitored}, per {report.frequency}): {report.tests_run} "
                f"test(s), {len(report.alerts)} alert(s); reference: {report.reference}"
            )
            for alert in report.alerts:
                print(f"  ALERT [{alert.test}; {alert.threshold}] {alert.message}")
            for note in report.notes:
                print(f"  note: {note}")
    for note in notes:
        say(note)
    say(f"{alerts} drift alert(s) over {len(reports)} monitor(s)")
    return EXIT_FAILED if (alerts and args.fail_on_alert) else 0
