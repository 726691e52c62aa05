"""Saliency heat maps over the image: the Plotly figure of the Imaging page and the PNG of ``oncolens explain``.

Pure functions (arrays in, figure or pixels out), so tests call them without
Streamlit and the page and the CLI draw the same thing.

What is drawn: the *positive* attribution (evidence for the explained class),
scaled to its own maximum, in a perceptually ordered colour scale (inferno:
lightness rises monotonically from black to pale yellow, so the order of
magnitudes survives every common colour-vision deficiency and greyscale print;
docs/experience.md);
weak evidence (below ``FLOOR`` of the maximum) is left transparent so the
anatomy stays readable; the top-k % contour outlines the pixels holding the
strongest k % of the map. Negative attributions (evidence against the class)
are not drawn; the raw signed map is in ``--out-npy``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from scipy import ndimage

from dashboard.figures import viewer

FLOOR = 0.05
TOP_K_COLOUR = "#00E5FF"
# The AI lesion outline over the heat map: the viewer's orange would vanish into inferno's orange, so white and
# dashed here (told apart from the solid cyan top-k contour by line style as well as colour).
AI_OUTLINE_ON_HEAT_MAP = ("#FFFFFF", "dash")
# inferno, sampled at 9 points (matplotlib's colour map, which is CC0)
_INFERNO = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 140, 10],
        [249, 201, 50],
        [252, 255, 164],
    ],
    dtype=np.float32,
)


def relative_map(attribution: np.ndarray) -> np.ndarray:
    """Positive attribution scaled to [0, 1] by its maximum (all zeros when nothing is positive)."""
    pos = np.clip(np.nan_to_num(np.asarray(attribution, dtype=np.float32)), 0.0, None)
    top = float(pos.max()) if pos.size else 0.0
    return pos / top if top > 0 else np.zeros_like(pos)


def top_k_mask(
    attribution: np.ndarray, percent: float, within: np.ndarray | None = None
) -> np.ndarray:
    """The ``percent`` % of pixels with the highest attribution (ties at the cut included).

    ``within``: the body (``models.inference.preprocess.body_mask``); the percent is taken of
    its pixels and nothing outside it is outlined (no contour over the air around the body).
    """
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")
    a = np.nan_to_num(np.asarray(attribution, dtype=np.float32))
    inside = np.ones(a.shape, dtype=bool) if within is None else np.asarray(within, dtype=bool)
    if inside.shape != a.shape or not inside.any():
        inside = np.ones(a.shape, dtype=bool)
    cut = np.percentile(a[inside], 100 - percent)
    mask = (a >= cut) & inside
    if a.max() <= 0:  # nothing positive: no "strongest evidence" to outline
        return np.zeros_like(mask)
    return mask & (a > 0)


def colourise(values: np.ndarray) -> np.ndarray:
    """[0, 1] values -> uint8 RGB through the inferno samples."""
    x = np.clip(values, 0, 1) * (len(_INFERNO) - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, len(_INFERNO) - 1)
    t = (x - lo)[..., None]
    return (_INFERNO[lo] * (1 - t) + _INFERNO[hi] * t).round().astype(np.uint8)


def _inferno_scale() -> list[list]:
    return [
        [i / (len(_INFERNO) - 1), f"rgb({r:.0f},{g:.0f},{b:.0f})"]
        for i, (r, g, b) in enumerate(_INFERNO)
    ]


def overlay_rgb(
    shown: np.ndarray,
    attribution: np.ndarray,
    opacity: float = 0.5,
    top_k_percent: float | None = 10.0,
    body: np.ndarray | None = None,
) -> np.ndarray:
    """The display image (uint8 grey or RGB) with the heat map blended in and the top-k % outline
    (inside ``body`` when given)."""
    grey = shown if shown.ndim == 3 else np.repeat(shown[..., None], 3, axis=2)
    rel = relative_map(attribution)
    if rel.shape != grey.shape[:2]:
        raise ValueError(f"attribution {rel.shape} and image {grey.shape[:2]} differ in size")
    alpha = (opacity * (rel >= FLOOR))[..., None]
    out = grey.astype(np.float32) * (1 - alpha) + colourise(rel).astype(np.float32) * alpha
    if top_k_percent:
        region = top_k_mask(attribution, top_k_percent, body)
        edge = region & ~ndimage.binary_erosion(
            region, iterations=max(1, round(max(rel.shape) / 256))
        )
        out[edge] = (0, 229, 255)
    return out.round().astype(np.uint8)


def write_overlay_png(
    path: Path,
    shown: np.ndarray,
    attribution: np.ndarray,
    opacity: float = 0.5,
    top_k_percent: float | None = 10.0,
    body: np.ndarray | None = None,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_rgb(shown, attribution, opacity, top_k_percent, body)).save(
        path, format="PNG"
    )
    return path


def saliency_figure(
    shown: np.ndarray,
    attribution: np.ndarray,
    spacing_mm: tuple[float, float] | None,
    opacity: float = 0.5,
    top_k_percent: float | None = 10.0,
    lesion_mask: np.ndarray | None = None,
    height: int = 520,
    body: np.ndarray | None = None,
) -> go.Figure:
    """The Imaging page's figure (image in mm, scale bar, AI outline) with the heat map and top-k
    contour (inside ``body`` when given: never over the air around it)."""
    fig = viewer.image_figure(
        shown, spacing_mm, mask=lesion_mask, height=height, mask_style=AI_OUTLINE_ON_HEAT_MAP
    )
    rows, cols = shown.shape[:2]
    step = max(1, math.ceil(max(rows, cols) / viewer.MAX_DISPLAY_SIDE))
    dy, dx = spacing_mm if spacing_mm else (1.0, 1.0)
    rel = relative_map(attribution)[::step, ::step]
    z = np.where(rel >= FLOOR, rel, np.nan)
    fig.add_trace(
        go.Heatmap(
            z=z,
            x0=dx * step / 2,
            dx=dx * step,
            y0=dy * step / 2,
            dy=dy * step,
            zmin=0.0,
            zmax=1.0,
            colorscale=_inferno_scale(),
            opacity=opacity,
            name="attribution",
            hoverinfo="skip",
            colorbar={"title": {"text": "relative<br>evidence"}, "thickness": 12, "len": 0.6},
        )
    )
    if top_k_percent:
        region = top_k_mask(attribution, top_k_percent, body)[::step, ::step]
        if region.any():
            r, c = viewer.outline_path(region)  # every piece of the contour in one trace
            fig.add_trace(
                go.Scatter(
                    x=c * step * dx,
                    y=r * step * dy,
                    mode="lines",
                    line={"color": TOP_K_COLOUR, "width": 2},
                    name=f"top {top_k_percent:g} % of the map",
                    legendgroup="topk",
                    showlegend=True,
                    hoverinfo="name",
                )
            )
    return fig
