"""What every figure shares: the palette, the page layout, empty and bar figures, staircase paths.

Why one module: the colours (Okabe-Ito, colour-blind safe), margins and empty-state figure
must look the same on every page and in the PDF; each figure module takes them from here.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analytics.survival.constants import DAYS_PER_YEAR

__all__ = ["DAYS_PER_YEAR"]  # re-exported: the figures' year axis uses the one definition


# Colour-blind-safe qualitative palette (Okabe & Ito, 2008).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


# Diverging low-to-high scale for signed or two-ended quantities: Okabe–Ito blue, a neutral grey that still shows
# on white, Okabe–Ito vermillion. Blue against orange-red stays apart under deuteranopia and protanopia, where
# red against green collapses (docs/experience.md).
DIVERGING_BLUE_ORANGE = [[0.0, "#0072B2"], [0.5, "#B4B4B4"], [1.0, "#D55E00"]]


LINE_SHADES = ("rgba(0,114,178,0.10)", "rgba(230,159,0,0.13)", "rgba(0,158,115,0.12)")


def base_layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
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
        text=message,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 14, "color": "#5f6b73"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return base_layout(fig, title, height=260)


def bar_figure(
    frame: pd.DataFrame,
    x: str,
    y: str,
    title: str,
    x_label: str | None = None,
    y_label: str = "patients",
    text_format: str = ",",
) -> go.Figure:
    """Counts per category (grade, regimen, receptor...), bars labelled with their value."""
    if frame.empty:
        return empty_figure("No data", title)
    fig = go.Figure(
        go.Bar(
            x=frame[x].astype(str),
            y=frame[y],
            marker_color=PALETTE[0],
            texttemplate=f"%{{y:{text_format}}}",
            textposition="outside",
            hovertemplate=f"%{{x}}: %{{y:{text_format}}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=x_label if x_label is not None else x, type="category")
    fig.update_yaxes(title_text=y_label)
    return base_layout(fig, title, height=320)


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
