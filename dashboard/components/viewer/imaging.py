"""The viewer as the Imaging page uses it: one DICOM frame with the AI read's overlays, and the demo volume.

Kept here rather than in the page so the page reads like a description of the UI;
the geometry and overlay rules are pure functions in ``dashboard.figures.volume``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import resources
from dashboard.components.viewer.component import (
    ViewerUnavailableError,
    show_problem,
    volume_viewer,
)
from dashboard.figures import viewer as plotly_viewer
from dashboard.figures.volume import (
    AI_OUTLINE_RGB,
    TRUTH_OUTLINE_RGB,
    Overlay,
    ViewerInputError,
    dicom_affine,
    window_presets,
)
from models.dicom import reader as dicom
from models.saliency import methods as saliency

# At 1366 x 768 the image must sit above the fold: the viewer's canvas, its two tool rows and
# its status line fit in what the page leaves under its header (docs/imaging.md).
HEIGHT = 480
AI_OUTLINE = "AI outline"
TRUTH_OUTLINE = "True outline (phantom)"
SALIENCY = "Saliency"
DEMO_VOLUME = "Demo volume · synthetic brain MR phantom (viewer demo, no AI read)"


def image_overlays(
    shape: tuple[int, int],
    ai_mask: np.ndarray | None,
    truth_mask: np.ndarray | None,
    attribution: np.ndarray | None,
    saliency_title: str | None,
) -> list[Overlay]:
    """The AI outline (on), the phantom's true outline (off: a click away), the saliency map (off)."""
    layers = []
    if ai_mask is not None and np.any(ai_mask) and ai_mask.shape == shape:
        layers.append(
            Overlay(AI_OUTLINE, ai_mask, "outline", AI_OUTLINE_RGB, note="The AI lesion outline")
        )
    if truth_mask is not None and truth_mask.shape == shape:
        layers.append(
            Overlay(
                TRUTH_OUTLINE,
                truth_mask,
                "outline",
                TRUTH_OUTLINE_RGB,
                visible=False,
                note="Ground truth of the synthetic phantom (known only for phantoms)",
            )
        )
    if attribution is not None and attribution.shape == shape:
        layers.append(
            Overlay(
                SALIENCY,
                attribution,
                "heat",
                opacity=0.5,
                visible=False,
                note=f"{saliency_title or 'Saliency'}: positive evidence, scaled to its maximum",
            )
        )
    return layers


def show_image(
    image: dicom.DicomImage,
    header,
    *,
    ai_mask: np.ndarray | None,
    truth_mask: np.ndarray | None,
    explanation: saliency.Explanation | None,
    key: str,
) -> bool:
    """The frame in the viewer; False (after a message and the static figure) where it cannot be."""
    affine, known = dicom_affine(header, image.spacing_mm)
    try:
        volume_viewer(
            image.pixels,
            affine,
            overlays=image_overlays(
                image.pixels.shape,
                ai_mask,
                truth_mask,
                None if explanation is None else explanation.attribution,
                None if explanation is None else saliency.METHOD_TITLES[explanation.method],
            ),
            key=key,
            modality=image.modality,
            units="HU" if image.modality.upper() == "CT" else "",
            presets=window_presets(
                image.modality, image.pixels, (image.window_center, image.window_width)
            ),
            orientation_known=known,
            spacing_known=image.spacing_mm is not None,
            height=HEIGHT,
        )
        return True
    except (ViewerInputError, ViewerUnavailableError) as exc:
        show_problem(exc)
        st.caption("A static picture of the image instead (file window; no scrolling or tools):")
        st.plotly_chart(
            plotly_viewer.image_figure(dicom.display(image), image.spacing_mm, mask=ai_mask),
            config={"displaylogo": False},
        )
        return False


def show_demo_volume(key: str) -> None:
    """The synthetic brain MR phantom: something to scroll, window and measure before real series land."""
    st.info(
        "A synthetic brain MR volume (ellipsoids and one ring-enhancing lesion), drawn by "
        "`models.training.phantom_volume` to try the viewer: scroll slices, change planes, "
        "window and measure. It is not a patient and gets no AI read; its true lesion outline "
        "is a toggle in the viewer.",
        icon=":material/deployed_code:",
    )
    phantom = resources.demo_volume()
    try:
        volume_viewer(
            phantom.volume,
            phantom.affine,
            overlays=[
                Overlay(
                    TRUTH_OUTLINE,
                    phantom.lesion,
                    "outline",
                    TRUTH_OUTLINE_RGB,
                    note="Ground truth of the synthetic phantom",
                )
            ],
            key=key,
            modality="MR",
            start_slice=phantom.lesion_slice,
            height=HEIGHT,
        )
    except (ViewerInputError, ViewerUnavailableError) as exc:
        show_problem(exc)
    z, y, x = phantom.volume.shape
    dz, dy, dx = phantom.spacing_zyx
    st.caption(
        f"MR (synthetic) · {x}×{y}×{z} voxels · {dx:g}×{dy:g}×{dz:g} mm · seed 0 · "
        "wheel or ↑/↓ scroll, PgUp/PgDn 5 slices; a/o/s/x planes; w/m/c/z tools; r resets."
    )
