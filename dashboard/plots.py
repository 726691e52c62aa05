"""Plotly figure builders: data in, figure out, no Streamlit.

Why pure functions: every figure the app shows must be testable without a
running app, and the same builders serve the PDF report later. Builders take
the DataFrames that ``analytics`` returns (column names as documented there)
and never query the store. An empty input gives a figure that says so instead
of an error or a blank axis.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

LESION_CONCEPT = "lesion_longest_diameter"
DAYS_PER_YEAR = 365.25
# Colour-blind-safe qualitative palette (Okabe & Ito, 2008).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINE_SHADES = ("rgba(0,114,178,0.10)", "rgba(230,159,0,0.13)", "rgba(0,158,115,0.12)")
LAB_LABELS = {
    "ca15_3": "CA 15-3",
    "haemoglobin": "Haemoglobin",
    "neutrophils": "Neutrophils",
    "brain_lesion_longest_diameter": "Brain metastasis, longest diameter",
}


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    )
    return fig


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure carrying ``message`` in its middle."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
        font={"size": 14, "color": "#5f6b73"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=260)


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
        spans.append({"line_of_therapy": int(line), "label": f"Line {int(line)}: {what}",
                      "start": start, "end": end})
    return pd.DataFrame(spans, columns=columns)


def lesion_size_figure(measurements: pd.DataFrame, treatments: pd.DataFrame) -> go.Figure:
    """Target-lesion longest diameter (mm) over time, treatment lines shaded behind it.

    The dotted line is the RECIST 1.1 progression threshold implied by the
    nadir so far: the larger of 1.2 x nadir and nadir + 5 mm.
    """
    title = "Target lesion, longest diameter"
    lesion = measurements[measurements["concept"] == LESION_CONCEPT] if not measurements.empty else measurements
    if lesion.empty:
        return empty_figure("No lesion measurements recorded", title)
    lesion = lesion.assign(measurement_date=pd.to_datetime(lesion["measurement_date"]))
    lesion = lesion.sort_values("measurement_date")
    fig = go.Figure()
    spans = treatment_lines(treatments, until=lesion["measurement_date"].max())
    for i, span in enumerate(spans.itertuples(index=False)):
        fig.add_vrect(
            x0=span.start, x1=span.end, fillcolor=LINE_SHADES[i % len(LINE_SHADES)],
            line_width=0, layer="below",
            annotation_text=span.label, annotation_position="top left",
            annotation_font={"size": 11, "color": "#40505a"},
        )
    fig.add_trace(
        go.Scatter(
            x=lesion["measurement_date"], y=lesion["value"], mode="lines+markers",
            name="longest diameter", line={"color": PALETTE[0], "width": 2},
            hovertemplate="%{x|%Y-%m-%d}: %{y:.1f} mm<extra></extra>",
        )
    )
    nadir = float(lesion["value"].min())
    threshold = max(1.2 * nadir, nadir + 5.0)
    fig.add_hline(
        y=threshold, line_dash="dot", line_color=PALETTE[5],
        annotation_text=f"progression threshold {threshold:.1f} mm (RECIST 1.1)",
        annotation_position="bottom right", annotation_font={"size": 11, "color": PALETTE[5]},
    )
    fig.update_yaxes(title_text="mm", rangemode="tozero")
    fig.update_xaxes(title_text=None)
    return _layout(fig, title)


def lab_values_figure(measurements: pd.DataFrame) -> go.Figure:
    """Every non-lesion measurement concept in its own row (own unit), on one shared time axis."""
    title = "Laboratory values"
    labs = measurements[measurements["concept"] != LESION_CONCEPT] if not measurements.empty else measurements
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
                x=part["measurement_date"], y=part["value"], mode="lines+markers", name=name,
                line={"color": PALETTE[(row - 1) % len(PALETTE)]}, marker={"size": 5},
                hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:.2f}} {unit}<extra>{name}</extra>",
            ),
            row=row, col=1,
        )
        fig.update_yaxes(title_text=f"{name} ({unit})" if unit else name, row=row, col=1)
    fig.update_layout(showlegend=False)
    return _layout(fig, title, height=max(260, 170 * len(concepts)))


def bar_figure(
    frame: pd.DataFrame, x: str, y: str, title: str, x_label: str | None = None,
    y_label: str = "patients", text_format: str = ",",
) -> go.Figure:
    """Counts per category (grade, regimen, receptor...), bars labelled with their value."""
    if frame.empty:
        return empty_figure("No data", title)
    fig = go.Figure(
        go.Bar(
            x=frame[x].astype(str), y=frame[y], marker_color=PALETTE[0],
            texttemplate=f"%{{y:{text_format}}}", textposition="outside",
            hovertemplate=f"%{{x}}: %{{y:{text_format}}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=x_label if x_label is not None else x, type="category")
    fig.update_yaxes(title_text=y_label)
    return _layout(fig, title, height=320)


def age_distribution_figure(age_distribution: pd.DataFrame) -> go.Figure:
    """Histogram of age at diagnosis from pre-binned counts (age_band, patients)."""
    return bar_figure(age_distribution, "age_band", "patients", "Age at diagnosis", "years")


def receptor_figure(receptor_counts: pd.DataFrame) -> go.Figure:
    """Share of patients positive for each receptor (percent)."""
    return bar_figure(
        receptor_counts, "receptor", "percent", "Receptor status", "", "% of patients", ".1f"
    )


def km_figure(km: pd.DataFrame, title: str = "Recurrence-free survival") -> go.Figure:
    """Kaplan-Meier step curves with shaded 95 % confidence bands, one colour per group, x in years.

    ``km`` has the columns of ``CohortOverview.km``: group, time_days,
    survival, ci_lower, ci_upper.
    """
    if km.empty:
        return empty_figure("No follow-up to estimate survival from", title)
    fig = go.Figure()
    for i, (group, part) in enumerate(km.groupby("group", sort=False)):
        colour = PALETTE[i % len(PALETTE)]
        years = part["time_days"] / DAYS_PER_YEAR
        up_x, up_y = step_path(years, part["ci_upper"])
        low_x, low_y = step_path(years, part["ci_lower"])
        fig.add_trace(
            go.Scatter(
                x=up_x + low_x[::-1], y=up_y + low_y[::-1],
                fill="toself", fillcolor=colour_with_alpha(colour, 0.15), line={"width": 0},
                hoverinfo="skip", showlegend=False, legendgroup=str(group),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=years, y=part["survival"], mode="lines", name=str(group),
                line={"color": colour, "width": 2, "shape": "hv"}, legendgroup=str(group),
                hovertemplate=f"{group}<br>%{{x:.1f}} years: %{{y:.1%}}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="years since diagnosis", rangemode="tozero")
    fig.update_yaxes(title_text="recurrence-free", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, title, height=420)


def step_path(x: pd.Series, y: pd.Series) -> tuple[list[float], list[float]]:
    """Explicit staircase through (x, y) for a right-continuous step function.

    Plotly's ``line.shape="hv"`` cannot draw a filled band (the return edge
    would step the wrong way), so bands are drawn from explicit corners.
    """
    xs, ys = list(map(float, x)), list(map(float, y))
    path_x, path_y = [], []
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
        if i:
            path_x.append(xi)
            path_y.append(ys[i - 1])
        path_x.append(xi)
        path_y.append(yi)
    return path_x, path_y


def colour_with_alpha(hex_colour: str, alpha: float) -> str:
    """``#rrggbb`` as an ``rgba()`` string with the given opacity."""
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# --- treatment options ----------------------------------------------------------------------


