"""The Imaging page's saliency section (AppTest) and the figures it draws (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard.figures.saliency import overlay_rgb, saliency_figure, top_k_mask
from dashboard.panels import saliency as saliency_panel
from models.saliency import methods as saliency
from tests.dashboard.app_pages.test_imaging_page import (
    imaging_db,  # noqa: F401  (module fixture: demo store with a brain slice)
    viewers,
)
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")


def _entry(rho: float, pointing_low: float, deletion_low: float, insertion_low: float) -> dict:
    return {
        "n_images": 20,
        "pointing_game": {"value": 0.9, "ci_low": pointing_low, "ci_high": 1.0},
        "deletion_auc": 0.2,
        "deletion_auc_random": 0.3,
        "deletion_gain": {"value": 0.1, "ci_low": deletion_low, "ci_high": 0.2},
        "insertion_auc": 0.9,
        "insertion_auc_random": 0.8,
        "insertion_gain": {"value": 0.1, "ci_low": insertion_low, "ci_high": 0.2},
        "infidelity": 1.5,
        "sensitivity_max": 0.2,
        "latency_ms": {"median": 40.0, "p95": 60.0},
        "sanity": {"spearman_abs": {"value": rho}, "threshold": 0.5, "passed": rho < 0.5},
    }


QUALITY = {
    "recommended": ["integrated_gradients"],
    "pointing_game_random": 0.02,
    "methods": {
        "integrated_gradients": _entry(0.3, 0.8, 0.05, 0.05),  # both checks pass
        "gradcam": _entry(0.7, 0.8, 0.05, 0.05),  # fails randomisation
        "smoothgrad": _entry(0.3, 0.01, 0.05, -0.1),  # passes randomisation, fails localisation
    },
}


def _target_box(at):
    """The explained-class picker (keyed by image, frame and model)."""
    return next(s for s in at.selectbox if s.key and s.key.startswith("saliency_target_"))


@pytest.fixture
def brain_page(imaging_db, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ONCOLENS_DB", str(imaging_db["db"]))
    calls = []
    real = saliency.explain_image

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(saliency, "explain_image", counting)
    return open_page("imaging", patient=str(imaging_db["brain_pid"])), calls


def test_the_map_is_shown_with_its_quality_and_cached(brain_page):
    at, calls = brain_page
    assert not at.exception and not at.error
    assert "Saliency: where the model found its evidence" in texts(at.markdown)
    picker = at.selectbox(key="saliency_method")
    assert len(picker.options) == len(saliency.METHODS)
    assert all(
        " · " in o and ("pass" in o or "FAILS" in o or "not measured" in o) for o in picker.options
    )  # each method says its verdict
    charts = at.get("plotly_chart")
    assert len(charts) == 1  # the image with its heat map (the image itself is in the viewer)
    (spec,) = viewers(at)  # and the same map is the viewer's saliency overlay, off until asked for
    assert {o["name"]: o["visible"] for o in spec["overlays"]}["Saliency"] is False
    assert "computed in" in texts(at.caption) and "The clinician decides" in texts(at.caption)
    # the sanity badge (or the note that the card has no figures yet) sits beside the map
    assert texts(at.success) + texts(at.error) + texts(at.info)
    first = len(calls)
    assert first >= 1
    at.slider(key="saliency_opacity").set_value(0.8).run()
    at.slider(key="saliency_top_k").set_value(20).run()
    assert not at.exception and len(calls) == first  # drawing changed, the map was not recomputed


def test_two_methods_side_by_side_and_another_class(brain_page):
    at, calls = brain_page
    at.selectbox(key="saliency_method").set_value("gradcam").run()
    at.toggle(key="saliency_compare").set_value(True).run()
    assert not at.exception
    second = at.selectbox(key="saliency_method_b")
    assert len(second.options) == len(saliency.METHODS) - 1
    assert not any(o.startswith("Grad-CAM") for o in second.options)
    second.set_value("integrated_gradients").run()
    assert len(at.get("plotly_chart")) == 2  # one heat map per method
    assert "Grad-CAM of" in texts(at.caption) and "Integrated gradients of" in texts(at.caption)
    _target_box(at).set_value(0).run()
    assert not at.exception and "of “no tumour”" in texts(at.caption)


def test_labels_badges_and_default_follow_the_card():
    assert saliency_panel.default_method(QUALITY) == "integrated_gradients"
    assert saliency_panel.default_method(None) == "gradcam"
    assert "FAILS randomisation" in saliency_panel.method_label(QUALITY, "gradcam")
    assert "randomisation + localisation pass" in saliency_panel.method_label(
        QUALITY, "integrated_gradients"
    )
    # passing the randomisation check alone is not enough: labelled as failing localisation
    assert "FAILS localisation" in saliency_panel.method_label(QUALITY, "smoothgrad")
    assert "not measured" in saliency_panel.method_label(QUALITY, "occlusion")
    figures, sanity = saliency_panel.quality_lines(QUALITY, "gradcam")
    assert "pointing game** 0.90" in figures and sanity.startswith("Failed")
    _, sanity = saliency_panel.quality_lines(QUALITY, "smoothgrad")
    assert sanity.startswith("Fails localisation") and "random map" in sanity
    assert saliency_panel.quality_lines(QUALITY, "occlusion")[1] is None


def test_the_top_k_contour_is_not_drawn_over_air():
    """A brain phantom: the strongest map values sit in the air around the head; no contour there."""
    from models.inference.preprocess import body_mask
    from models.training import synthetic as phantoms

    p = phantoms.brain_mri(np.random.default_rng(2), False)
    body = body_mask(p.pixels)
    air = p.pixels == p.pixels.min()
    assert body.mean() > 0.2 and (body & air).mean() < 0.05 * air.mean()
    attribution = np.where(body, 0.1, 1.0).astype(np.float32)  # all "evidence" in the air
    assert top_k_mask(attribution, 10)[~body].any()  # without the body, the contour is in the air
    inside = top_k_mask(attribution, 10, body)
    assert inside.any() and not inside[~body].any()
    shown = np.full(p.pixels.shape, 80, dtype=np.uint8)
    fig = saliency_figure(shown, attribution, p.spacing_mm, top_k_percent=10, body=body)
    rows, cols = np.nonzero(body)
    (trace,) = [t for t in fig.data if t.type == "scatter" and "top 10 %" in (t.name or "")]
    r = np.asarray(trace.y, dtype=float) / p.spacing_mm[0]  # NaN between the contour's pieces
    c = np.asarray(trace.x, dtype=float) / p.spacing_mm[1]
    assert np.nanmin(r) >= rows.min() - 2 and np.nanmax(r) <= rows.max() + 2
    assert np.nanmin(c) >= cols.min() - 2 and np.nanmax(c) <= cols.max() + 2


def test_heat_map_figure_and_png_overlay():
    shown = np.full((100, 150), 80, dtype=np.uint8)
    attribution = np.zeros((100, 150), dtype=np.float32)
    attribution[40:60, 70:100] = np.linspace(0.1, 1.0, 30)[None, :]
    attribution[0, 0] = -5.0  # evidence against the class is not drawn
    fig = saliency_figure(shown, attribution, (0.5, 0.5), opacity=0.4, top_k_percent=2)
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    assert heat.opacity == 0.4 and heat.dx == 0.5 and np.nanmax(heat.z) == 1.0
    assert np.isnan(heat.z[0, 0])
    contour = [t for t in fig.data if t.type == "scatter" and "top 2 %" in (t.name or "")]
    xs = np.asarray(contour[0].x, dtype=float)
    assert np.nanmax(xs) <= 100 * 0.5 and np.nanmin(xs) >= 70 * 0.5
    mask = top_k_mask(attribution, 2)
    assert mask.sum() == pytest.approx(0.02 * mask.size, rel=0.35) and mask[:, :70].sum() == 0
    rgb = overlay_rgb(shown, attribution, opacity=0.5, top_k_percent=10)
    assert rgb.shape == (100, 150, 3) and (rgb[5, 5] == 80).all() and not (rgb[50, 95] == 80).all()
    with pytest.raises(ValueError):
        overlay_rgb(shown, attribution[:50])


def test_a_speckled_top_k_contour_is_one_trace_with_every_piece():
    """Integrated gradients' maps are speckled: their top-k % region falls into many pieces. One trace
    (NaN between pieces) draws them all; a trace per piece made 120-170 traces (issue 23)."""
    from skimage import measure

    rng = np.random.default_rng(0)
    attribution = rng.random((120, 90)).astype(np.float32)  # every pixel its own value: many pieces
    shown = np.full(attribution.shape, 80, dtype=np.uint8)
    fig = saliency_figure(shown, attribution, (0.5, 0.25), top_k_percent=10)
    (trace,) = [t for t in fig.data if t.type == "scatter" and "top 10 %" in (t.name or "")]
    xs, ys = np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)
    region = top_k_mask(attribution, 10)
    pieces = measure.find_contours(np.pad(region.astype(np.uint8), 1), 0.5)
    assert len(pieces) > 50  # the case this is about
    assert np.isnan(xs).sum() == np.isnan(ys).sum() == len(pieces) - 1  # one gap between two pieces
    first = pieces[0] - 0.5  # (row, col) in pixels, a pixel's centre at index + 0.5
    n = len(first)
    assert np.allclose(ys[:n], first[:, 0] * 0.5) and np.allclose(xs[:n], first[:, 1] * 0.25)
    assert np.isnan(xs[n])
    # the lesion outline is one trace too, whatever its number of pieces
    mask = np.zeros(attribution.shape, dtype=bool)
    mask[10:20, 10:20] = mask[60:70, 40:50] = True
    fig = saliency_figure(shown, attribution, (0.5, 0.25), lesion_mask=mask)
    assert len([t for t in fig.data if t.name == "AI lesion outline"]) == 1


def test_occlusion_is_computed_only_when_asked(brain_page):
    at, calls = brain_page
    at.selectbox(key="saliency_method").set_value("occlusion").run()
    assert not at.exception and "occlusion" not in calls
    assert "computed only when asked" in texts(at.caption)
    at.button(key="saliency_go_a").click().run()
    assert not at.exception and "occlusion" in calls
    assert "Occlusion of" in texts(at.caption)
    assert "it shows where the model looked" in texts(at.info).lower() or "not a finding" in texts(
        at.info
    )
    _target_box(at).set_value(0).run()  # another class: asked again, not computed
    assert calls.count("occlusion") == 1
