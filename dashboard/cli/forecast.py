"""``oncolens forecast`` and ``oncolens validate forecast``: one patient's progression forecast and
its held-out check."""

from __future__ import annotations

import argparse
import json

from dashboard.cli import oversight as cli_lifecycle
from dashboard.cli.common import (
    EXIT_FAILED,
    CliError,
    SubParsers,
    add_command,
    db_arg,
    db_path,
)
from dashboard.cli.treatment import treatment_errors


def add_subparsers(subparsers: SubParsers) -> None:
    p = add_command(
        subparsers,
        "forecast",
        "progression forecast for one patient (survival per option, tumour-size trajectory)",
        cmd_forecast,
    )
    p.add_argument("patient_id", metavar="PATIENT_ID")
    db_arg(p)
    p.add_argument("--json", action="store_true")


def cmd_forecast(args: argparse.Namespace) -> int:
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it
    from analytics.forecast.patient import (  # lazy: `oncolens --help` and the other commands never load it
        ForecastError,
        UnknownPatientError,
        patient_forecast,
    )

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment.clinic import load_clinic_model

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.treatment.model.files import TreatmentModelError

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.worklist.stored import prior_for

    try:
        person_id = int(args.patient_id)
    except ValueError:
        raise CliError(f"PATIENT_ID must be a whole number (got {args.patient_id!r})") from None
    db = db_path(args)
    with store.open_store(db, read_only=True) as con:
        known = con.execute(
            "SELECT count(*) FROM person WHERE person_id = ?", [person_id]
        ).fetchall()[0][0]
        if not known:
            raise CliError(f"no patient with id {person_id} in {db}")
        try:
            clinic = load_clinic_model(db, stack_refits=False)
        except TreatmentModelError:
            clinic = None  # the forecast says what this leaves out
        try:
            # the prior the worklist refresh stored, when current (else estimated here, 20-30 s)
            forecast = patient_forecast(con, person_id, prior_for(con)[0], clinic)
        except (ForecastError, UnknownPatientError) as exc:
            raise CliError(str(exc)) from exc
    # the survival curves' model version and its sign-off (issue 22); a forecast without a model
    # (tumour-size fit only) has no version to approve
    result, withheld = cli_lifecycle.withhold(
        forecast.to_json(),
        cli_lifecycle.approval_of(db, "forecast", forecast.model_version),
        ("patient_id", "model_version", "as_of"),
    )
    if args.json:
        print(json.dumps(result))
        return EXIT_FAILED if withheld else 0
    if withheld:
        raise CliError(result["error"])
    if result["approval"].get("message"):
        print(f"NOTE: {result['approval']['message']}")
    from dashboard.figures import formats  # lazy: pandas, which `oncolens --help` never loads

    tumour, info = result["tumour"], result["survival_info"]
    print(f"Patient {person_id}, as of {result['as_of']} ({result['caveat']})")
    if tumour["observed"]:
        last = tumour["observed"][-1]
        print(
            f"  lesion: {len(tumour['observed'])} reading(s), last {formats.mm(last['mm'])} on {last['date']}, "
            f"nadir {formats.mm(tumour['nadir_mm'])}; RECIST progression {tumour['progression_status'].replace('_', ' ')}"
            f"{' on ' + tumour['progression_date'] if tumour['progression_date'] else ''}"
        )
        if tumour["progression_probability_6m"] is not None:
            print(
                f"  probability that her last reading expected within 6 months meets progression: "
                f"{formats.pct(tumour['progression_probability_6m'])}"
            )
    for option, rows in result["survival"].items():
        end = rows[-1]
        print(
            f"  {option:16s} recurrence-free to day {end['day']:.0f}: {formats.pct(end['s'])} "
            f"(95 % {formats.pct_interval(end['lo'], end['hi'])}), given recurrence-free to day {rows[0]['day']:.0f}"
        )
    for note in [*tumour["notes"], *info["notes"]]:
        print(f"  note: {note}")
    return 0


def cmd_validate_forecast(args: argparse.Namespace) -> int:
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.forecast.validation import validate_forecast

    if args.folds < 2:
        raise CliError("--folds must be at least 2")
    errors: tuple[type[Exception], ...] = (ValueError, *treatment_errors())
    try:
        with store.open_store(db_path(args), read_only=True) as con:
            report = validate_forecast(con, seed=args.seed, folds=args.folds)
    except errors as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(report))
        return 0
    t = report["tumour"]["overall"]
    mae = t["mae_mm"]
    print(
        f"tumour size, held-out later readings ({t['readings']} readings, {t['patients']} patients): MAE "
        f"growth-inhibition {mae['tgi']:.2f} mm, last value {mae['locf']:.2f} mm, linear trend {mae['trend']:.2f} mm; "
        f"coverage 80% band {t['coverage_80']:.3f}, 95% band {t['coverage_95']:.3f} (recalibrated; raw bands "
        f"{t['uncalibrated']['coverage_80']:.3f}, {t['uncalibrated']['coverage_95']:.3f})"
    )
    s = report["survival"]
    ibs = s["integrated_brier"]
    print(
        f"survival ({s['patients']} patients, {s['events']} events): integrated Brier {ibs['model']:.4f} "
        f"(Kaplan-Meier reference {ibs['kaplan_meier_reference']:.4f})"
    )
    for year, c in s["calibration"].items():
        print(
            f"  {year}: mean predicted {c['mean_predicted']:.3f} vs observed {c['observed_km']:.3f}; "
            f"quintile calibration error mean {c['mean_abs_error']:.3f}, max {c['max_abs_error']:.3f}"
        )
    r = report["risk_6m"]
    if "unavailable" in r:
        print(f"worklist six-month risk: not checked ({r['unavailable']})")
    else:
        m, base = r["model"], r["baselines"]
        print(
            f"worklist six-month risk, forecast at {r['cut']} ({m['patients']} patients, {m['events']} events): "
            f"mean predicted {m['mean_predicted']:.3f} vs observed {m['observed_rate']:.3f}; Brier "
            f"{m['brier']:.4f} (base rate {base['base_rate']['brier']:.4f}); AUC {m['auc']:.3f} (regrowth "
            f"ratio {base['regrowth_ratio']['auc']:.3f})"
        )
        for b in m["bins"]:
            print(
                f"  predicted {b['bin']}: {b['patients']} patients, mean predicted {b['mean_predicted']:.3f}, "
                f"observed {b['observed']:.3f} (95% {b['observed_95ci'][0]:.3f}-{b['observed_95ci'][1]:.3f})"
            )
    print(f"caveat: {report['caveat']}")
    return 0
