"""``oncolens cohort``, ``worklist`` and ``import``: the analytics commands, on the same library code as the pages."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboard.cli.common import (
    EXIT_FAILED,
    SubParsers,
    actor,
    add_command,
    check_engine,
    db_arg,
    db_path,
    engine_args,
    say,
    whole_number,
)


def add_subparsers(subparsers: SubParsers) -> None:
    p = add_command(subparsers, "cohort", "cohort size, survival and characteristics", cmd_cohort)
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar='"FIELD OP VALUE"',
        help="a condition; all --filter conditions must hold",
    )
    which.add_argument(
        "--definition",
        type=Path,
        metavar="FILE.json",
        help='AND/OR groups: {"groups": [["age >= 50", "grade = 3"], ["her2_status = positive"]], '
        '"group_by": null} (conditions ANDed in a group, groups ORed)',
    )
    which.add_argument(
        "--saved", metavar="ID", help="a saved cohort's number (the page's ?cohort=ID); audited"
    )
    p.add_argument("--group-by", metavar="FIELD")
    p.add_argument(
        "--save", metavar="NAME", help="save the definition under NAME in the store (audited)"
    )
    db_arg(p)
    p.add_argument("--json", action="store_true")

    p = add_command(
        subparsers,
        "worklist",
        "the care team's worklist ranked by six-month forecast risk (stored; --refresh "
        "recomputes it)",
        cmd_worklist,
    )
    db_arg(p)
    p.add_argument(
        "--refresh",
        action="store_true",
        help="rank every eligible patient again first (about 5 minutes at a million patients)",
    )
    engine_args(p)  # where --refresh computes the forecast risks (docs/scaling.md)
    p.add_argument("--site", metavar="SITE", help="one treating clinic")
    p.add_argument("--progression", action="store_true", help="RECIST progression only")
    p.add_argument(
        "--bucket",
        choices=("act_now", "due", "by_risk"),
        help="one bucket: act_now (new since her last review), due (imaging overdue), by_risk",
    )
    p.add_argument(
        "--hide-reviewed",
        action="store_true",
        help="leave out patients reviewed since anything new arrived",
    )
    p.add_argument("--limit", type=whole_number, default=25)
    p.add_argument("--offset", type=whole_number, default=0)
    p.add_argument("--json", action="store_true")

    p = add_command(
        subparsers, "import", "import CSV, Parquet or FHIR R4 bundles into the store", cmd_import
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    db_arg(p)
    p.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where rejected and duplicate rows are listed (default: <store name>_imports beside the store)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per file")


def _definition(args: argparse.Namespace, con) -> tuple[object, object | None]:
    """The cohort definition the arguments name, and the saved cohort when it is one."""
    from analytics.cohorts import saved  # lazy: `oncolens --help` never loads analytics
    from analytics.cohorts.definition import (  # lazy: `oncolens --help` never loads analytics
        CohortDefinition,
        CohortError,
        as_definition,
    )

    if args.saved is not None:
        cohort = saved.get_saved(con, args.saved)
        return as_definition(cohort.definition, args.group_by), cohort
    if args.definition is not None:
        try:
            text = Path(args.definition).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CohortError(
                f"cannot read the definition file {args.definition}: {exc.strerror or exc}"
            ) from None
        return as_definition(CohortDefinition.from_json(text), args.group_by), None
    return CohortDefinition.from_filters(list(args.filter or []), args.group_by), None


def cmd_cohort(args: argparse.Namespace) -> int:
    """Build the cohort read-only and print it (JSON object with ``--json``, a short table otherwise).

    ``--definition`` reads AND/OR groups from a JSON file, ``--saved`` a saved cohort (an audited
    opening, like the page's link); ``--save NAME`` stores the definition (audited).
    """
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it
    from analytics.cohorts import saved  # lazy: `oncolens --help` never loads analytics
    from analytics.cohorts.builder import (  # lazy: `oncolens --help` and the other commands never load it
        CohortError,
        build_cohort,
    )

    db = db_path(args)
    saved_json = None
    try:
        with store.open_store(db, read_only=True) as con:
            definition, opened = _definition(args, con)
            result = build_cohort(con, definition)
        if isinstance(opened, saved.SavedCohort):
            saved.record_opened(db, opened, actor=actor(), role=None)
            saved_json = opened.to_json()
        if args.save is not None:
            stored = saved.save_cohort(db, args.save, result.definition, author=actor(), role=None)
            saved_json = stored.to_json()
            say(f"saved as cohort {stored.cohort_id}: open it with ?cohort={stored.cohort_id}")
    except CohortError as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        say(f"error: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps({**result.to_json(), "saved_cohort": saved_json}, allow_nan=False))
        return 0
    print(
        f"cohort: {result.definition.words()} — {result.n:,} patients, "
        f"{result.events:,} recurrences or deaths"
    )
    print(f"{'group':<22}{'patients':>10}{'events':>10}{'median RFS (years)':>20}")
    for g in result.groups:
        median = "not reached" if g.median_days is None else f"{g.median_days / 365.25:.1f}"
        print(f"{g.name:<22}{g.n:>10,}{g.events:>10,}{median:>20}")
    if result.logrank_p is not None:
        print(f"log-rank p = {result.logrank_p:.3g}; hazard ratios against {result.reference}:")
        for r in result.hazard_ratios.itertuples(index=False):
            print(f"  {r.group}: HR {r.hr:.2f} (95 % CI {r.lo:.2f}–{r.hi:.2f}), p = {r.p:.3g}")
        print(
            "groups were not randomised: hazard ratios describe the cohort, not treatment effects"
        )
    flagged = result.imbalanced(0.1)
    if len(flagged):
        print(
            "groups differ at baseline (Table 1 SMD > 0.1) in: "
            + ", ".join(
                f"{v} {'∞' if x == float('inf') else f'{x:.2f}'}"
                for v, x in zip(flagged["variable"], flagged["smd"], strict=True)
            )
        )
    for note in result.notes:
        print(f"note: {note}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import each file in its own transaction; one summary line per file, JSON objects with ``--json``."""
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.imports.tabular import import_files

    db = db_path(args)
    if not db.exists():
        from analytics import store  # lazy: `oncolens --help` and the other commands never load it

        raise store.MissingDatabaseError(
            f"no OncoLens database at {db}; create one with `oncolens demo --db {db}` first"
        )
    failed = False
    for report in import_files(db, list(args.files), args.report_dir, actor=actor()):
        failed |= report.error is not None or report.total("rejected") > 0
        if getattr(args, "json", False):
            print(json.dumps(report.to_json()), flush=True)
        print(
            f"oncolens: {report.summary()}",
            file=sys.stderr if args.json else sys.stdout,
            flush=True,
        )
    return EXIT_FAILED if failed else 0


def refresh_worklist(db: Path, args: argparse.Namespace | None = None) -> dict:
    """Rank the stored worklist of ``db`` in full, with the store's treatment model (one transaction).

    Used by ``oncolens demo`` (after training the model) and ``oncolens worklist --refresh``, whose
    ``--engine ray`` (``args``) computes the forecast risks as Ray tasks; this process writes.
    """
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.worklist import stored as worklist_store

    clinic = worklist_store.clinic_model(db)
    say(
        f"ranking the worklist by forecast risk ({'with' if clinic else 'no'} treatment model; "
        "about 5 minutes at a million patients)"
    )
    engine = getattr(args, "engine", "local") if args is not None else "local"
    if args is not None:
        check_engine(args)
    if engine == "ray":
        # lazy: Ray (and its start-up) only for --engine ray
        from dashboard.services import ray_jobs

        with ray_jobs.cluster(args.address, args.workers):  # type: ignore[union-attr]
            result = worklist_store.refresh_store(db, clinic, risk_map=ray_jobs.risk_map(db))
    else:
        result = worklist_store.refresh_store(db, clinic)
    return {
        "mode": result.mode,
        "entries": result.entries,
        "seconds": round(result.seconds, 3),
        "model_version": clinic.version if clinic else None,
    }


def cmd_worklist(args: argparse.Namespace) -> int:
    """Print one page of the stored worklist (``--refresh`` recomputes it first); JSON with ``--json``.

    A stale worklist is printed with the reasons (stderr, or ``stale_reasons``), not refused.
    """
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it

    # lazy: as above (the sign-off reads the model cards)
    from analytics.worklist import buckets as worklist_buckets

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.worklist import review as worklist_review

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.worklist import stored as worklist_store
    from dashboard.services import lifecycle  # lazy: as above

    db = db_path(args)
    refreshed = refresh_worklist(db, args) if args.refresh else None
    clinic = worklist_store.clinic_model(db)
    with store.open_store(db, read_only=True) as con:
        status = worklist_store.status(con, clinic.version if clinic else None)
    # the ethics board's sign-off, as the Worklist page applies it (issue 22)
    signoff = lifecycle.worklist_signoff_of(db, status.model_version)
    with store.open_store(db, read_only=True) as con:
        page = worklist_store.read_page(
            con,
            args.limit,
            args.offset,
            args.progression,
            args.site,
            hide_reviewed=args.hide_reviewed,
            bucket=args.bucket,
            signoff=signoff,
        )
        # new since each patient's last review; AI reads counted behind the same sign-off
        changes = worklist_review.with_changes(con, page.rows, signoff)
    if args.json:
        print(
            json.dumps(
                {
                    "fresh": status.fresh,
                    "stale_reasons": list(status.reasons),
                    "entries": status.entries,
                    "computed_at": None
                    if status.computed_at is None
                    else status.computed_at.isoformat(),
                    "model_version": status.model_version,
                    "signoff": {
                        "approval_required": signoff.required,
                        "approved_imaging_versions": signoff.approved_keys,
                        "risk_withheld": signoff.risk_withheld,
                        "by_risk_order": worklist_buckets.FALLBACK_ORDER
                        if signoff.risk_withheld
                        else "forecast risk",
                    },
                    "refreshed": refreshed,
                    "total": page.total,
                    "buckets": page.buckets,
                    "limit": page.limit,
                    "offset": page.offset,
                    "rows": _json_rows(changes),
                }
            )
        )
    else:
        if refreshed:
            print(
                f"worklist ranked: {refreshed['entries']:,} patients in {refreshed['seconds']:.1f} s"
            )
        for reason in status.reasons:
            say(f"stale: {reason} (refresh: oncolens worklist --refresh --db {db})")
        if signoff.risk_withheld:
            say(
                "forecast withheld (not approved by the ethics board): by risk is listed by "
                + worklist_buckets.FALLBACK_ORDER
            )
        if signoff.required:
            say(
                "AI reads of imaging versions not approved are withheld: approved: "
                + (", ".join(signoff.approved_keys) or "none")
            )
        counts = " · ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in page.buckets.items())
        print(f"{page.total:,} patients on the list: {counts}")
        print(f"{'#':>5}  {'bucket':<8}{'MRN':<13}{'risk 6m':>8}  {'assigned':<12}reason")
        for i, r in enumerate(changes.itertuples(index=False), start=page.offset + 1):
            risk = "–" if r.risk_6m != r.risk_6m else f"{r.risk_6m:.0%}"
            assignee = r.assignee if isinstance(r.assignee, str) and r.assignee else "–"
            print(f"{i:>5}  {r.bucket:<8}{r.mrn:<13}{risk:>8}  {assignee:<12}{r.reason}")
    return 0


def _json_rows(rows) -> list[dict]:
    """Rows as JSON objects: dates as YYYY-MM-DD, times in ISO 8601, missing values as null."""
    # lazy: `oncolens --help` and the other commands never load pandas
    import pandas as pd

    out = rows.copy()
    for column in out.columns:
        if (
            pd.api.types.is_datetime64_any_dtype(out[column])
            or out[column].map(lambda v: hasattr(v, "isoformat")).any()
        ):
            values = pd.to_datetime(out[column])
            midnight = values.dropna().eq(values.dropna().dt.normalize()).all()
            text = values.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%dT%H:%M:%S")
            out[column] = text.where(values.notna(), None)
    return json.loads(out.to_json(orient="records"))
