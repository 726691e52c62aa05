"""Colours stay readable with colour-vision deficiency: saliency scale, diverging scale, group palette, outlines.

How: colours are simulated as a deuteranope or protanope sees them (Machado, Oliveira
& Fernandes 2009, severity 1.0, on linear sRGB) and compared in CIELAB (ΔE*ab, D65).
Each check is paired with a red–green reference that fails it, so the checks can fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dashboard.figures import cohort as cohort_figures
from dashboard.figures import common as common_figures
from dashboard.figures import saliency as saliency_figures
from dashboard.figures import viewer
from dashboard.figures.treatment import shap_beeswarm_figure

SIMULATE = {
    "typical": np.eye(3),
    "deuteranopia": np.array(
        [
            [0.367322, 0.860646, -0.227968],
            [0.280085, 0.672501, 0.047413],
            [-0.011820, 0.042940, 0.968881],
        ]
    ),
    "protanopia": np.array(
        [
            [0.152286, 1.052583, -0.204868],
            [0.114503, 0.786281, 0.099216],
            [-0.003882, -0.048116, 1.051998],
        ]
    ),
}
RED_GREEN = (
    "#d73027",
    "#1a9850",
)  # the ends of ColorBrewer's RdYlGn: what a signed map must not use


def _rgb(colour) -> np.ndarray:
    if isinstance(colour, str):
        h = colour.lstrip("#")
        return np.array([int(h[i : i + 2], 16) for i in (0, 2, 4)], dtype=float)
    return np.asarray(colour, dtype=float)


def lab(colour, vision: str = "typical") -> np.ndarray:
    c = _rgb(colour) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    linear = np.clip(SIMULATE[vision] @ linear, 0, 1)
    xyz = (
        np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
        @ linear
    )
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a, b, vision: str = "typical") -> float:
    return float(np.linalg.norm(lab(a, vision) - lab(b, vision)))


@pytest.mark.parametrize("vision", list(SIMULATE))
def test_saliency_scale_is_ordered_by_lightness_for_every_vision(vision):
    """Magnitude reads from lightness alone (black to pale yellow), so hue confusions cannot reorder it."""
    lightness = [lab(c, vision)[0] for c in saliency_figures._INFERNO]
    assert all(b - a > 5 for a, b in itertools.pairwise(lightness))
    assert lightness[-1] - lightness[0] > 90
    rendered = saliency_figures.colourise(np.linspace(0, 1, 50))
    rendered_l = [lab(c, vision)[0] for c in rendered]
    assert all(
        b >= a - 0.5 for a, b in itertools.pairwise(rendered_l)
    )  # interpolation keeps the order


@pytest.mark.parametrize("vision", ["deuteranopia", "protanopia"])
def test_diverging_scale_ends_stay_apart_where_red_green_collapses(vision):
    low, high = (
        common_figures.DIVERGING_BLUE_ORANGE[0][1],
        common_figures.DIVERGING_BLUE_ORANGE[-1][1],
    )
    assert delta_e(low, high, vision) > 80
    assert delta_e(*RED_GREEN, vision) < 30  # the reference fails the same check


def test_shap_beeswarm_uses_the_diverging_scale():
    import pandas as pd

    points = pd.DataFrame(
        {
            "feature": ["age", "age"],
            "shap_pp": [-1.0, 2.0],
            "value": [30.0, 70.0],
            "value_rank": [0.0, 1.0],
        }
    )
    scale = shap_beeswarm_figure(points, ["age"]).data[0].marker.colorscale
    assert [c for _, c in scale] == [c for _, c in common_figures.DIVERGING_BLUE_ORANGE]


@pytest.mark.parametrize("vision", list(SIMULATE))
def test_group_colours_of_up_to_four_curves_stay_distinct(vision):
    """Kaplan–Meier and forecast curves take Okabe–Ito colours in order; four groups are common."""
    assert (
        min(delta_e(a, b, vision) for a, b in itertools.combinations(common_figures.PALETTE[:4], 2))
        > 15
    )


def test_km_curves_take_the_palette_in_order():
    import pandas as pd

    km = pd.DataFrame(
        {
            "group": ["a"] * 2 + ["b"] * 2,
            "time_days": [0, 400] * 2,
            "survival": [1.0, 0.8, 1.0, 0.6],
            "ci_lower": [1.0, 0.7, 1.0, 0.5],
            "ci_upper": [1.0, 0.9, 1.0, 0.7],
        }
    )
    fig = cohort_figures.km_figure(km, "t")
    lines = [t.line.color for t in fig.data if t.mode == "lines" and t.line.color]
    assert lines[:2] == list(common_figures.PALETTE[:2])


def test_saliency_overlay_outline_stands_out_from_the_heat_map_and_the_top_k_contour():
    shown = np.zeros((32, 32), np.uint8)
    attribution = np.zeros((32, 32), np.float32)
    attribution[10:20, 10:20] = 1.0
    mask = attribution > 0
    fig = saliency_figures.saliency_figure(shown, attribution, (1.0, 1.0), lesion_mask=mask)
    outline = next(t for t in fig.data if t.name == "AI lesion outline")
    top_k = next(t for t in fig.data if (t.name or "").startswith("top "))
    assert (outline.line.color, outline.line.dash) == saliency_figures.AI_OUTLINE_ON_HEAT_MAP
    assert outline.line.dash != top_k.line.dash  # told apart without colour too
    hot = saliency_figures.colourise(np.linspace(0.3, 1.0, 30))  # where a lesion's evidence lies
    for vision in SIMULATE:
        assert min(delta_e(outline.line.color, c, vision) for c in hot) > 30
        assert (
            min(delta_e(viewer.CONTOUR_COLOUR, c, vision) for c in hot) < 10
        )  # why the orange is not used here
