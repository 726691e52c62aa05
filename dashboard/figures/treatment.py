"""Figures of the treatment model: each option's outcome, the benefit waterfall, similar patients, and
SHAP importance over the cohort (pure: data in, figure out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analytics.survival.constants import HORIZON_5Y_DAYS
from analytics.treatment.horizon import horizon_label
from dashboard.figures import formats
from dashboard.figures.cohort import km_figure
from dashboard.figures.common import (
    DIVERGING_BLUE_ORANGE,
    PALETTE,
    base_layout,
    empty_figure,
)

if TYPE_CHECKING:  # types only: figures take results, they need no model code
    from analytics.treatment.model.shap_values import BenefitWaterfall
    from analytics.treatment.recommend import OptionOutcome


def shap_importance_figure(
    importance: pd.DataFrame, max_features: int = 12, horizon_days: float = HORIZON_5Y_DAYS
) -> go.Figure:
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
        title_text="mean |contribution| to the benefit "
        f"(percentage points of {horizon_label(horizon_days)} RFS)"
    )
    return base_layout(fig, title, height=120 + 28 * len(top))


def shap_beeswarm_figure(
    points: pd.DataFrame,
    order: list[str],
    max_features: int = 12,
    seed: int = 0,
    horizon_days: float = HORIZON_5Y_DAYS,
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
        title_text=f"contribution to the benefit (percentage points of {horizon_label(horizon_days)} RFS)",
        zeroline=True,
        zerolinecolor="#5f6b73",
    )
    return base_layout(fig, title, height=120 + 34 * len(order))


def feature_value_text(label: str, value: float) -> str:
    """A model input as a clinician reads it: "Tumour size (mm)", 22 -> "Tumour size = 22 mm".

    Labels carry their unit in parentheses (``analytics.treatment.clinic_data.CLINIC_FEATURES``);
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


def treatment_options_figure(
    options: Sequence[OptionOutcome],
    highlight: str | None = None,
    horizon_days: float = HORIZON_5Y_DAYS,
) -> go.Figure:
    """Predicted RFS at the horizon (%) of each option with its 95 % interval, one row per option.

    ``options``: the recommendation's ``options``; ``highlight``: the option drawn in the
    accent colour (recommended or best); ``horizon_days``: the model's horizon, named in the labels.
    """
    label = horizon_label(horizon_days)
    title = f"Predicted {label} recurrence-free survival, 95% interval"
    if not options:
        return empty_figure("No options to compare", title)
    fig = go.Figure()
    for o in reversed(options):
        lo, hi = o.rfs_ci
        colour = PALETTE[5] if o.treatment == highlight else PALETTE[0]
        fig.add_trace(
            go.Scatter(
                x=[100 * o.rfs],
                y=[formats.option(o.treatment)],
                mode="markers",
                showlegend=False,
                marker={"size": 12, "color": colour},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [100 * (hi - o.rfs)],
                    "arrayminus": [100 * (o.rfs - lo)],
                    "color": colour,
                    "thickness": 2,
                },
                hovertemplate=(
                    f"{formats.option(o.treatment)}: %{{x:.1f}}% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%), "
                    f"RMST {o.rmst_days:.0f} days<extra></extra>"
                ),
            )
        )
    fig.update_xaxes(title_text=f"{label} recurrence-free survival (%)", range=[0, 100])
    fig.update_yaxes(type="category")
    return base_layout(fig, title, height=120 + 50 * len(options))


def benefit_waterfall_figure(
    waterfall: BenefitWaterfall,
    benefit: float,
    max_features: int = 10,
    horizon_days: float = HORIZON_5Y_DAYS,
) -> go.Figure:
    """SHAP waterfall of the predicted benefit, in percentage points of 5-year RFS.

    ``waterfall``: a recommendation's ``shap`` (contributions largest first, as
    ``analytics.treatment.model.shap_values.BenefitShap.patient`` gives them); ``benefit``: its
    predicted benefit (RFS probability). Bars start at the reference patients' average benefit
    and end at this patient's; features past ``max_features`` are summed into one bar, so the
    total still adds up.
    """
    better, worse = waterfall.better, waterfall.worse
    title = f"Why {formats.option(better)} is predicted better than {formats.option(worse)} (SHAP)"
    contributions = waterfall.contributions
    if not contributions:
        return empty_figure("No explanation available", title)
    shown, rest = contributions[:max_features], contributions[max_features:]
    labels = ["average of reference patients"]
    values = [100 * waterfall.base_value]
    measures = ["absolute"]
    for c in shown:
        labels.append(feature_value_text(c.feature, c.value))
        values.append(100 * c.shap)
        measures.append("relative")
    if rest:
        labels.append(f"{len(rest)} other features")
        values.append(100 * sum(c.shap for c in rest))
        measures.append("relative")
    labels.append("this patient")
    values.append(100 * float(benefit))
    measures.append("total")
    fig = go.Figure(
        go.Waterfall(
            orientation="h",
            y=labels,
            x=values,
            measure=measures,
            text=[
                f"{v:+.2f}" if m == "relative" else f"{v:.2f}"
                for v, m in zip(values, measures, strict=True)
            ],
            textposition="outside",
            increasing={"marker": {"color": PALETTE[0]}},
            decreasing={"marker": {"color": PALETTE[5]}},
            totals={"marker": {"color": "#5f6b73"}},
            connector={"line": {"color": "#b0b8bf", "width": 1}},
            hovertemplate="%{y}: %{x:+.2f} percentage points<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(
        # the title names the two options; repeated here the label ran past a half-width chart
        title_text=f"benefit (percentage points of {horizon_label(horizon_days)} RFS)",
        range=_waterfall_range(values, measures),
    )
    return base_layout(fig, title, height=140 + 32 * len(labels))


def _waterfall_range(values: list[float], measures: list[str]) -> list[float]:
    """The x range of a horizontal waterfall: every bar's ends plus room on both sides for the labels
    drawn outside them ("+1.07", never "+1" cut at the plotting area)."""
    ends = [0.0]
    running = 0.0
    for v, m in zip(values, measures, strict=True):
        running = v if m in ("absolute", "total") else running + v
        ends.append(running)
    lo, hi = min(ends), max(ends)
    room = 0.22 * max(hi - lo, 1.0)
    return [lo - (room if lo < 0 else 0.05 * room), hi + room]


def similar_patients_figure(
    km: pd.DataFrame, counts: pd.DataFrame, criteria: str | None
) -> go.Figure:
    """Kaplan-Meier of similar patients by first-line option, each legend entry with its n.

    ``km``/``counts``: ``analytics.treatment.similar.SimilarPatients.km`` / ``.counts``.
    """
    title = f"Similar patients ({criteria}): recurrence-free survival by first-line option"
    if criteria is None:
        return empty_figure("No diagnosis to match similar patients on", "Similar patients")
    if km.empty:
        return empty_figure("No similar patients with a first-line option in this store", title)
    n = dict(zip(counts["group"], counts["patients"], strict=True))
    labelled = km.assign(group=[f"{formats.option(g)} (n={n.get(g, 0):,})" for g in km["group"]])
    fig = km_figure(labelled, title)
    # half the page wide: a legend at the side left the curves a third of the width (1366 px)
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    return fig
