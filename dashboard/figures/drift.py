"""Drift figures (pure: a ``DriftReport`` in, a Plotly figure out), for the Governance page's Drift tab.

Why these two shapes: for inputs, the board needs to see which feature moved and when, against
the line that raises an alert; PSI per window is on a scale everyone reads the same way (0.1
"some", 0.2 "major"), with the windows that alerted (either test) marked. For calibration, the
recalibration slope and intercept with their 95 % intervals per window against 1 and 0: an
interval that leaves its line is the alert.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analytics.governance.lifecycle.drift import PSI_THRESHOLD, DriftReport
from dashboard.figures.common import PALETTE, base_layout, empty_figure

ALERT_COLOUR = "#D55E00"


def input_drift_figure(report: DriftReport, features: list[str] | None = None) -> go.Figure:
    """PSI per window, one line per feature; windows that raised an alert marked with a red ring."""
    rows = report.rows
    if rows.empty or not rows.get("tested", pd.Series(dtype=bool)).any():
        return empty_figure(
            f"No window of {report.model} has enough inputs to test yet", f"{report.model}: inputs"
        )
    tested = rows[rows["tested"]]
    chosen = features or list(dict.fromkeys(tested["feature"]))
    fig = go.Figure()
    for i, feature in enumerate(chosen):
        part = tested[tested["feature"] == feature]
        if part.empty:
            continue
        colour = PALETTE[i % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=part["window"],
                y=part["psi"],
                mode="lines+markers",
                name=feature,
                # past the palette's eight colours, the same colours dotted: no two inputs alike
                line={
                    "color": colour,
                    "width": 1.5,
                    "dash": "dot" if i >= len(PALETTE) else "solid",
                },
                marker={
                    "size": [12 if a else 6 for a in part["alert"]],
                    "color": colour,
                    "line": {
                        "color": [ALERT_COLOUR if a else colour for a in part["alert"]],
                        "width": [3 if a else 0 for a in part["alert"]],
                    },
                },
                customdata=list(zip(part["n"], part["p"], part["test"], strict=True)),
                hovertemplate=f"{feature}<br>%{{x}}: PSI %{{y:.3f}}<br>n %{{customdata[0]}}"
                "<br>%{customdata[2]} p %{customdata[1]:.2g}<extra></extra>",
            )
        )
    fig.add_hline(
        y=PSI_THRESHOLD,
        line={"dash": "dash", "color": ALERT_COLOUR},
        annotation_text=f"PSI {PSI_THRESHOLD} (major shift)",
        annotation_position="top left",
    )
    fig.update_layout(
        xaxis_title="window", yaxis_title="population stability index", legend_title="input"
    )
    fig.update_xaxes(type="category")
    top = max(float(tested["psi"].max()), PSI_THRESHOLD) * 1.15
    fig.update_yaxes(range=[0, top])
    return base_layout(
        fig, f"{report.model}: inputs against the reference, per {report.frequency}", 380
    )


def calibration_drift_figure(report: DriftReport) -> go.Figure:
    """Recalibration slope (against 1) and intercept (against 0) per window, with 95 % intervals."""
    rows = report.rows
    tested = rows[rows["tested"]] if "tested" in rows else rows.iloc[0:0]
    if tested.empty:
        return empty_figure(
            f"No window of {report.model} has enough known outcomes yet",
            f"{report.model}: calibration",
        )
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("slope (1: calibrated)", "intercept (0: calibrated)")
    )
    for col, (name, ref) in enumerate((("slope", 1.0), ("intercept", 0.0)), start=1):
        colours = [  # an in-sample reference never alerts, so it is never drawn as one
            ALERT_COLOUR if alert and not lo <= ref <= hi else PALETTE[0]
            for lo, hi, alert in zip(
                tested[f"{name}_low"], tested[f"{name}_high"], tested["alert"], strict=True
            )
        ]
        fig.add_trace(
            go.Scatter(
                x=tested["window"],
                y=tested[name],
                mode="markers",
                name=name,
                showlegend=False,
                marker={"size": 9, "color": colours},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": tested[f"{name}_high"] - tested[name],
                    "arrayminus": tested[name] - tested[f"{name}_low"],
                    "color": "#555",
                },
                customdata=list(zip(tested["n"], tested["events"], strict=True)),
                hovertemplate=f"%{{x}}: {name} %{{y:.2f}}<br>n %{{customdata[0]}}, events "
                "%{customdata[1]}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_hline(y=ref, line={"dash": "dash", "color": "#888"}, row=1, col=col)
        fig.update_xaxes(type="category", title_text="window", row=1, col=col)
    what = "in-sample calibration" if "in-sample" in report.monitored else "calibration"
    return base_layout(fig, f"{report.model}: {what} per {report.frequency}", 360)
