"""The viewer as the Imaging page uses it: one DICOM frame with the AI read's overlays, and the demo volume.

Kept here rather than in the page so the page reads like a description of the UI;
the geometry and overlay rules are pure functions in ``dashboard.figures.volume``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from dashboard import resources
from dashboard.components.viewer.component import (
    ViewerUnavailableError,
    show_problem,
    volume_viewer,
)
from dashboard.figures import formats
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
from models.saliency import verdict as verdicts
from models.volumes.measure import model_grid_to_source

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


# --- a series read in 3D, with its outline and its saliency map (issue 21 items 5 and 6) -------

SALIENCY_3D = "Saliency (Grad-CAM 3D)"
VERDICT_MEANING = {
    verdicts.TRUSTWORTHY: "the map passed the randomisation and localisation checks on held-out "
    "demo volumes: it shows where the model's evidence lies (not the lesion's border).",
    verdicts.NOT_MEASURED: "its checks were not measured for these weights: read the map as "
    "unverified, and never as the lesion's position.",
}
FAILING_MEANING = "do not read the lesion's position from the map."


def on_source_grid(values: np.ndarray, model_affine_ras: np.ndarray, volume) -> np.ndarray:
    """A map on the model's grid (``model_affine_ras``: voxel -> RAS mm) resampled (linear) onto
    the series' own grid, so the viewer lays it over the voxels the radiologist reads."""
    return model_grid_to_source(
        np.asarray(values, np.float32), model_affine_ras, volume.affine_ras, volume.shape, order=1
    )


def _model_label(row) -> str:
    """The picker's option: the model and version only. Its read (label, refusal) is not shown
    here: the picker stands before the ethics board's gate, which decides whether that read may
    be shown at all (``gate_view``)."""
    return f"{row.model_name} {row.model_version}"


def _percent(p: float) -> str:
    """A probability in words that never claims certainty the model cannot have."""
    return "> 99.9 %" if p > 0.999 else "< 0.1 %" if p < 0.001 else f"{100 * p:.1f} %"


def _verdict_box(view: resources.SeriesView, explained: dict | None) -> None:
    """Beside the viewer: research use, how sure the read is, and what the map's verdict means."""
    # lazy: the 3D saliency module (torch) only where a series is shown in 3D
    from models.saliency import volume as saliency_volume

    read, bundle = view.read, view.bundle
    st.caption(f"AI ({bundle.name} {bundle.version}) · research use, not a medical device.")
    if read.refused:
        st.warning(
            f"Refused by the input check: {read.refused}. The model was not asked, so there is "
            "no outline and no saliency map.",
            icon=":material/block:",
        )
        return
    check = read.input_check
    st.metric("3D read", str(read.label).capitalize())
    # "no lesion" with a high probability reads as a contradiction: say what the number is
    said = (
        f"Probability of a lesion {_percent(read.probability)} (not calibrated)"
        if read.lesions
        else f"Most confident voxel {_percent(read.probability)} (not calibrated); a lesion is "
        f"called from {_percent(bundle.min_probability)} in a component of several voxels"
    )
    st.caption(
        f"{said} · input check {check.score:.2f} / {check.threshold:.2f} (in range)"
        + (
            f" · largest lesion {read.lesions[0].volume_ml:.2f} mL, "
            f"{read.lesions[0].longest_axial_diameter_mm:.1f} mm"
            if read.lesions
            else " · no lesion outlined"
        )
    )
    v = saliency_volume.card_verdict(bundle, "gradcam")
    meaning = VERDICT_MEANING.get(v.status, FAILING_MEANING)
    (st.success if v.trustworthy else st.warning)(
        f"Grad-CAM 3D verdict: **{v.status}**"
        + (f" ({'; '.join(v.reasons)})" if v.reasons else "")
        + f". What it means: {meaning}"
    )
    if explained is not None:
        where = "inside" if explained.get("peak_in_target_region") else "outside"
        st.caption(
            f"Map peak {where} the explained region ({explained.get('target', '')}); "
            f"{explained.get('latency_ms', 0):.0f} ms."
            + "".join(f" {note.capitalize()}." for note in explained.get("notes", ()))
        )


def show_series(
    ref: resources.StoreRef,
    person_id: int,
    series_uid: str,
    gate: Callable[[resources.SeriesView], resources.SeriesView] | None = None,
) -> resources.SeriesView | None:
    """One of her series that is a volume, as the Imaging page's picker offers it (once, never as
    its slices): the volume in the viewer with its 3D read's outline and, on request, the Grad-CAM
    map; a volume without a 3D read on record is shown with the reason; a series that cannot be
    rebuilt says why. ``gate``: the page's ethics-board sign-off (``session.signoff.gate_view``,
    which components may not import), applied to the view before anything of its read is drawn.
    Returns the view shown with a read (for the page's audit), else None."""
    reads, _ = resources.volume_reads(ref, person_id)
    rows = list(reads[reads["series_uid"] == series_uid].itertuples(index=False))
    row = rows[0] if rows else None
    if len(rows) > 1:  # read by several 3D models (a registered bundle beside the built-in one)
        if st.session_state.get("imaging_series_model") not in range(len(rows)):
            st.session_state.pop("imaging_series_model", None)  # another series: start again
        index = st.selectbox(
            "3D model",
            range(len(rows)),
            format_func=lambda k: _model_label(rows[k]),
            key="imaging_series_model",
        )
        row = rows[index]
    with st.spinner("Rebuilding the volume and reading it in 3D..."):
        view = resources.series_view(
            ref, person_id, series_uid, None if row is None else row.model_name
        )
    if (
        row is not None
        and view.read is not None
        and row.weights_sha256
        and row.weights_sha256 != view.bundle.sha256
    ):
        st.info(
            "The stored read was made with other weights of this model; the viewer shows the "
            "current weights' read."
        )
    return show_view(
        view,
        asked_key=f"oncolens.series_saliency.{series_uid}.{view.bundle.sha256 if view.bundle else ''}",
        saliency=lambda: resources.series_saliency(ref, view, "gradcam"),
        gate=gate,
    )


