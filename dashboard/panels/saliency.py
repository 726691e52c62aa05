"""The Imaging page's saliency section: where the model found its evidence, and how far to trust the map.

One call, ``render(...)``, at the end of the page after the AI read. It shows
the chosen method's heat map over the image (opacity slider, top-k % contour),
optionally a second method beside it, each method's quality figures from the
model card (pointing game, deletion/insertion against random order,
infidelity, max-sensitivity) with the method's verdict (``models.saliency.verdict``:
trustworthy only when it passes the randomisation check AND localises better than a random
map), and the time the map took. Maps are cached in ``resources.explanation``
(image bytes, model version and weights, method, parameters, target).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from analytics.governance import audit
from dashboard import resources
from dashboard.figures.saliency import saliency_figure
from dashboard.services import plain_language
from dashboard.session import trail
from models.dicom import reader as dicom
from models.inference.preprocess import body_mask
from models.inference.registry import ModelUnavailableError
from models.saliency import methods as saliency
from models.saliency import verdict as verdicts

PASSED, FAILED, UNMEASURED = "passed", "failed", "not measured"
# Methods that re-run the model hundreds of times: off the interactive path, computed on request.
ON_REQUEST = ("occlusion", "smoothgrad")
# What the page adds to a map's own time before it is on screen (issue 23): the fragment's run that
# draws a map it does not compute, bench_pages' "Imaging: method back to Grad-CAM (cached map)"
# row: 0.52 s of server CPU (median; 0.50-0.76 s) on 2 cores, 2026-12-03 (docs/benchmarks.md).
# Its CPU, not its wall time: that run was at load 27-33, where walls are 10 x the work; on a
# quiet machine a script run's wall is about its CPU. The time announced is the card's map time
# plus this; bench_pages times each announced method against what the page said.
PAGE_S = 0.5


def on_screen_s(quality: dict | None, method: str) -> float | None:
    """Seconds from the click to the map on screen on 2 cores: the model card's median time of
    the map alone (``bench_saliency``/``quality --latency-only``) plus ``PAGE_S``; None unmeasured."""
    entry = ((quality or {}).get("methods") or {}).get(method) or {}
    typical_ms = (entry.get("latency_ms") or {}).get("median")
    return None if typical_ms is None else typical_ms / 1e3 + PAGE_S


def _ask_key(data: bytes, frame: int, method: str, target: int) -> str:
    # lazy: hashlib is imported only when this is used (start-up time)
    import hashlib

    return f"{hashlib.sha256(data).hexdigest()[:16]}:{frame}:{method}:{target}"


def _requested(data: bytes, frame: int, method: str, target: int, key: str) -> bool:
    """Whether the user asked for this slow map of this image (a new image or method asks again)."""
    return st.session_state.get(f"saliency_asked_{key}") == _ask_key(data, frame, method, target)


def sanity_of(quality: dict | None, method: str) -> str:
    entry = ((quality or {}).get("methods") or {}).get(method)
    if not entry:
        return UNMEASURED
    return PASSED if entry["sanity"]["passed"] else FAILED


def verdict_of(quality: dict | None, method: str) -> verdicts.Verdict:
    """The method's verdict from the card's saliency section (``quality``)."""
    return verdicts.verdict({"saliency": quality or {}}, method)


def method_label(quality: dict | None, method: str) -> str:
    """The picker's text: the method and its verdict, so a failing method is marked where it is offered."""
    v = verdict_of(quality, method)
    mark = {
        verdicts.TRUSTWORTHY: "✓ randomisation + localisation pass",
        verdicts.FAILS_LOCALISATION: "✗ FAILS localisation",
        verdicts.FAILS_RANDOMISATION: "✗ FAILS randomisation check",
        verdicts.FAILS_BOTH: "✗ FAILS both checks",
        verdicts.NOT_MEASURED: "checks not measured",
    }
    return f"{saliency.METHOD_TITLES[method]} · {mark[v.status]}"


def default_method(quality: dict | None) -> str:
    """The first recommended method (localises and passes the sanity check), else Grad-CAM (fastest)."""
    for method in (quality or {}).get("recommended", []):
        if method in saliency.METHODS:
            return method
    return "gradcam"