def feature_value_text(label: str, value: float) -> str:
    """A model input as a clinician reads it: "Tumour size (mm)", 22 -> "Tumour size = 22 mm".

    Labels carry their unit in parentheses (``analytics.treatment_store.CLINIC_FEATURES``);
    "(1 = yes)" flags read yes/no, counts and scales ("count", "1-3") drop the unit word.
    """
    name, _, unit = label.partition(" (")
    unit = unit.rstrip(")")
    if unit == "1 = yes":
        return f"{name} = {'yes' if value >= 0.5 else 'no'}"
    shown = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if not unit or unit == "count" or unit[0].isdigit():
        return f"{name} = {shown}"
    return f"{name} = {shown} {unit}"


def treatment_options_figure(options: list[dict], highlight: str | None = None) -> go.Figure:
    """Predicted 5-year RFS (%) of each option with its 95 % interval, one row per option.

    ``options``: the recommendation's option dicts (treatment, rfs_5y, rfs_5y_ci,
    rmst_days); ``highlight``: the option drawn in the accent colour (recommended or best).
    """
    title = "Predicted 5-year recurrence-free survival, 95% interval"
    if not options:
        return empty_figure("No options to compare", title)
    fig = go.Figure()
    for o in reversed(options):
        lo, hi = o["rfs_5y_ci"]
        colour = PALETTE[5] if o["treatment"] == highlight else PALETTE[0]
        fig.add_trace(
            go.Scatter(
                x=[100 * o["rfs_5y"]], y=[o["treatment"]], mode="markers", showlegend=False,
                marker={"size": 12, "color": colour},
                error_x={"type": "data", "symmetric": False, "array": [100 * (hi - o["rfs_5y"])],
                         "arrayminus": [100 * (o["rfs_5y"] - lo)], "color": colour, "thickness": 2},
                hovertemplate=(f"{o['treatment']}: %{{x:.1f}}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%), "
                               f"RMST {o['rmst_days']:.0f} days<extra></extra>"),
            )
        )  # fmt: skip
    fig.update_xaxes(title_text="5-year recurrence-free survival (%)", range=[0, 100])
    fig.update_yaxes(type="category")
    return _layout(fig, title, height=120 + 50 * len(options))