def show_view(
    view: resources.SeriesView,
    *,
    asked_key: str,
    saliency: Callable[[], tuple[dict, Any]],
    gate: Callable[[resources.SeriesView], resources.SeriesView] | None = None,
) -> resources.SeriesView | None:
    """A volume with its 3D read, as the Imaging page shows every series (a stored one,
    ``show_series``, or one from an upload): the volume in the viewer with the read's outline, the
    Grad-CAM map on request (``saliency()``, computed once and kept under ``asked_key``), and beside
    it the read, its input check, the map's verdict and the research-use note. A view without a read
    shows the volume and why (``note``); one that cannot be built says why (``error``). Returns the
    view when a read was shown (for the page's audit), else None.

    ``gate``: the ethics-board sign-off (``session.signoff.gate_view``), applied before anything of
    the read is drawn and drawn itself at the top of the read column, as the 2D read's is: above
    the viewer its banner pushed the volume ~75 px lower than a 2D image at 1366 x 768. A read
    withheld keeps its red error there, beside the volume shown without the read."""
    # lazy: the 3D measures (MONAI) only where a series is shown in 3D
    from models.volumes.measure import lesion_labels_on_source

    if view.error:
        st.warning(
            f"This series cannot be shown in 3D: {formats.markdown_plain(view.error)}.",
            icon=":material/broken_image:",
        )
        return None
    volume, read = view.volume, view.read
    columns = None
    if gate is not None and read is not None and not read.refused:
        # the banner beside the volume, not above it: at 1366 x 768 the image stays high
        columns = st.columns([3, 1])
        with columns[1]:
            view = gate(view)
        if view.read is None:  # withheld: the error in the read column says why, nothing else
            with columns[0]:
                _volume_in_viewer(volume, [], None)
            return None
        read = view.read
    if read is None:
        if view.note:  # none: the caller said why above (a read withheld pending sign-off)
            st.info(
                f"No 3D AI read of this series: {formats.markdown_plain(view.note)}.",
                icon=":material/block:",
            )
        _volume_in_viewer(volume, [], None)
        return None
    # the button sits beside the viewer, not above it: at 1366 x 768 the image stays high
    left, right = columns or st.columns([3, 1])
    ask = right.container()
    explained: dict | None = None
    overlays: list[Overlay] = []
    start = None
    if not read.refused and read.mask is not None:
        labels = lesion_labels_on_source(read, volume)
        if labels.any():
            overlays.append(
                Overlay(AI_OUTLINE, labels > 0, "outline", AI_OUTLINE_RGB, note="The AI lesion outline (3D)")
            )  # fmt: skip
            biggest = (labels == 1) if (labels == 1).any() else labels > 0
            start = int(np.argmax(biggest.sum(axis=(1, 2))))
        if not st.session_state.get(asked_key):
            # a callback, so the run the click starts already draws the map (and no button)
            ask.button(
                "Compute the saliency map (Grad-CAM, about 1 s)",
                key="imaging_series_saliency",
                help="Computed on request and kept for this series and these weights.",
                on_click=st.session_state.__setitem__,
                args=(asked_key, True),
            )
        if st.session_state.get(asked_key):
            with st.spinner("Computing the 3D Grad-CAM map..."):
                explained, exp = saliency()
            if exp is not None and not exp.empty:
                overlays.append(
                    Overlay(
                        SALIENCY_3D,
                        on_source_grid(exp.attribution, exp.affine_ras, volume),
                        "heat",
                        opacity=0.5,
                        note="Grad-CAM 3D: positive evidence for the lesion, scaled to its maximum",
                    )
                )
    with left:
        _volume_in_viewer(volume, overlays, start)
    with right:
        _verdict_box(view, explained)
    return view


def _volume_in_viewer(volume, overlays: list[Overlay], start: int | None) -> None:
    """A series' volume in the viewer, on its own grid, and what it is under it."""
    try:
        volume_viewer(
            volume.pixels,
            volume.affine_ras[
                :, [2, 1, 0, 3]
            ],  # the viewer indexes (x, y, z) = (column, row, slice)
            overlays=overlays,
            key="imaging_series_viewer",
            modality=volume.modality,
            units="HU" if volume.modality.upper() == "CT" else "",
            presets=window_presets(volume.modality, volume.pixels, volume.window),
            orientation_known=True,
            start_slice=start,
            height=HEIGHT,
        )
    except (ViewerInputError, ViewerUnavailableError) as exc:
        show_problem(exc)
    z, y, x = volume.shape
    dz, dy, dx = volume.spacing_mm
    st.caption(
        f"{volume.modality} series · {x}×{y}×{z} voxels · {dx:.3g}×{dy:.3g}×{dz:.3g} mm"
        + (
            " · the outline and the map are the model's, resampled onto the series' grid."
            if overlays
            else ""
        )
    )