def quality_lines(quality: dict | None, method: str) -> tuple[str, str | None]:
    """(figures in one paragraph, sanity sentence) for one method; a plain note when not measured."""
    entry = ((quality or {}).get("methods") or {}).get(method)
    if not entry:
        return (
            "No quality figures for this method in the model card yet "
            "(`python -m models.saliency.quality --write-cards`).",
            None,
        )
    pg = entry["pointing_game"]
    figures = (
        f"On {entry['n_images']} held-out phantoms with known lesions: **pointing game** {pg['value']:.2f} "
        f"(95 % CI {pg['ci_low']:.2f}–{pg['ci_high']:.2f}; the map's maximum inside the true lesion) · "
        f"**deletion AUC** {entry['deletion_auc']:.2f} vs {entry['deletion_auc_random']:.2f} random (lower is "
        f"better) · **insertion AUC** {entry['insertion_auc']:.2f} vs {entry['insertion_auc_random']:.2f} random "
        f"(higher is better) · **infidelity** {entry['infidelity']:.3g} · **max-sensitivity** "
        + (f"{entry['sensitivity_max']:.3g}" if entry.get("sensitivity_max") is not None else "n/a")
        + f" · typical time of the map alone {entry['latency_ms']['median']:.0f} ms (2 cores)."
    )
    rho = entry["sanity"]["spearman_abs"]["value"]
    threshold = entry["sanity"]["threshold"]
    v = verdict_of(quality, method)
    if entry["sanity"]["passed"] and v.status == verdicts.FAILS_LOCALISATION:
        sanity_text = (
            f"Fails localisation: the map depends on the learned weights (rank correlation {rho:.2f} "
            f"< {threshold} after randomisation), but it does not find lesions better than a random "
            "map: " + "; ".join(v.reasons) + ". Do not read the lesion's position from it."
        )
    elif entry["sanity"]["passed"]:
        sanity_text = (
            f"Sanity check passed: with the model's weights re-initialised the map changes "
            f"(rank correlation {rho:.2f} < {threshold}), so it depends on what the model learned."
        )
    else:
        sanity_text = (
            f"Failed the model-randomisation sanity check: a model with random weights gives a "
            f"similar map (rank correlation {rho:.2f} ≥ {threshold}). This map may show the image's "
            "structure more than the model's reasoning; read it with care."
        )
    return figures, sanity_text


def _one_map(
    column,
    data: bytes,
    frame: int,
    image,
    ai,
    shown: np.ndarray,
    spacing,
    method: str,
    target: int,
    opacity: float,
    top_k: float,
    quality: dict | None,
    key: str,
    subject: int | None = None,
) -> saliency.Explanation | None:
    """Draws one method's map in ``column``; returns it (None where none was computed)."""
    with column:
        if method in ON_REQUEST and not _requested(data, frame, method, target, key):
            # measured, not guessed: the card's map time and the page's, both on 2 cores
            seconds = on_screen_s(quality, method)
            cost = (
                (f"about {seconds:.2g} s" if seconds < 10 else f"about {seconds:.0f} s")
                + " on screen on 2 cores, longer on a busy server"
                if seconds
                else "seconds"
            )
            st.caption(
                f"{saliency.METHOD_TITLES[method]} re-runs the model hundreds of times ({cost}), so it "
                "is computed only when asked."
            )
            # a callback, not st.rerun(): the click's own run (of the page's fragment only, not
            # of the whole page) already draws the map
            st.button(
                f"Compute the {saliency.METHOD_TITLES[method].lower()} map",
                key=f"saliency_go_{key}",
                on_click=st.session_state.__setitem__,
                args=(f"saliency_asked_{key}", _ask_key(data, frame, method, target)),
            )
            return None
        try:
            exp = resources.explanation(data, frame, image, ai.model, method, target)
        except (saliency.SaliencyError, ModelUnavailableError) as exc:
            st.error(f"No saliency map: {exc}", icon=":material/error:")
            return None
        trail.shown(
            resources.db_path(),
            "explanation_shown",
            subject=subject,  # the patient whose image is explained (pseudonymised on display)
            model_name=ai.model,
            model_version=ai.model_version,
            inputs_sha256=audit.inputs_hash(data, frame),
            details={"method": method, "target": int(target)},
        )
        fig = saliency_figure(
            shown,
            exp.attribution,
            spacing,
            opacity=opacity,
            top_k_percent=top_k,
            lesion_mask=ai.lesion_mask,
            body=body_mask(image.pixels),
        )
        st.plotly_chart(
            fig, key=f"saliency_chart_{key}", config={"scrollZoom": True, "displaylogo": False}
        )
        delta = (
            f" · convergence delta {exp.convergence_delta:.3g} (logit units)"
            if exp.convergence_delta is not None
            else ""
        )
        # the IG rule in words is docs' and the card's; the caption keeps the numbers (evaluations)
        params = ", ".join(
            f"{k} {v}" for k, v in exp.params.items() if not k.endswith("_px") and k != "rule"
        )
        st.caption(
            f"{saliency.METHOD_TITLES[method]} of “{(exp.target_label or str(exp.target)).replace('_', ' ')}” · "
            f"computed in {exp.latency_ms:.0f} ms (kept for this image, model and settings){delta}"
            + (f" · {params}" if params else "")
            + "".join(f" · {n}" for n in exp.notes)
        )
        entry = ((quality or {}).get("methods") or {}).get(method) or {}
        st.info(
            plain_language.saliency_summary(
                method_title=saliency.METHOD_TITLES[method],
                sanity=sanity_of(quality, method),
                pointing_game=(entry.get("pointing_game") or {}).get("value"),
                localises=None
                if not entry
                else not verdicts.localisation_failures(
                    entry, (quality or {}).get("pointing_game_random")
                ),
            ),
            icon=":material/record_voice_over:",
        )
        figures, sanity_text = quality_lines(quality, method)
        if sanity_text is None:
            st.info(figures, icon=":material/help:")
        else:
            # a failing verdict is a caution about the map, not an error of the page
            (st.success if verdict_of(quality, method).trustworthy else st.warning)(
                sanity_text, icon=None if verdict_of(quality, method).trustworthy else "⚠️"
            )
            st.caption(figures)
        return exp


