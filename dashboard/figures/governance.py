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


def calibration_curves_figure(
    series: list[tuple[str, pd.DataFrame]],
    *,
    title: str,
    x_title: str,
    y_title: str,
) -> go.Figure:
    """Calibration curves, one per ``(name, frame)``: ``predicted`` (x) against ``observed`` (y), with
    error bars where the frame has ``ci_low`` / ``ci_high``, and the line of perfect calibration.

    Drawn for a model's calibration before and after recalibration (issue 22), or one curve where no
    recalibration was applied; the model card on the Governance page and the dossier PDF both use it.
    """
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0.0, 1.0],
            y=[0.0, 1.0],
            mode="lines",
            name="perfect calibration",
            line={"dash": "dash", "color": "#888"},
            hoverinfo="skip",
        )
    )
    for i, (name, frame) in enumerate(series):
        pts = frame.dropna(subset=["predicted", "observed"])
        error_y = None
        if {"ci_low", "ci_high"} <= set(pts.columns) and pts[
            ["ci_low", "ci_high"]
        ].notna().all().all():
            error_y = {
                "type": "data",
                "symmetric": False,
                "array": (pts["ci_high"] - pts["observed"]).clip(lower=0).tolist(),
                "arrayminus": (pts["observed"] - pts["ci_low"]).clip(lower=0).tolist(),
                "thickness": 1,
            }
        fig.add_trace(
            go.Scatter(
                x=pts["predicted"].tolist(),
                y=pts["observed"].tolist(),
                mode="lines+markers",
                name=name,
                marker={
                    "color": PALETTE[i % len(PALETTE)],
                    "symbol": SYMBOLS[i % len(SYMBOLS)],
                    "size": 8,
                },
                line={"color": PALETTE[i % len(PALETTE)]},
                error_y=error_y,
                customdata=pts["n"].tolist() if "n" in pts else None,
                hovertemplate=f"{name}<br>predicted %{{x:.3f}}<br>observed %{{y:.3f}}"
                + ("<br>n %{customdata:.0f}" if "n" in pts else "")
                + "<extra></extra>",
            )
        )
    fig.update_layout(xaxis_title=x_title, yaxis_title=y_title)
    fig.update_xaxes(range=[-0.02, 1.02], constrain="domain", tickformat=".0%")
    fig.update_yaxes(range=[-0.02, 1.02], scaleanchor="x", constrain="domain", tickformat=".0%")
    return base_layout(fig, title, height=420)


def card_calibration_series(card: dict) -> list[tuple[str, pd.DataFrame]]:
    """A treatment card's calibration groups as one curve (``predicted``, ``observed``, band, ``n``);
    empty when the card has none (cards written before issue 22)."""
    cal = card.get("calibration") or {}
    bins = cal.get("bins") if isinstance(cal, dict) else None
    if not bins:
        return []
    frame = pd.DataFrame(bins).rename(columns={"mean_predicted": "predicted"})
    return [("out-of-fold, not recalibrated", frame)]


def risk_calibration_series(run: dict) -> list[tuple[str, pd.DataFrame]]:
    """A saved forecast validation's six-month risk bins, before and after the band recalibration."""
    risk = run.get("risk_6m") or {}
    out = []
    for name, key in (
        ("before recalibration (raw bands)", "uncalibrated_bands"),
        ("after recalibration (deployed)", "model"),
    ):
        bins = (risk.get(key) or {}).get("bins") or []
        if bins:
            frame = pd.DataFrame(bins).rename(
                columns={"mean_predicted": "predicted", "patients": "n"}
            )
            ci = frame.pop("observed_95ci") if "observed_95ci" in frame else None
            if ci is not None:
                frame["ci_low"] = [c[0] for c in ci]
                frame["ci_high"] = [c[1] for c in ci]
            out.append((name, frame))
    return out
