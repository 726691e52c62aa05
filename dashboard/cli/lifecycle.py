"""``oncolens lineage`` and ``oncolens drift``: the model versions with their lineage, and drift.

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
from pathlib import Path

from dashboard.cli.common import EXIT_FAILED, SubParsers, add_command, db_arg, db_path, say


def add_subparsers(subparsers: SubParsers) -> None:
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
    """The ``approval`` key for one output (``dashboard.services.lifecycle.approval``)."""
    # lazy: `oncolens --help` and the other commands never load it
    from dashboard.services import lifecycle

    return lifecycle.approval(db, model_name, model_version)


def withhold(result: dict, status: dict, keep: tuple[str, ...]) -> tuple[dict, bool]:
    """``result`` with its approval, or only ``keep`` and an ``error`` when withheld."""
    # lazy: `oncolens --help` and the other commands never load it
    from dashboard.services import lifecycle

    return lifecycle.gate(result, status, keep)


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
            (v.model_name, v.version): approvals.approval(con, v.model_name, v.version)
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
                f"{row['predictions_in_trail']} prediction(s) in the trail; {status.status}"
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
