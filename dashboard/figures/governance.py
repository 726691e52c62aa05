"""Governance figures (pure: data in, Plotly figure out), so tests call them without Streamlit."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.common import PALETTE, base_layout

SYMBOLS = ("circle", "diamond", "square", "triangle-up")


def calibration_figure(
    points: pd.DataFrame,
    *,
    x: str,
    y: str,
    label: str,
    size: str = "n",
    title: str,
    x_title: str,
    y_title: str,
) -> go.Figure:
    """Predicted (x) against observed (y), one marker per row labelled ``label`` and sized by ``size``,
    with the line of perfect calibration. Rows with a missing value are left out."""
    pts = points.dropna(subset=[x, y])
    # Probabilities: the axes are [0, 1] whatever the points (issue 20: -1 to 2 with a square aspect).
    lo, hi = 0.0, 1.0
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            name="perfect calibration",
            showlegend=False,
            line={"dash": "dash", "color": "#888"},
            hoverinfo="skip",
        )
    )
    sizes = pts[size].astype(float) if size in pts else pd.Series(10.0, index=pts.index)
    scale = max(float(sizes.max()), 1.0) if len(sizes) else 1.0
    # One legend entry per group instead of a text label beside each marker: labels of neighbouring groups
    # overlapped each other and ran past the plotting area (issue 20).
    for i, (row, n) in enumerate(zip(pts.itertuples(index=False), sizes, strict=True)):
        fig.add_trace(
            go.Scatter(
                x=[getattr(row, x)],
                y=[getattr(row, y)],
                mode="markers",
                name=str(getattr(row, label)),
                marker={
                    "size": 6 + 24 * (n / scale) ** 0.5,
                    "color": PALETTE[i % len(PALETTE)],
                    "symbol": SYMBOLS[(i // len(PALETTE)) % len(SYMBOLS)],
                    "opacity": 0.85,
                },
                customdata=[n],
                hovertemplate=f"{getattr(row, label)}<br>predicted %{{x:.3f}}<br>observed %{{y:.3f}}"
                "<br>n %{customdata:.0f}<extra></extra>",
            )
        )
    fig.update_layout(xaxis_title=x_title, yaxis_title=y_title)
    # constrain="domain": the square aspect shrinks the plotting area, never widens the range past [0, 1]
    fig.update_xaxes(range=[lo - 0.02, hi + 0.02], constrain="domain", tickformat=".0%")
    fig.update_yaxes(
        range=[lo - 0.02, hi + 0.02], scaleanchor="x", constrain="domain", tickformat=".0%"
    )
    return base_layout(fig, title, height=400)


def reliability_points(card: dict) -> pd.DataFrame:
    """The card's reliability table (held-out test set) as points: mean confidence vs accuracy per bin."""
    rows = card.get("metrics", {}).get("reliability", []) or []
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=["bin", "mean_confidence", "accuracy", "n"])
    out["bin"] = [f"{r['bin_low']:.1f}-{r['bin_high']:.1f}" for r in rows]
    return out
