"""``oncolens ingest --dicomweb`` and ``oncolens report``: the hospital-connection commands.

``ingest`` itself is registered by ``imaging`` (files or a PACS, one command),
which adds these PACS arguments and hands a PACS ingest here. Credentials come
from the environment (``models.pacs.PacsConfig.resolve``), never from arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dashboard.cli.common import (
    CliError,
    SubParsers,
    actor,
    add_command,
    db_arg,
    db_path,
    print_json_lines,
)

if TYPE_CHECKING:
    from models.inference.loader import ModelLoader


def add_subparsers(subparsers: SubParsers) -> None:
    p = add_command(subparsers, "report", "tumour-board report (PDF) for one patient", cmd_report)
    p.add_argument("patient_id", metavar="PATIENT_ID")
    db_arg(p)
    p.add_argument("--out", type=Path, required=True, metavar="FILE.pdf")
    add_report_arguments(p)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "PACS (DICOMweb); credentials from $ONCOLENS_PACS_USER / $ONCOLENS_PACS_PASSWORD"
    )
    g.add_argument(
        "--dicomweb",
        metavar="URL",
        nargs="?",
        const="",
        help="DICOMweb root of the PACS (without URL: $ONCOLENS_PACS_URL)",
    )
    g.add_argument(
        "--study", metavar="UID", action="append", default=[], help="a study to pull (repeatable)"
    )
    g.add_argument(
        "--date-from", type=_date, metavar="YYYY-MM-DD", help="search: study date on or after"
    )
    g.add_argument(
        "--date-to", type=_date, metavar="YYYY-MM-DD", help="search: study date on or before"
    )
    g.add_argument("--modality", help="search: a modality in the study (MG, MR, ...)")
    g.add_argument("--accession", help="search: accession number")
    g.add_argument("--patient-id", help="search: the PACS's patient id")
    g.add_argument(
        "--send-results",
        action="store_true",
        help="store the AI read back on the PACS as a DICOM SEG and SR (STOW-RS)",
    )


def cmd_ingest_pacs(args: argparse.Namespace, db: Path, load: ModelLoader) -> int:
    from dashboard.services.pacs_ingest import (  # lazy: `oncolens --help` and the other commands never load it
        PacsIngestError,
        ingest_from_pacs,
    )
    from models import pacs  # lazy: `oncolens --help` and the other commands never load it

    if args.paths:
        raise CliError("give either DICOM files or --dicomweb, not both")
    try:
        config = pacs.PacsConfig.resolve(url=args.dicomweb or None)
        filters = {
            "date_from": args.date_from,
            "date_to": args.date_to,
            "modality": args.modality,
            "accession": args.accession,
            "patient_id": args.patient_id,
        }
        report = ingest_from_pacs(
            db,
            config,
            load,
            study_uids=args.study,
            filters=filters,
            send_results=args.send_results,
            actor=actor(),
        )
    except (pacs.PacsError, PacsIngestError) as exc:
        raise CliError(str(exc)) from None
    print_json_lines([*report.stored, *report.volumes, *report.failed], default=str)
    unsent = sum("send_error" in e for e in [*report.stored, *report.volumes])
    sent = sum("sent" in e for e in [*report.stored, *report.volumes])
    print(
        f"oncolens: pulled {len(report.studies)} study(ies) from {config.url}: stored {len(report.stored)} "
        f"image(s) in {db}; {len(report.failed)} failed"
        + (f"; {len(report.volumes)} series read in 3D" if report.volumes else "")
        + (f"; results sent for {sent}, not sent for {unsent}" if args.send_results else ""),
        file=sys.stderr,
        flush=True,
    )
    return 1 if report.failed or unsent else 0


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--include-names",
        action="store_true",
        help="print the patient's name, MRN, id and birth date (default: a pseudonymised report)",
    )
    p.add_argument(
        "--for-role",
        choices=("oncologist", "care_team", "ethics_board", "admin"),
        default="oncologist",
        help="who the report is for: only the oncologist's carries the treatment recommendation "
        "(default: oncologist)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary of what was written")


def cmd_report(args: argparse.Namespace) -> int:
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.patients import UnknownPatientError

    # lazy: `oncolens --help` and the other commands never load it
    from dashboard.services.report import write_report

    db = db_path(args)
    try:
        person_id = int(args.patient_id)
    except ValueError:
        raise CliError(f"PATIENT_ID must be a whole number (got {args.patient_id!r})") from None
    if args.out.suffix.lower() != ".pdf":
        raise CliError(f"--out must name a .pdf file (got {args.out})")
    try:
        result = write_report(
            db,
            person_id,
            args.out,
            include_names=args.include_names,
            actor=actor(),
            role=args.for_role,
        )
    except UnknownPatientError:
        raise CliError(f"no patient with id {person_id} in {db}; no report written") from None
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"oncolens: wrote the tumour-board report of patient {person_id} to {result['out']} "
            f"({result['bytes'] // 1024} KiB, {'with names' if args.include_names else 'pseudonymised'}, "
            f"figures by {result['renderer']})",
            file=sys.stderr,
        )
    return 0
