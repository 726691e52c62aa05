"""The Patient page's "Timeline and forecast" section: history, lesion trajectory, survival per option.

Everything comes from ``resources.patient_forecast`` (the same code as
``oncolens forecast --json``) and the page's record; the figure from
``patient_figures.patient_timeline_figure``. Each prediction is shown with its band and
the section says that it is decision support, not a medical device. When a
part cannot be computed the section says why and shows the rest.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.episodes import CareSetting, LineProgressionRisk
from analytics.forecast.patient import DISCLAIMER, ForecastError, PatientForecast
from analytics.forecast.survival import conditional_km
from analytics.patients import PatientSummary
from analytics.treatment.scope import Scope
from dashboard import resources
from dashboard.figures import formats
from dashboard.figures import patient as patient_figures
from dashboard.services import plain_language
from dashboard.services.report_data import without_other_options
from dashboard.session import auth, signoff, state, trail

MAX_STUDY_BUTTONS = 12
# The metric's (value, note under it): short enough for a third of a 1366 px screen (docs/experience.md).
STATUS_METRIC = {
    "observed": ("{date}", "measured"),
    "forecast": ("{date}", "forecast"),
    "not_within_horizon": ("none", "not forecast within two years"),
    "unavailable": ("n/a", "cannot be forecast"),
}


def _pct(p: float | None) -> str:
    """The one percentage format (``figures.formats``), so the metric and the sentence agree."""
    return formats.pct(p, missing="n/a")


def show(
    ref: resources.StoreRef,
    summary: PatientSummary,
    setting: CareSetting | None = None,
    scope: Scope | None = None,
) -> None:
    """Draw the section for one known patient.

    ``setting`` (``resources.care``): forecasts follow it. Early disease: recurrence-free survival;
    on a metastatic line: the lesion trajectory on that line and progression on it, and nothing
    that speaks of "recurrence" as if it had not happened.
    """
    person_id = summary.person_id
    st.subheader(
        "Timeline and forecast",
        help=plain_language.glossary_help("RECIST", "nadir", "Kaplan–Meier", "confidence interval"),
    )
    after_recurrence = setting is not None and (setting.metastatic or setting.recurred)
    st.caption(
        f"{DISCLAIMER} Lesion: growth-inhibition model f(t) = f0·(e^(−d·t) + e^(g·t) − 1) fitted to her "
        + ("measurements on her current line of therapy" if after_recurrence else "measurements")
        + " with the cohort's typical course as prior; bands are 80 % and 95 % intervals for a "
        "future measurement. "
        + (
            "Progression on this line: the clinic's observed progression-free survival of her "
            "subtype on the same line (Kaplan-Meier); recurrence-free survival no longer applies."
            if after_recurrence
            else "Survival per option is not drawn: the treatment model that gives it is outside "
            "its scope for her (Treatment options, above)."
            if scope is not None and not scope.in_scope
            else "Survival: the clinic's treatment model per option, given that she is "
            "recurrence-free today, ±1.96 bootstrap standard errors; treatment was not randomised."
        )
    )
    forecast: PatientForecast | None = None
    try:
        forecast = resources.patient_forecast(ref, person_id)
    except ForecastError as exc:
        st.info(f"No forecast: {exc}.")
    if forecast is not None and not resources.forecast_prior_stored(ref):
        st.caption(
            "The cohort's tumour-growth prior was estimated by the app for this view: none is "
            "stored for the records as they are now (the worklist refresh stores it, "
            "`oncolens worklist --refresh`)."
        )
    if forecast is not None and not signoff.gate(
        ref, "forecast", forecast.model_version, subject=person_id
    ):
        forecast = None  # withheld until the ethics board approves this version (admin setting)
    if forecast is not None and not auth.may_recommend():
        forecast = without_other_options(forecast)  # curves per option are the recommendation
    survival = forecast.survival if forecast is not None else None
    similar_km = None
    if survival is not None:
        similar_km = conditional_km(
            resources.similar_patients(ref, person_id).km, survival.from_day
        )
    fig = resources.figure(  # built once per inputs: a return to her page rebuilds nothing
        patient_figures.patient_forecast_timeline,
        summary,
        forecast,
        similar_km,
        survival_absent=patient_figures.survival_title_for(
            setting, None if scope is None else scope.in_scope
        ),
        as_of=None if setting is None else setting.as_of,
    )
    st.plotly_chart(fig)
    if forecast is not None:
        trail.shown(
            ref.path,
            "forecast_shown",
            subject=person_id,
            model_name="forecast",
            model_version=forecast.model_version,
            details={"as_of": forecast.as_of.isoformat()},
        )
        _figures(
            forecast,
            setting if after_recurrence else None,
            resources.line_risk(ref, person_id) if after_recurrence else None,
            out_of_scope=scope is not None and not scope.in_scope,
        )
    volume_reads(ref, person_id)
    _study_links(summary)


def _card_line(card: dict) -> str:
    """The 3D model card's headline figures in one sentence ("" when the card has none)."""
    metrics = card.get("metrics") or {}
    parts = []
    dice = metrics.get("dice") or {}
    if "value" in dice:
        parts.append(
            f"Dice {dice['value']:.2f} (95 % CI {dice.get('ci_low', float('nan')):.2f}"
            f"–{dice.get('ci_high', float('nan')):.2f})"
        )
    by_size = metrics.get("sensitivity_by_size") or {}
    if by_size:
        parts.append(
            "lesions found on held-out volumes: "
            + ", ".join(f"{k} {v.get('found')}/{v.get('lesions')}" for k, v in by_size.items())
        )
    return "; ".join(parts)


