"""What every figure shares: the palette, the page layout, empty and bar figures, staircase paths.

Why one module: the colours (Okabe-Ito, colour-blind safe), margins and empty-state figure
must look the same on every page and in the PDF; each figure module takes them from here.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from analytics.survival.constants import DAYS_PER_YEAR

# The house template, as the default (issue 23): ``update_layout(template="plotly_white")`` copied and
# re-validated the whole template for every figure (about 50 ms each on two busy cores, ten figures
# on the Cohorts page); as the default it is applied once, when a figure is serialised, and the
# figure's JSON is the same. Every builder here goes through ``base_layout``.
pio.templates.default = "plotly_white"

__all__ = ["DAYS_PER_YEAR"]  # re-exported: the figures' year axis uses the one definition


# Colour-blind-safe qualitative palette (Okabe & Ito, 2008).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


# Diverging low-to-high scale for signed or two-ended quantities: Okabe–Ito blue, a neutral grey that still shows
# on white, Okabe–Ito vermillion. Blue against orange-red stays apart under deuteranopia and protanopia, where
# red against green collapses (docs/experience.md).
DIVERGING_BLUE_ORANGE = [[0.0, "#0072B2"], [0.5, "#B4B4B4"], [1.0, "#D55E00"]]


LINE_SHADES = ("rgba(0,114,178,0.10)", "rgba(230,159,0,0.13)", "rgba(0,158,115,0.12)")


# Characters per line of a chart title (15 px font) and of an axis title: half of a 1366 px page holds about 55
# title characters, so a title longer than that wraps instead of running past the chart's edge (issue 20).
TITLE_CHARS = 52
AXIS_TITLE_CHARS = 40
TITLE_LINE_PX = 20


def wrap(text: str | None, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (Plotly's ``<br>``), words kept whole."""
    if not text:
        return ""
    return "<br>".join(textwrap.wrap(str(text), width=width, break_long_words=False)) or ""


def _wrap_axis_titles(fig: go.Figure) -> None:
    """Every axis title wrapped (``automargin`` then makes room for its lines)."""
    for name in [k for k in fig.layout.to_plotly_json() if k.startswith(("xaxis", "yaxis"))]:
        axis = fig.layout[name]
        text = axis.title.text if axis.title is not None else None
        if text and "<br>" not in text:
            axis.title.text = wrap(text, AXIS_TITLE_CHARS)
        axis.automargin = True


def base_layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    """The house layout: a left-aligned title that wraps, the legend beside the plot (never on the title),
    axis titles wrapped and given room; the height grows with the title's lines."""
    wrapped = wrap(title, TITLE_CHARS)
    lines = wrapped.count("<br>") + 1 if wrapped else 0
    fig.update_layout(
        title={"text": wrapped, "x": 0.0, "xanchor": "left", "font": {"size": 15}},
        height=height + TITLE_LINE_PX * max(0, lines - 1),
        margin={"l": 10, "r": 10, "t": 30 + TITLE_LINE_PX * lines, "b": 10},
        legend={"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02},
    )
    _wrap_axis_titles(fig)
    return fig


MIN_DATE_SPAN_DAYS = 365


def date_range(
    dates: list, min_span_days: int = MIN_DATE_SPAN_DAYS, pad: float = 0.04
) -> list[pd.Timestamp] | None:
    """An x range that spans ``dates`` (anything ``pd.to_datetime`` reads; missing ones skipped) plus a small
    margin, at least ``min_span_days`` wide and centred on short data, so one reading still sits in a
    readable year and nothing (an annotation, an empty panel) can stretch the axis to 1970."""
    stamps = pd.to_datetime(pd.Series(list(dates), dtype=object), errors="coerce").dropna()
    if stamps.empty:
        return None
    lo, hi = stamps.min(), stamps.max()
    span = max(hi - lo, pd.Timedelta(days=min_span_days))
    centre = lo + (hi - lo) / 2
    half = span / 2 + span * pad
    return [centre - half, centre + half]


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


def band_path(x: pd.Series, lo: pd.Series, hi: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The closed outline of a step band between ``lo`` and ``hi``: the upper staircase out, the lower
    one back (``step_path`` of each, the second reversed), as arrays.

    Why arrays (issue 23): Plotly checks a list element by element (about 20,000 calls for the
    Cohorts page's two KM charts), an array at once; the figure draws the same points.
    """
    xs = np.asarray(x, dtype=float)
    ups, lows = np.asarray(hi, dtype=float), np.asarray(lo, dtype=float)
    stair_x = np.repeat(xs, 2)[1:]  # x0, x1, x1, x2, x2, ...: step_path's corners
    return (
        np.concatenate([stair_x, stair_x[::-1]]),
        np.concatenate([np.repeat(ups, 2)[:-1], np.repeat(lows, 2)[:-1][::-1]]),
    )


def colour_with_alpha(hex_colour: str, alpha: float) -> str:
    """``#rrggbb`` as an ``rgba()`` string with the given opacity."""
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