def benefit_waterfall_figure(
    shap: dict, benefit: float, better: str, worse: str, max_features: int = 10
) -> go.Figure:
    """SHAP waterfall of the predicted benefit, in percentage points of 5-year RFS.

    ``shap``: ``{"base_value", "contributions": [{"feature", "value", "shap"}]}`` (largest
    first, as ``analytics.treatment_shap.BenefitShap.patient`` gives it). Bars start at the
    reference patients' average benefit and end at this patient's; features past
    ``max_features`` are summed into one bar, so the total still adds up.
    """
    title = f"Why {better} is predicted better than {worse} (SHAP)"
    contributions = list(shap.get("contributions", []))
    if not contributions:
        return empty_figure("No explanation available", title)
    shown, rest = contributions[:max_features], contributions[max_features:]
    labels = ["average of reference patients"]
    values = [100 * float(shap["base_value"])]
    measures = ["absolute"]
    for c in shown:
        labels.append(feature_value_text(c["feature"], c["value"]))
        values.append(100 * float(c["shap"]))
        measures.append("relative")
    if rest:
        labels.append(f"{len(rest)} other features")
        values.append(100 * sum(float(c["shap"]) for c in rest))
        measures.append("relative")
    labels.append("this patient")
    values.append(100 * float(benefit))
    measures.append("total")
    fig = go.Figure(
        go.Waterfall(
            orientation="h", y=labels, x=values, measure=measures,
            text=[f"{v:+.2f}" if m == "relative" else f"{v:.2f}" for v, m in zip(values, measures, strict=True)],
            textposition="outside",
            increasing={"marker": {"color": PALETTE[0]}}, decreasing={"marker": {"color": PALETTE[5]}},
            totals={"marker": {"color": "#5f6b73"}}, connector={"line": {"color": "#b0b8bf", "width": 1}},
            hovertemplate="%{y}: %{x:+.2f} percentage points<extra></extra>",
        )
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text=f"benefit of {better} over {worse} (percentage points of 5-year RFS)")
    return _layout(fig, title, height=140 + 32 * len(labels))


def similar_patients_figure(km: pd.DataFrame, counts: pd.DataFrame, criteria: str | None) -> go.Figure:
    """Kaplan-Meier of similar patients by first-line option, each legend entry with its n.

    ``km``/``counts``: ``analytics.treatment_similar.SimilarPatients.km`` / ``.counts``.
    """
    title = f"Similar patients ({criteria}): recurrence-free survival by first-line option"
    if criteria is None:
        return empty_figure("No diagnosis to match similar patients on", "Similar patients")
    if km.empty:
        return empty_figure("No similar patients with a first-line option in this store", title)
    n = dict(zip(counts["group"], counts["patients"], strict=True))
    labelled = km.assign(group=[f"{g} (n={n.get(g, 0):,})" for g in km["group"]])
    return km_figure(labelled, title)