def volume_reads(ref: resources.StoreRef, person_id: int) -> None:
    """Her 3D reads (``analytics.imaging.volumes``): each lesion's volume over time, reads that found
    nothing and reads the input guard refused, with the model's card figures beside them."""
    reads, lesions = resources.volume_reads(ref, person_id)
    if reads.empty:
        return
    # the ethics board's sign-off of each 3D model version (a banner, or its reads left out)
    reads, lesions = signoff.gate_reads(ref, reads, lesions, subject=person_id)
    if reads.empty:
        return
    models = sorted(set(zip(reads["model_name"], reads["model_version"], strict=True)))
    cards = []
    for name, version in models:  # a card describes one version's weights: never another's reads
        card = resources.volume_model_card(name)
        if card and str(card.get("version")) != str(version):
            cards.append(
                f"{name} {version} is not the installed version ({card.get('version')}); "
                "its card's figures are not shown beside these reads"
            )
        else:
            cards.append(_card_line(card))
    st.caption(
        "**3D reads (AI, research use, not a medical device; the clinician decides).** "
        f"{', '.join(f'{n} {v}' for n, v in models)}: lesion volume and RECIST longest axial "
        "diameter from the 3D mask; lesions of different scans are linked by their position in the "
        "patient (docs/volumes.md). "
        + " ".join(f"Card: {c}." for c in cards if c)
        + " A read that found no lesion does not rule out a small metastasis."
    )
    st.plotly_chart(patient_figures.lesion_volumes_figure(reads, lesions))
    with st.expander(f"3D reads ({len(reads)})"):
        table = patient_figures.volume_reads_table(
            reads,
            (
                "study_date", "model_name", "model_version", "weights", "read", "probability",
                "lesions", "total_volume_ml", "input_check", "refused",
            ),
        )  # fmt: skip
        st.dataframe(formats.fill_missing(table), hide_index=True)


