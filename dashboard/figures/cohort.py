"""Figures of the cohort builder (pure: a ``CohortResult`` in, a Plotly figure out).

Kept beside ``plots.py`` rather than in it so that the cohort builder's figures
can change without touching a module other features edit; the shared helpers
(palette, staircase paths) come from ``plots``.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analytics.cohorts.builder import CohortResult
from dashboard.figures.clinical import (
    DAYS_PER_YEAR,
    PALETTE,
    colour_with_alpha,
    empty_figure,
    step_path,
)


def km_at_risk_figure(result: CohortResult, title: str = "Recurrence-free survival") -> go.Figure:
    """Kaplan-Meier curves with 95 % bands (top) and the number at risk per year (a table under it).

    The number-at-risk rows share the curves' x axis (years since diagnosis) and
    colours, as in a journal figure, so a reader sees how many patients each part
    of a curve rests on.
    """
    if not result.groups:
        return empty_figure("No patients in this cohort", title)
    names = [g.name for g in result.groups]
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.06
    )
    horizon = max(float(g.km["day"].max()) for g in result.groups) / DAYS_PER_YEAR
    for i, g in enumerate(result.groups):
        colour = PALETTE[i % len(PALETTE)]
        years = g.km["day"] / DAYS_PER_YEAR
        # extend each curve flat to its last follow-up (censored tail)
        up_x, up_y = step_path(years, g.km["hi"])
        low_x, low_y = step_path(years, g.km["lo"])
        fig.add_trace(
            go.Scatter(
                x=up_x + low_x[::-1],
                y=up_y + low_y[::-1],
                fill="toself",
                fillcolor=colour_with_alpha(colour, 0.15),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=g.name,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=years,
                y=g.km["s"],
                mode="lines",
                name=f"{g.name} (n={g.n:,})",
                line={"color": colour, "width": 2, "shape": "hv"},
                legendgroup=g.name,
                customdata=g.km[["lo", "hi", "at_risk"]].to_numpy(),
                hovertemplate=(
                    f"{g.name}<br>%{{x:.1f}} years: %{{y:.1%}} "
                    "(95 % CI %{customdata[0]:.1%}–%{customdata[1]:.1%})<br>"
                    "at risk: %{customdata[2]:,}<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
    at = result.at_risk[result.at_risk["years"] <= horizon + 1e-9]
    for i, name in enumerate(names):
        part = at[at["group"] == name]
        fig.add_trace(
            go.Scatter(
                x=part["years"],
                y=[name] * len(part),
                mode="text",
                text=[f"{v:,}" for v in part["at_risk"]],
                textfont={"color": PALETTE[i % len(PALETTE)], "size": 11},
                showlegend=False,
                hovertemplate=f"{name}: %{{text}} at risk at %{{x}} years<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="recurrence-free", range=[0, 1.02], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(
        title_text="at risk",
        autorange="reversed",
        showgrid=False,
        row=2,
        col=1,
        categoryorder="array",
        categoryarray=names,
    )
    fig.update_xaxes(title_text="years since diagnosis", rangemode="tozero", dtick=1, row=2, col=1)
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=480 + 18 * len(names),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        template="plotly_white",
    )
    return fig
