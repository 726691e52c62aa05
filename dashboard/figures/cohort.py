"""Figures of the Cohorts page (pure: results in, a Plotly figure out): the clinic overview and the cohort builder.

Also the clinic overview's figures (age, receptors, Kaplan-Meier by regimen); the shared
helpers (palette, staircase paths) come from ``figures.common``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analytics.cohorts.builder import CohortResult
from dashboard.figures.common import (
    DAYS_PER_YEAR,
    PALETTE,
    band_path,
    bar_figure,
    base_layout,
    colour_with_alpha,
    empty_figure,
)


def _at_risk_rows(fig: go.Figure, at: pd.DataFrame, names: list[str]) -> None:
    """The numbers at risk (``at``: group, years, at_risk) as a table in row 2, one line per group."""
    for i, name in enumerate(names):
        part = at[at["group"] == name]
        fig.add_trace(
            go.Scatter(
                x=part["years"],
                y=[name] * len(part),
                mode="text",
                text=[f"{int(v):,}" for v in part["at_risk"]],
                textfont={"color": PALETTE[i % len(PALETTE)], "size": 11},
                showlegend=False,
                hovertemplate=f"{name}: %{{text}} at risk at %{{x}} years<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(
        title_text="at risk",
        # a whole row of room for each group, first on top (autorange clipped the first and last rows)
        range=[len(names) - 0.5, -0.5],
        showgrid=False,
        row=2,
        col=1,
        categoryorder="array",
        categoryarray=names,
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
        band_x, band_y = band_path(years, g.km["lo"], g.km["hi"])
        fig.add_trace(
            go.Scatter(
                x=band_x,
                y=band_y,
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
    _at_risk_rows(fig, result.at_risk[result.at_risk["years"] <= horizon + 1e-9], names)
    fig.update_yaxes(title_text="recurrence-free", range=[0, 1.02], tickformat=".0%", row=1, col=1)
    # Room either side of the first and last year for the numbers at risk centred on them ("276", not "76").
    room = 0.04 * horizon + 0.3
    fig.update_xaxes(range=[-room, horizon + room], dtick=1)
    fig.update_xaxes(title_text="years since diagnosis", row=2, col=1)
    return base_layout(fig, title, height=480 + 18 * len(names))


def age_distribution_figure(age_distribution: pd.DataFrame) -> go.Figure:
    """Histogram of age at diagnosis from pre-binned counts (age_band, patients)."""
    return bar_figure(age_distribution, "age_band", "patients", "Age at diagnosis", "years")


def receptor_figure(receptor_counts: pd.DataFrame) -> go.Figure:
    """Share of patients positive for each receptor (percent)."""
    return bar_figure(
        receptor_counts, "receptor", "percent", "Receptor status", "", "% of patients", ".1f"
    )


def km_figure(
    km: pd.DataFrame, title: str = "Recurrence-free survival", at_risk: pd.DataFrame | None = None
) -> go.Figure:
    """Kaplan-Meier step curves with shaded 95 % confidence bands, one colour per group, x in years.

    ``km`` has the columns of ``CohortOverview.km``: group, time_days,
    survival, ci_lower, ci_upper. ``at_risk`` (group, years, at_risk: ``CohortResult.at_risk``, counted
    from the patients, not read off the curve's time grid): a table of them by year under the curves,
    as in a journal figure; its groups that are not curves here are left out.
    """
    if km.empty:
        return empty_figure("No follow-up to estimate survival from", title)
    names = [str(g) for g in km["group"].unique()]
    if at_risk is not None:
        horizon = float(km["time_days"].max()) / DAYS_PER_YEAR
        at_risk = at_risk[at_risk["group"].isin(names) & (at_risk["years"] <= horizon + 1e-9)]
        at_risk = at_risk if not at_risk.empty else None
    fig = (
        make_subplots(
            rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.08
        )
        if at_risk is not None
        else go.Figure()
    )
    cell = {"row": 1, "col": 1} if at_risk is not None else {}
    for i, (group, part) in enumerate(km.groupby("group", sort=False)):
        colour = PALETTE[i % len(PALETTE)]
        years = part["time_days"] / DAYS_PER_YEAR
        band_x, band_y = band_path(years, part["ci_lower"], part["ci_upper"])
        fig.add_trace(
            go.Scatter(
                x=band_x,
                y=band_y,
                fill="toself",
                fillcolor=colour_with_alpha(colour, 0.15),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=str(group),
            ),
            **cell,
        )
        fig.add_trace(
            go.Scatter(
                x=years,
                y=part["survival"],
                mode="lines",
                name=str(group),
                line={"color": colour, "width": 2, "shape": "hv"},
                legendgroup=str(group),
                hovertemplate=f"{group}<br>%{{x:.1f}} years: %{{y:.1%}}<extra></extra>",
            ),
            **cell,
        )
    if len(names) == 1:
        fig.update_layout(
            showlegend=False
        )  # the title names the one curve; its legend only took width
    if at_risk is not None:
        # Beside another chart (half the page) a 3-digit count per year would run into the next: every
        # second year past six years, with room for half a number before year 0 and after the last.
        step = 1 if horizon <= 6 else 2
        _at_risk_rows(fig, at_risk[at_risk["years"] % step == 0], names)
        room = 0.04 * horizon + 0.45 * step
        fig.update_xaxes(range=[-room, horizon + room], dtick=step)
        fig.update_xaxes(title_text="years since diagnosis", row=2, col=1)
        fig.update_yaxes(
            title_text="recurrence-free", range=[0, 1.02], tickformat=".0%", row=1, col=1
        )
        fig = base_layout(fig, title, height=440 + 18 * len(names))
        if len(names) > 1:
            # the legend above the curves, not beside them: at half the page a right-hand legend
            # and the at-risk table's row names ("chemotherapy + endocrine") left the curves a
            # sliver and ran the counts into each other (seen at 1366 x 768)
            fig.update_layout(
                legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "title": None}
            )
        return fig
    fig.update_xaxes(title_text="years since diagnosis", rangemode="tozero")
    fig.update_yaxes(title_text="recurrence-free", range=[0, 1.02], tickformat=".0%")
    return base_layout(fig, title, height=420)
