"""Declares the viewer component (Streamlit components v1, served from the built bundle) and mounts it.

Why components v1 and not v2: v1 serves a folder of built files inside an iframe by
path, which works from a source checkout, an editable install and a wheel alike;
v2 finds its assets through an installed package's manifest. The iframe also keeps
NiiVue's WebGL canvas and styles apart from the page. The image travels as bytes
(Streamlit sends ``bytes`` arguments in binary, not as base64 text), once per image:
the viewer reloads only when the payload's id changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from dashboard.figures.volume import Overlay, ViewerPayload, payload

BUILD_DIR = Path(__file__).resolve().parent / "frontend" / "build"


class ViewerUnavailableError(RuntimeError):
    """The built bundle is missing (a checkout without it): run ``make viewer``."""


def bundle_present() -> bool:
    """Whether the built viewer (index.html and viewer.js) is in the package."""
    return (BUILD_DIR / "index.html").is_file() and (BUILD_DIR / "viewer.js").is_file()


_component = components.declare_component("oncolens_viewer", path=str(BUILD_DIR))


def mount(data: ViewerPayload, key: str) -> None:
    """Sends ``data`` to the browser; the viewer keeps what the user did until the payload changes."""
    if not bundle_present():
        raise ViewerUnavailableError(
            f"the viewer's built files are missing from {BUILD_DIR} (run `make viewer`)"
        )
    _component(spec=data.spec, image=data.image, key=key, default=None, **data.overlays)


def volume_viewer(
    volume: np.ndarray,
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    overlays: Sequence[Overlay] = (),
    *,
    key: str,
    modality: str = "",
    units: str = "",
    presets: list[dict] | None = None,
    file_window: tuple[float, float] | None = None,
    orientation_known: bool | None = None,
    spacing_known: bool = True,
    plane: str = "AXIAL",
    start_slice: int | None = None,
    height: int = 560,
) -> ViewerPayload:
    """Shows ``volume`` ((z, y, x), or (y, x) for a 2D image) in the viewer; returns what was sent.

    ``affine``: voxel (x, y, z) index to RAS+ mm (nibabel's convention), or ``spacing``
    (dz, dy, dx) mm. Raises ``ViewerInputError`` for an array, affine or overlay it cannot show
    and ``ViewerUnavailableError`` when the bundle is missing; the caller says so on the page."""
    data = payload(
        volume,
        affine,
        spacing,
        overlays,
        modality=modality,
        units=units,
        presets=presets,
        file_window=file_window,
        orientation_known=orientation_known,
        spacing_known=spacing_known,
        plane=plane,
        start_slice=start_slice,
        height=height,
    )
    mount(data, key)
    return data


def show_problem(exc: Exception) -> None:
    """One message on the page in place of the viewer (never a traceback)."""
    st.error(f"The image viewer cannot show this: {exc}", icon=":material/broken_image:")