def render(
    data: bytes,
    frame: int,
    image: dicom.DicomImage,
    ai,
    shown: np.ndarray,
    spacing,
    subject: int | None = None,
) -> saliency.Explanation | None:
    """The saliency section for the AI read ``ai`` of ``image`` (``shown`` is the windowed display image);
    ``subject``: the patient the image belongs to, named in the audit trail's explanation events.
    Returns the (first) map shown, which the page's viewer also offers as an overlay."""
    st.markdown(
        "#### Saliency: where the model found its evidence",
        help=plain_language.glossary_help("saliency", "sanity check", "pointing game"),
    )
    if ai is None:
        st.caption("No AI read for this image, so there is nothing to explain.")
        return None
    quality = resources.saliency_quality(ai.model)
    labels = list(ai.probabilities)
    controls = st.columns(
        [4, 2, 2, 2]
    )  # the method's name and verdict fit at 1366 px (docs/experience.md)
    method = controls[0].selectbox(
        "Method",
        saliency.METHODS,
        index=saliency.METHODS.index(default_method(quality)),
        format_func=lambda m: method_label(quality, m),
        key="saliency_method",
        help=plain_language.glossary_help(
            "sanity check",
            lead="Occlusion re-runs the model hundreds of times: seconds, not milliseconds.",
        ),
    )
    # keyed by image, frame and model: a class picked for another image or model never carries
    # over (a "benign" class offered for the brain model); each new read starts at its own label
    target = controls[1].selectbox(
        "Explain the class",
        list(range(len(labels))),
        index=labels.index(ai.label) if ai.label in labels else 0,
        format_func=lambda i: (
            labels[i].replace("_", " ") + (" (AI read)" if labels[i] == ai.label else "")
        ),
        key=f"saliency_target_{_ask_key(data, frame, ai.model, 0)}",
    )
    opacity = controls[2].slider("Heat-map opacity", 0.0, 1.0, 0.5, 0.05, key="saliency_opacity")
    top_k = controls[3].slider(
        "Top-k % contour",
        1,
        50,
        10,
        1,
        key="saliency_top_k",
        help="Outline of the pixels holding the strongest k % of the map.",
    )
    compare = st.toggle("Compare with a second method", key="saliency_compare")
    if compare:
        others = [m for m in saliency.METHODS if m != method]
        second = st.selectbox(
            "Second method",
            others,
            format_func=lambda m: method_label(quality, m),
            key="saliency_method_b",
        )
        left, right = st.columns(2, gap="medium")
        shown_map = _one_map(
            left,
            data,
            frame,
            image,
            ai,
            shown,
            spacing,
            method,
            target,
            opacity,
            top_k,
            quality,
            "a",
            subject,
        )
        _one_map(
            right,
            data,
            frame,
            image,
            ai,
            shown,
            spacing,
            second,
            target,
            opacity,
            top_k,
            quality,
            "b",
            subject,
        )
    else:
        shown_map = _one_map(
            st.container(),
            data,
            frame,
            image,
            ai,
            shown,
            spacing,
            method,
            target,
            opacity,
            top_k,
            quality,
            "a",
            subject,
        )
    st.caption(
        "A saliency map shows where the chosen method finds evidence for the class, not why, and it is not a "
        "finding. Maps and figures are from a model trained on synthetic phantoms. The clinician decides."
    )
    return shown_map