def _figures(
    forecast: PatientForecast,
    metastatic: CareSetting | None = None,
    line_risk: LineProgressionRisk | None = None,
    out_of_scope: bool = False,
) -> None:
    """``metastatic``: her setting when the disease has recurred or is metastatic (else None)."""
    tumour = forecast.tumour
    a, b, c = st.columns(3)
    when = tumour.progression_date.isoformat() if tumour.progression_date else ""
    value, note = STATUS_METRIC[tumour.progression_status]
    a.metric(
        "RECIST progression",
        value.format(date=when),
        delta=note,
        delta_color="off",
        delta_arrow="off",
        help=plain_language.glossary_help(
            "RECIST",
            "nadir",
            lead="≥20 % and ≥5 mm above the nadir; a "
            "forecast date is where the fitted curve crosses it",
        ),
    )
    b.metric(
        "P(progression) in 6 months",
        _pct(tumour.progression_probability_6m),
        help=plain_language.glossary_help(
            "RECIST",
            lead="Chance that her last lesion reading expected within "
            "six months (at her usual imaging interval) meets RECIST "
            "progression (parameter uncertainty and measurement noise)",
        ),
    )
    if metastatic is not None:
        c.metric(
            "Progression on this line in 6 months",
            _pct(None if line_risk is None else line_risk.risk_6m),
            help="Observed in this clinic's patients of her subtype on the same line (section "
            "'Course and lines of therapy'); recurrence-free survival no longer applies.",
        )
        _metastatic_summary(tumour, metastatic, line_risk)
        for note in tumour.notes:
            st.caption(f"Note: {note[0].upper()}{note[1:]}.")
        return
    c.metric(
        "P(recurrence) in 6 months",
        "out of scope" if out_of_scope else _pct(forecast.risk_recurrence_6m),
        help=plain_language.glossary_help(
            "RFS",
            lead=f"Under her first-line option ("
            f"{forecast.received_option or 'unknown'}), given recurrence-free "
            "today; from the clinic's treatment model",
        ),
    )
    if tumour.available:
        last = tumour.forecast.iloc[min(len(tumour.forecast) - 1, 13)]
        st.caption(
            f"In six months the lesion is forecast at {formats.mm(last['mm'])} (80 %: "
            f"{formats.interval(last['lo80'], last['hi80'], 1, 'mm', floor=0)}; 95 %: "
            f"{formats.interval(last['lo'], last['hi'], 1, 'mm', floor=0)}). Nadir "
            f"{formats.mm(tumour.nadir_mm)}, progression threshold {formats.mm(tumour.threshold_mm)}. Held-out error and "
            "band coverage: docs/validation.md, section Forecasts."
        )
    last_seen = tumour.observed.iloc[-1] if tumour.available and not tumour.observed.empty else None
    st.info(
        plain_language.forecast_summary(
            progression_6m=tumour.progression_probability_6m,
            recurrence_6m=forecast.risk_recurrence_6m,
            progression_date=tumour.progression_date.isoformat()
            if tumour.progression_status == "forecast"
            else None,
            progression_observed=tumour.progression_date.isoformat()
            if tumour.progression_status == "observed" and tumour.progression_date
            else None,
            last_mm=None if last_seen is None else float(last_seen["mm"]),
            forecast_mm=float(last["mm"]) if tumour.available else None,
            forecast_lo=float(last["lo80"]) if tumour.available else None,
            forecast_hi=float(last["hi80"]) if tumour.available else None,
            horizon="six months after the last measurement"
            if tumour.available
            else "in six months",
        ),
        icon=":material/record_voice_over:",
    )
    for note in [*tumour.notes, *forecast.notes]:
        st.caption(f"Note: {note[0].upper()}{note[1:]}.")


def _metastatic_summary(
    tumour, setting: CareSetting, line_risk: LineProgressionRisk | None
) -> None:
    """The forecast in words after a recurrence: never reassuring about a recurrence that happened."""
    when = (
        "was metastatic at diagnosis"
        if setting.de_novo
        else f"recurred on {setting.recurrence_date:%Y-%m-%d}"
        if setting.recurrence_date
        else "is metastatic"
    )
    parts = [f"Her disease {when}; recurrence-free survival no longer applies."]
    where = f"line {setting.line}" if setting.phase == "line" and setting.line else None
    if tumour.available and not tumour.observed.empty:
        last = tumour.observed.iloc[-1]
        ahead = tumour.forecast.iloc[min(len(tumour.forecast) - 1, 13)]
        parts.append(
            f"On {where or 'her current treatment'} the target lesion was last read at "
            f"{float(last['mm']):.0f} mm (nadir {tumour.nadir_mm:.0f} mm); the growth model expects about "
            f"{float(ahead['mm']):.0f} mm six months after that reading (80 %: {float(ahead['lo80']):.0f}"
            f"–{float(ahead['hi80']):.0f} mm)."
        )
        if tumour.progression_status == "observed":
            parts.append("Her readings already meet RECIST progression on this line.")
    if line_risk is not None and line_risk.risk_6m is not None:
        parts.append(
            f"Of this clinic's {line_risk.subtype} patients on {where or 'this line'} for as long as "
            f"she has been, {100 * line_risk.risk_6m:.0f} % progressed within the next six months."
        )
    parts.append("These are estimates to discuss, not a prognosis; the clinician decides with her.")
    st.warning(" ".join(parts), icon=":material/record_voice_over:")


def _study_links(summary: PatientSummary) -> None:
    studies = summary.imaging_studies
    if studies.empty:
        return
    recent = studies.sort_values("study_date").tail(MAX_STUDY_BUTTONS)
    with st.expander(f"Open an imaging study ({len(studies)} on record)"):
        cols = st.columns(4)
        for i, row in enumerate(recent.itertuples(index=False)):
            label = f"{pd.Timestamp(row.study_date):%Y-%m-%d} · {row.modality}"
            if cols[i % 4].button(label, key=f"oncolens.open_study.{row.study_uid}"):
                state.select_patient(summary.person_id)
                st.switch_page(
                    "app_pages/imaging.py",
                    query_params={
                        state.PATIENT_PARAM: str(summary.person_id),
                        "study": row.study_uid,
                    },
                )
