"""Governance figures (pure: data in, Plotly figure out), so tests call them without Streamlit."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


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
    lo = float(min(pts[x].min(), pts[y].min(), 0.0)) if len(pts) else 0.0
    hi = float(max(pts[x].max(), pts[y].max(), 1.0)) if len(pts) else 1.0
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            name="perfect calibration",
            line={"dash": "dash", "color": "#888"},
            hoverinfo="skip",
        )
    )
    sizes = pts[size].astype(float) if size in pts else pd.Series(10.0, index=pts.index)
    fig.add_trace(
        go.Scatter(
            x=pts[x],
            y=pts[y],
            mode="markers+text",
            text=pts[label].astype(str),
            textposition="top center",
            marker={
                "size": (6 + 24 * (sizes / max(sizes.max(), 1)) ** 0.5).tolist(),
                "color": "#0f6e8c",
                "opacity": 0.8,
            },
            customdata=sizes,
            name="groups",
            hovertemplate="%{text}<br>predicted %{x:.3f}<br>observed %{y:.3f}<br>n %{customdata:.0f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=380,
        margin={"l": 40, "r": 10, "t": 50, "b": 40},
        showlegend=False,
    )
    fig.update_xaxes(range=[lo - 0.02, hi + 0.02])
    fig.update_yaxes(range=[lo - 0.02, hi + 0.02], scaleanchor="x")
    return fig


def reliability_points(card: dict) -> pd.DataFrame:
    """The card's reliability table (held-out test set) as points: mean confidence vs accuracy per bin."""
    rows = card.get("metrics", {}).get("reliability", []) or []
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=["bin", "mean_confidence", "accuracy", "n"])
    out["bin"] = [f"{r['bin_low']:.1f}-{r['bin_high']:.1f}" for r in rows]
    return out
