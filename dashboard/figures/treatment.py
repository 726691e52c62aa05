"""Figures of the treatment model over the cohort: SHAP importance bars and beeswarm (pure: data in, figure out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.clinical import DIVERGING_BLUE_ORANGE, PALETTE, _layout, empty_figure


def shap_importance_figure(importance: pd.DataFrame, max_features: int = 12) -> go.Figure:
    """Mean |SHAP| of the benefit per feature (percentage points), largest on top.

    ``importance``: columns ``feature``, ``mean_abs_pp``, ``mean_pp`` (``CohortExplanation.importance``).
    """
    title = "What drives the predicted benefit across the clinic (mean |SHAP|)"
    if importance.empty:
        return empty_figure("No patients to explain", title)
    top = importance.head(max_features)
    fig = go.Figure(
        go.Bar(
            x=top["mean_abs_pp"],
            y=top["feature"],
            orientation="h",
            marker={"color": PALETTE[0]},
            customdata=np.stack([top["mean_pp"]], axis=1),
            hovertemplate="%{y}<br>mean |SHAP| %{x:.2f} percentage points"
            "<br>mean SHAP %{customdata[0]:+.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(
        title_text="mean |contribution| to the benefit (percentage points of 5-year RFS)"
    )
    return _layout(fig, title, height=120 + 28 * len(top))


def shap_beeswarm_figure(
    points: pd.DataFrame, order: list[str], max_features: int = 12, seed: int = 0
) -> go.Figure:
    """One dot per patient and feature: SHAP (x), feature (y, jittered), feature value rank (colour).

    ``points``: ``CohortExplanation.beeswarm()``; ``order``: features top to bottom.
    """
    title = "Each patient's contributions (SHAP beeswarm; colour: feature value, low to high)"
    if points.empty:
        return empty_figure("No patients to explain", title)
    order = order[:max_features]
    points = points[points["feature"].isin(order)]
    row = points["feature"].map({f: i for i, f in enumerate(order)}).to_numpy(dtype=float)
    jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, len(points))
    fig = go.Figure(
        go.Scattergl(
            x=points["shap_pp"],
            y=row + jitter,
            mode="markers",
            marker={
                "size": 4,
                "color": points["value_rank"],
                "colorscale": DIVERGING_BLUE_ORANGE,
                "cmin": 0,
                "cmax": 1,
                "opacity": 0.6,
                "colorbar": {
                    "title": "value",
                    "tickvals": [0, 1],
                    "ticktext": ["low", "high"],
                    "len": 0.6,
                },
            },
            customdata=np.stack([points["feature"], points["value"]], axis=1),
            hovertemplate="%{customdata[0]} = %{customdata[1]:.4g}<br>SHAP %{x:+.2f} percentage points"
            "<extra></extra>",
        )
    )
    fig.update_yaxes(
        tickvals=list(range(len(order))), ticktext=order, autorange="reversed", zeroline=False
    )
    fig.update_xaxes(
        title_text="contribution to the benefit (percentage points of 5-year RFS)",
        zeroline=True,
        zerolinecolor="#5f6b73",
    )
    return _layout(fig, title, height=120 + 34 * len(order))
