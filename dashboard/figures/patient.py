"""One patient's figures: the timeline with forecasts, lesion sizes under treatment, laboratory values.

Pure builders (data in, Plotly figure out, no Streamlit): the Patient page and the tumour-board
PDF call the same functions. Builders take the DataFrames that ``analytics`` returns (column
names as documented there) and never query the store. An empty input gives a figure that says
so instead of an error or a blank axis.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    LINE_SHADES,
    PALETTE,
    base_layout,
    colour_with_alpha,
    date_range,
    empty_figure,
)

LESION_CONCEPT = "lesion_longest_diameter"
# Lesion sizes read from images (the breast target lesion, brain metastases) are not laboratory values: a brain
# MRI read of 0 mm (no metastasis seen) drawn among the labs read as a measured value of 0 (issue 20).
LESION_CONCEPTS = (LESION_CONCEPT, "brain_lesion_longest_diameter")


LAB_LABELS = {
    "ca15_3": "CA 15-3",
    "haemoglobin": "Haemoglobin",
    "neutrophils": "Neutrophils",
    "brain_lesion_longest_diameter": "Brain metastasis, longest diameter",
}


def treatment_lines(treatments: pd.DataFrame, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """One span per line of therapy: line_of_therapy, label, start, end.

    A line runs from its first start to its last end; an ongoing exposure
    (no end date) runs to ``until`` (e.g. the last measurement), or to its
    start when nothing later is known.
    """
    columns = ["line_of_therapy", "label", "start", "end"]
    if treatments.empty:
        return pd.DataFrame(columns=columns)
    frame = treatments.copy()
    frame["start_date"] = pd.to_datetime(frame["start_date"])
    frame["end_date"] = pd.to_datetime(frame["end_date"])
    spans = []
    for line, part in frame.groupby("line_of_therapy", sort=True):
        start = part["start_date"].min()
        ends = part["end_date"].dropna()
        end = ends.max() if not ends.empty else start
        if part["end_date"].isna().any() and until is not None:
            end = max(end, pd.Timestamp(until))
        regimens = part["regimen"].dropna().unique() if "regimen" in part else []
        what = regimens[0] if len(regimens) else ", ".join(sorted(part["treatment_class"].unique()))
        spans.append(
            {
                "line_of_therapy": int(line),
                "label": f"Line {int(line)}: {what}",
                "start": start,
                "end": end,
            }
        )
    return pd.DataFrame(spans, columns=columns)


def lesion_size_figure(measurements: pd.DataFrame, treatments: pd.DataFrame) -> go.Figure:
    """Target-lesion longest diameter (mm) over time, treatment lines shaded behind it.

    The dotted line is the RECIST 1.1 progression threshold implied by the
    nadir so far: the larger of 1.2 x nadir and nadir + 5 mm.
    """
    title = "Target lesion, longest diameter"
    lesion = (
        measurements[measurements["concept"] == LESION_CONCEPT]
        if not measurements.empty
        else measurements
    )
    if lesion.empty:
        return empty_figure("No lesion measurements recorded", title)
    lesion = lesion.assign(measurement_date=pd.to_datetime(lesion["measurement_date"]))
    lesion = lesion.sort_values("measurement_date")
    fig = go.Figure()
    spans = treatment_lines(treatments, until=lesion["measurement_date"].max())
    for i, span in enumerate(spans.itertuples(index=False)):
        fig.add_vrect(
            x0=span.start,
            x1=span.end,
            fillcolor=LINE_SHADES[i % len(LINE_SHADES)],
            line_width=0,
            layer="below",
            annotation_text=span.label,
            annotation_position="top left",
            annotation_font={"size": 11, "color": "#40505a"},
        )
    fig.add_trace(
        go.Scatter(
            x=lesion["measurement_date"],
            y=lesion["value"],
            mode="lines+markers",
            name="longest diameter",
            line={"color": PALETTE[0], "width": 2},
            hovertemplate="%{x|%Y-%m-%d}: %{y:.1f} mm<extra></extra>",
        )
    )
    nadir = float(lesion["value"].min())
    threshold = max(1.2 * nadir, nadir + 5.0)
    fig.add_hline(
        y=threshold,
        line_dash="dot",
        line_color=PALETTE[5],
        annotation_text=f"progression threshold {threshold:.1f} mm (RECIST 1.1)",
        annotation_position="bottom right",
        annotation_font={"size": 11, "color": PALETTE[5]},
    )
    fig.update_yaxes(title_text="mm", rangemode="tozero")
    span = date_range([*lesion["measurement_date"], *spans["start"], *spans["end"]])
    fig.update_xaxes(title_text=None, range=span)
    return base_layout(fig, title)


def lab_values_figure(measurements: pd.DataFrame) -> go.Figure:
    """Every non-lesion measurement concept in its own row (own unit), on one shared time axis."""
    title = "Laboratory values"
    labs = (
        measurements[~measurements["concept"].isin(LESION_CONCEPTS)]
        if not measurements.empty
        else measurements
    )
    if labs.empty:
        return empty_figure("No laboratory values recorded", title)
    labs = labs.assign(measurement_date=pd.to_datetime(labs["measurement_date"]))
    concepts = sorted(labs["concept"].unique())
    fig = make_subplots(rows=len(concepts), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for row, concept in enumerate(concepts, start=1):
        part = labs[labs["concept"] == concept].sort_values("measurement_date")
        unit = str(part["unit"].iloc[0]) if "unit" in part and not part.empty else ""
        name = LAB_LABELS.get(concept, concept)
        fig.add_trace(
            go.Scatter(
                x=part["measurement_date"],
                y=part["value"],
                mode="lines+markers",
                name=name,
                line={"color": PALETTE[(row - 1) % len(PALETTE)]},
                marker={"size": 5},
                hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:.2f}} {unit}<extra>{name}</extra>",
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text=f"{name} ({unit})" if unit else name, row=row, col=1)
    fig.update_layout(showlegend=False)
    fig.update_xaxes(range=date_range(labs["measurement_date"]))
    return base_layout(fig, title, height=max(260, 170 * len(concepts)))


TIMELINE_LANES = ("Diagnosis", "Imaging", "Treatment", "Labs", "Events")


FORECAST_BAND_95 = "rgba(0,114,178,0.12)"


FORECAST_BAND_80 = "rgba(0,114,178,0.22)"


def _band(
    fig: go.Figure, x, lo, hi, colour: str, name: str, row: int, legendgroup: str, show: bool
) -> None:
    xs = list(pd.to_datetime(pd.Series(x)))
    fig.add_trace(
        go.Scatter(
            x=xs + xs[::-1],
            y=list(hi) + list(lo)[::-1],
            fill="toself",
            fillcolor=colour,
            line={"width": 0},
            hoverinfo="skip",
            name=name,
            legendgroup=legendgroup,
            showlegend=show,
        ),
        row=row,
        col=1,
    )


def patient_timeline_figure(
    *,
    diagnosis_date,
    today,
    treatments: pd.DataFrame,
    measurements: pd.DataFrame,
    imaging_studies: pd.DataFrame,
    outcome_events: pd.DataFrame,
    tumour_observed: pd.DataFrame | None = None,
    tumour_fitted: pd.DataFrame | None = None,
    tumour_forecast: pd.DataFrame | None = None,
    progression_date=None,
    progression_status: str | None = None,
    threshold_mm: float | None = None,
    survival: dict[str, pd.DataFrame] | None = None,
    similar_km: pd.DataFrame | None = None,
    survival_absent: str | None = None,
) -> go.Figure:
    """One time axis: swimlanes (diagnosis, imaging, treatment lines, labs, events), the target
    lesion with its fitted and forecast growth-inhibition curve and 80 %/95 % bands, and the
    recurrence-free survival forecast per option (days from diagnosis drawn as dates) below.

    Inputs are the Patient page's record (``analytics.patients.PatientSummary`` frames) and the
    forecast's frames (``analytics.forecast.patient.TumourForecast``: observed date, mm, progression,
    response; fitted date, mm; forecast date, mm, lo, hi, lo80, hi80; survival: per option a
    frame of day, s, lo, hi; ``similar_km``: Kaplan-Meier of similar patients, already restarted
    at the forecast's start). Any part may be missing: its panel says so. ``survival_absent``: why
    recurrence-free survival does not apply to her at all (her disease recurred, or she is outside the
    treatment model's scope); it then titles the survival row, which says it is not drawn, instead of
    a title promising a forecast "given recurrence-free today".
    """
    has_survival = bool(survival) and survival_absent is None
    rows = 3
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        row_heights=[0.24, 0.44, 0.32],
        subplot_titles=(
            "History",
            "Target lesion, longest diameter (mm)",
            survival_absent or "Recurrence-free survival forecast, given recurrence-free today",
        ),
    )
    lane_y = {lane: i for i, lane in enumerate(TIMELINE_LANES[::-1])}
    dx = pd.Timestamp(diagnosis_date) if diagnosis_date is not None else None
    # lane 1: diagnosis
    if dx is not None:
        fig.add_trace(
            go.Scatter(
                x=[dx],
                y=["Diagnosis"],
                mode="markers",
                name="diagnosis",
                marker={"symbol": "star", "size": 13, "color": PALETTE[7]},
                showlegend=False,
                hovertemplate="Diagnosis %{x|%Y-%m-%d}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    # imaging studies
    if imaging_studies is not None and not imaging_studies.empty:
        st_dates = pd.to_datetime(imaging_studies["study_date"])
        mm = imaging_studies.get(
            "lesion_longest_diameter_mm", pd.Series([None] * len(imaging_studies))
        )
        text = [
            f"{m} · {d or ''}" + (f" · lesion {v:.1f} mm" if pd.notna(v) else "")
            for m, d, v in zip(
                imaging_studies["modality"], imaging_studies["description"], mm, strict=True
            )
        ]
        fig.add_trace(
            go.Scatter(
                x=st_dates,
                y=["Imaging"] * len(st_dates),
                mode="markers",
                name="imaging study",
                marker={"symbol": "square", "size": 9, "color": PALETTE[4]},
                showlegend=False,
                customdata=imaging_studies["study_uid"],
                text=text,
                hovertemplate="%{x|%Y-%m-%d} %{text}<extra>imaging</extra>",
            ),
            row=1,
            col=1,
        )
    # treatment lines as spans
    spans = treatment_lines(treatments, until=pd.Timestamp(today) if today is not None else None)
    for i, span in enumerate(spans.itertuples(index=False)):
        colour = PALETTE[(i + 1) % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=[span.start, span.end],
                y=["Treatment", "Treatment"],
                mode="lines+markers",
                line={"color": colour, "width": 12},
                marker={"size": 4},
                name=span.label,
                showlegend=False,
                hovertemplate=f"{span.label}<br>{span.start:%Y-%m-%d} to {span.end:%Y-%m-%d}"
                "<extra></extra>",
            ),
            row=1,
            col=1,
        )
    # labs: one marker per date, every value of that date in the hover
    labs = (
        measurements[~measurements["concept"].isin(LESION_CONCEPTS)]
        if not measurements.empty
        else measurements
    )
    if not labs.empty:
        labs = labs.assign(measurement_date=pd.to_datetime(labs["measurement_date"]))
        hover = labs.assign(
            line=[
                f"{LAB_LABELS.get(c, c)} {v:g} {u}"
                for c, v, u in zip(labs["concept"], labs["value"], labs["unit"], strict=True)
            ]
        )
        by_day = hover.groupby("measurement_date")["line"].agg("<br>".join).reset_index()
        fig.add_trace(
            go.Scatter(
                x=by_day["measurement_date"],
                y=["Labs"] * len(by_day),
                mode="markers",
                marker={"symbol": "circle", "size": 7, "color": PALETTE[2]},
                showlegend=False,
                text=by_day["line"],
                name="labs",
                hovertemplate="%{x|%Y-%m-%d}<br>%{text}<extra>labs</extra>",
            ),
            row=1,
            col=1,
        )
    if outcome_events is not None and not outcome_events.empty:
        fig.add_trace(
            go.Scatter(
                x=pd.to_datetime(outcome_events["event_date"]),
                y=["Events"] * len(outcome_events),
                mode="markers+text",
                text=list(outcome_events["event_type"]),
                textposition="top center",
                marker={"symbol": "x", "size": 11, "color": PALETTE[5]},
                showlegend=False,
                hovertemplate="%{text} %{x|%Y-%m-%d}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.update_yaxes(
        categoryorder="array", categoryarray=list(lane_y), type="category", row=1, col=1
    )

    # lesion row
    if tumour_observed is not None and not tumour_observed.empty:
        obs = tumour_observed.assign(date=pd.to_datetime(tumour_observed["date"]))
        fig.add_trace(
            go.Scatter(
                x=obs["date"],
                y=obs["mm"],
                mode="markers",
                name="measured",
                marker={"color": PALETTE[0], "size": 8},
                legendgroup="lesion",
                hovertemplate="%{x|%Y-%m-%d}: %{y:.1f} mm measured<extra></extra>",
            ),
            row=2,
            col=1,
        )
        for flag, symbol, colour, label in (
            ("response", "triangle-down", PALETTE[2], "RECIST response (≥30 % below baseline)"),
            (
                "progression",
                "triangle-up",
                PALETTE[5],
                "RECIST progression (≥20 % and ≥5 mm over nadir)",
            ),
        ):
            marked = obs[obs[flag].astype(bool)] if flag in obs else obs.iloc[0:0]
            if not marked.empty:
                fig.add_trace(
                    go.Scatter(
                        x=marked["date"],
                        y=marked["mm"],
                        mode="markers",
                        name=label,
                        marker={
                            "symbol": symbol,
                            "size": 13,
                            "color": colour,
                            "line": {"width": 1, "color": "white"},
                        },
                        hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:.1f}} mm, {label}<extra></extra>",
                    ),
                    row=2,
                    col=1,
                )
    if tumour_fitted is not None and not tumour_fitted.empty:
        fig.add_trace(
            go.Scatter(
                x=pd.to_datetime(tumour_fitted["date"]),
                y=tumour_fitted["mm"],
                mode="lines",
                name="fitted (growth-inhibition model)",
                line={"color": PALETTE[0], "width": 2},
                hovertemplate="%{x|%Y-%m-%d}: %{y:.1f} mm fitted<extra></extra>",
            ),
            row=2,
            col=1,
        )
    if tumour_forecast is not None and not tumour_forecast.empty:
        fc = tumour_forecast.assign(date=pd.to_datetime(tumour_forecast["date"]))
        _band(
            fig,
            fc["date"],
            fc["lo"],
            fc["hi"],
            FORECAST_BAND_95,
            "95 % band (next measurement)",
            2,
            "band95",
            True,
        )
        _band(
            fig,
            fc["date"],
            fc["lo80"],
            fc["hi80"],
            FORECAST_BAND_80,
            "80 % band",
            2,
            "band80",
            True,
        )
        fig.add_trace(
            go.Scatter(
                x=fc["date"],
                y=fc["mm"],
                mode="lines",
                name="forecast",
                line={"color": PALETTE[0], "width": 2, "dash": "dash"},
                customdata=fc[["lo80", "hi80", "lo", "hi"]].to_numpy(),
                hovertemplate="%{x|%Y-%m-%d}: %{y:.1f} mm forecast<br>80 %: %{customdata[0]:.1f}–%{customdata[1]:.1f} mm"
                "<br>95 %: %{customdata[2]:.1f}–%{customdata[3]:.1f} mm<extra></extra>",
            ),
            row=2,
            col=1,
        )
    if threshold_mm is not None:
        xs = [x for x in (dx, pd.Timestamp(today) if today is not None else None) if x is not None]
        if tumour_forecast is not None and not tumour_forecast.empty:
            xs.append(pd.to_datetime(tumour_forecast["date"]).max())
        if tumour_observed is not None and not tumour_observed.empty:
            xs.append(pd.to_datetime(tumour_observed["date"]).min())
        if xs:
            fig.add_trace(
                go.Scatter(
                    x=[min(xs), max(xs)],
                    y=[threshold_mm, threshold_mm],
                    mode="lines",
                    line={"color": PALETTE[5], "dash": "dot", "width": 1},
                    name=f"progression threshold {threshold_mm:.1f} mm",
                    hovertemplate=f"RECIST 1.1 progression threshold {threshold_mm:.1f} mm<extra></extra>",
                ),
                row=2,
                col=1,
            )
    if progression_date is not None and progression_status == "forecast":
        fig.add_trace(
            go.Scatter(
                x=[pd.Timestamp(progression_date)],
                y=[threshold_mm],
                mode="markers",
                marker={"symbol": "diamond", "size": 13, "color": PALETTE[5]},
                name="forecast progression date",
                hovertemplate="Forecast RECIST progression %{x|%Y-%m-%d}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    if tumour_observed is None or tumour_observed.empty:
        fig.add_annotation(
            text="No usable lesion measurements",
            x=0.5,
            y=0.5,
            xref="x2 domain",
            yref="y2 domain",
            showarrow=False,
            font={"color": "#5f6b73"},
        )
    fig.update_yaxes(title_text="mm", rangemode="tozero", row=2, col=1)

    # survival row
    if has_survival and dx is not None:
        for i, (option, frame) in enumerate(survival.items()):
            colour = PALETTE[i % len(PALETTE)]
            dates = dx + pd.to_timedelta(frame["day"], unit="D")
            _band(
                fig,
                dates,
                frame["lo"],
                frame["hi"],
                colour_with_alpha(colour, 0.12),
                f"{option} 95 %",
                3,
                f"surv-{option}",
                False,
            )
            fig.add_trace(
                go.Scatter(
                    x=dates,
                    y=frame["s"],
                    mode="lines",
                    name=f"{option} (model)",
                    line={"color": colour, "width": 2},
                    legendgroup=f"surv-{option}",
                    customdata=frame[["day", "lo", "hi"]].to_numpy(),
                    hovertemplate=f"{option}<br>%{{x|%Y-%m-%d}} (day %{{customdata[0]:.0f}}): %{{y:.1%}} recurrence-free"
                    "<br>95 %: %{customdata[1]:.1%}–%{customdata[2]:.1%}<extra></extra>",
                ),
                row=3,
                col=1,
            )
        if similar_km is not None and not similar_km.empty:
            for i, (group, part) in enumerate(similar_km.groupby("group", sort=False)):
                dates = dx + pd.to_timedelta(part["time_days"], unit="D")
                fig.add_trace(
                    go.Scatter(
                        x=dates,
                        y=part["survival"],
                        mode="lines",
                        name=f"similar patients, {group} (KM)",
                        line={
                            "color": PALETTE[(i + 4) % len(PALETTE)],
                            "width": 1,
                            "dash": "dot",
                            "shape": "hv",
                        },
                        hovertemplate=f"similar patients, {group}<br>%{{x|%Y-%m-%d}}: %{{y:.1%}} (Kaplan–Meier)<extra></extra>",
                    ),
                    row=3,
                    col=1,
                )
    else:
        fig.add_annotation(
            name="survival_note",
            text="Not drawn: it does not apply to her"
            if survival_absent
            else "No survival forecast (see the notes below)",
            x=0.5,  # placed clear of the "today" line once the axis range is known (below)
            xanchor="center",
            y=0.5,
            xref="x3 domain",
            yref="y3 domain",
            showarrow=False,
            font={"color": "#5f6b73"},
        )
    fig.update_yaxes(title_text="recurrence-free", range=[0, 1.02], tickformat=".0%", row=3, col=1)
    fig.update_layout(
        hovermode="closest",
        legend={"orientation": "h", "y": -0.08, "yanchor": "top", "x": 0.0, "xanchor": "left"},
    )
    # The axis spans what is drawn (her own course and its forecast), never an annotation's default position.
    span = date_range(
        [today, *(x for trace in fig.data for x in (trace.x if trace.x is not None else ()))]
    )
    if span is not None:
        fig.update_xaxes(range=span, autorange=False)
        if today is not None:  # the survival row's note in the middle of the wider side of "today"
            start, end = (pd.Timestamp(x) for x in span)
            at = (pd.Timestamp(today) - start) / (end - start) if end > start else 0.5
            fig.update_annotations(
                {"x": (at + 1) / 2 if at < 0.5 else at / 2},
                selector={"name": "survival_note"},
            )
        # Plotly draws no subplot without a trace (the survival row of a patient who recurred vanished, its
        # note and the date axis with it): an invisible point keeps each row and its axis on screen.
        drawn = {trace.yaxis or "y" for trace in fig.data}
        for row, axis in ((2, "y2"), (3, "y3")):
            if axis not in drawn:
                fig.add_trace(
                    go.Scatter(
                        x=span,
                        y=[0, 0],
                        mode="markers",
                        marker={"opacity": 0},
                        hoverinfo="skip",
                        showlegend=False,
                    ),
                    row=row,
                    col=1,
                )
    if today is not None:
        today_ts = pd.Timestamp(today)
        for row in range(1, rows + 1):
            fig.add_vline(
                x=today_ts, line={"color": "#40505a", "dash": "dash", "width": 1}, row=row, col=1
            )
        fig.add_annotation(
            x=today_ts,
            y=1.0,
            xref="x",
            yref="paper",
            text=f"today {today_ts:%Y-%m-%d}",
            showarrow=False,
            yanchor="bottom",
            font={"size": 11, "color": "#40505a"},
        )
    # subplot titles on the left, clear of the "today" label (today is always at the right of her history)
    for annotation in fig.layout.annotations[:3]:
        annotation.update(x=0.0, xanchor="left", font={"size": 13, "color": "#40505a"})
    fig = base_layout(fig, "Timeline and forecast", height=820)
    # The legend under the plot, with a bottom margin for its three or four rows (it was cut at the edge).
    fig.update_layout(
        legend={"orientation": "h", "y": -0.07, "yanchor": "top", "x": 0.0, "xanchor": "left"},
        margin={"l": 10, "r": 10, "t": 80, "b": 140},
        height=940,
    )
    return fig


def patient_forecast_timeline(
    summary,
    forecast,
    similar_km: pd.DataFrame | None = None,
    survival_absent: str | None = None,
    as_of=None,
) -> go.Figure:
    """``patient_timeline_figure`` of a ``PatientSummary`` and its ``PatientForecast`` (or None).

    One place that unpacks a forecast into the timeline, so the Patient page and the
    tumour-board report draw the same figure (``survival_title_for`` gives both the same
    ``survival_absent``).
    """
    tumour = forecast.tumour if forecast is not None else None
    survival = forecast.survival if forecast is not None else None
    return patient_timeline_figure(
        diagnosis_date=summary.diagnosis.diagnosis_date if summary.diagnosis is not None else None,
        # without a forecast, "today" is still her record's day (``as_of``: her care setting's), so an
        # ongoing line of therapy runs to it instead of shrinking to a dot at its start
        today=forecast.as_of if forecast is not None else as_of,
        treatments=summary.treatments,
        measurements=summary.measurements,
        imaging_studies=summary.imaging_studies,
        outcome_events=summary.outcome_events,
        tumour_observed=None if tumour is None else tumour.observed,
        tumour_fitted=None if tumour is None else tumour.fitted,
        tumour_forecast=None if tumour is None else tumour.forecast,
        progression_date=None if tumour is None else tumour.progression_date,
        progression_status=None if tumour is None else tumour.progression_status,
        threshold_mm=None if tumour is None else tumour.threshold_mm,
        survival=None if survival is None else survival.curves,
        similar_km=similar_km,
        survival_absent=survival_absent,
    )


def survival_title_for(setting, in_scope: bool | None = None) -> str | None:
    """The survival row's title when recurrence-free survival does not apply to her, else None.

    ``setting``: her ``analytics.episodes.CareSetting`` (or None); ``in_scope``: the treatment
    model's scope decision (``analytics.treatment.scope``), None when not known.
    """
    if setting is not None and (setting.metastatic or setting.recurred):
        what = "was metastatic at diagnosis" if setting.de_novo else "recurred"
        return f"Recurrence-free survival: no longer applies (her disease {what})"
    if in_scope is False:
        return "Recurrence-free survival per option: outside the treatment model's scope"
    return None


def lesion_volumes_figure(reads: pd.DataFrame, lesions: pd.DataFrame) -> go.Figure:
    """Each lesion's volume (mL) over time from the 3D reads, one line per tracked lesion, with
    every read shown: lesions found (hover: diameter, probability, how the lesion was linked),
    reads that found none (open circles at 0: "none found", not "0 mL") and reads the input guard
    refused (crosses at 0, hover: why). Frames of ``analytics.imaging.volumes``
    (``patient_volume_reads``, ``patient_volume_lesions``)."""
    title = "Brain metastases in 3D: volume per lesion (AI)"
    if reads is None or reads.empty:
        return empty_figure("No 3D reads of this patient's series", title)
    fig = go.Figure()
    found = lesions.assign(study_date=pd.to_datetime(lesions["study_date"]))
    for i, ((model, track), part) in enumerate(found.groupby(["model_name", "track_id"])):
        part = part.sort_values("study_date")
        hover = [
            f"{d:.1f} mm longest axial diameter · p {p:.2f}<br>{link}<br>{model} {v}"
            for d, p, link, v in zip(
                part["longest_axial_diameter_mm"],
                part["probability"].fillna(float("nan")),
                part["link"],
                part["model_version"],
                strict=True,
            )
        ]
        fig.add_trace(
            go.Scatter(
                x=part["study_date"],
                y=part["volume_ml"],
                mode="lines+markers",
                name=f"lesion {int(track)}"
                + ("" if found.model_name.nunique() == 1 else f" ({model})"),
                line={"color": PALETTE[i % len(PALETTE)], "width": 2},
                marker={"size": 9},
                text=hover,
                hovertemplate="%{x|%Y-%m-%d}: %{y:.2f} mL<br>%{text}<extra></extra>",
            )
        )
    reads = reads.assign(study_date=pd.to_datetime(reads["study_date"]))
    none_found = reads[reads["label"] == "no lesion"]
    if not none_found.empty:
        fig.add_trace(
            go.Scatter(
                x=none_found["study_date"],
                y=[0.0] * len(none_found),
                mode="markers",
                name="no lesion found",
                marker={"symbol": "circle-open", "size": 11, "color": "#5f6b73"},
                cliponaxis=False,
                text=[
                    f"{m} {v}: no lesion found (not a measured 0 mL; see the model's card)"
                    for m, v in zip(
                        none_found["model_name"], none_found["model_version"], strict=True
                    )
                ],
                hovertemplate="%{x|%Y-%m-%d}<br>%{text}<extra></extra>",
            )
        )
    refused = reads[reads["refused"].notna()]
    if not refused.empty:
        fig.add_trace(
            go.Scatter(
                x=refused["study_date"],
                y=[0.0] * len(refused),
                mode="markers",
                name="read refused (input check)",
                marker={"symbol": "x", "size": 12, "color": PALETTE[5]},
                cliponaxis=False,
                text=[
                    f"score {s:.2f} > {t:.2f}: {r}"
                    for s, t, r in zip(
                        refused["guard_score"],
                        refused["guard_threshold"],
                        refused["refused"],
                        strict=True,
                    )
                ],
                hovertemplate="%{x|%Y-%m-%d}: no read<br>%{text}<extra></extra>",
            )
        )
    top = float(found["volume_ml"].max()) if not found.empty else 1.0
    # from just below 0 (markers at 0 stay whole) to a margin above the largest volume
    fig.update_yaxes(title_text="mL", range=[-0.06 * top, 1.15 * top])
    fig.update_xaxes(title_text=None, range=date_range(list(reads["study_date"])))
    return base_layout(fig, title, height=320)


# the columns of a 3D reads table, in the order shown (``volume_reads_table``)
VOLUME_READ_COLUMNS = (
    "study_date", "modality", "model_name", "model_version", "weights", "read", "probability",
    "lesions", "total_volume_ml", "input_check", "refused",
)  # fmt: skip


def volume_reads_table(reads: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Her 3D reads (``analytics.imaging.volumes.patient_volume_reads``) as a table: the study's
    day, ``read`` (the label, or "refused"), ``input_check`` ("score / threshold"), ``weights``
    (the first 12 hex digits of their sha256), then ``columns`` of ``VOLUME_READ_COLUMNS`` in the
    order given. One builder for the Patient page's timeline and the Imaging page's list, so the
    two never tell a read differently."""
    unknown = [c for c in columns if c not in VOLUME_READ_COLUMNS]
    if unknown:
        raise ValueError(f"not a column of the 3D reads table: {', '.join(unknown)}")
    table = reads.assign(
        study_date=pd.to_datetime(reads["study_date"]).dt.date,
        read=reads["label"].fillna("refused"),
        input_check=[
            f"{s:.2f} / {t:.2f}"
            for s, t in zip(reads["guard_score"], reads["guard_threshold"], strict=True)
        ],
        weights=reads["weights_sha256"].fillna("").str[:12],
    )
    return table[list(columns)]
