"""Declares the viewer component (Streamlit components v1, served from the built bundle) and mounts it.

Why components v1 and not v2: v1 serves a folder of built files inside an iframe by
path, which works from a source checkout, an editable install and a wheel alike;
v2 finds its assets through an installed package's manifest. The iframe also keeps
NiiVue's WebGL canvas and styles apart from the page. The image travels as bytes
(Streamlit sends ``bytes`` arguments in binary, not as base64 text), once per image:
the viewer reloads only when the payload's id changes.

Payloads are kept per content (a hash of the arrays and the options, a few ms) for the last
few images: the page reruns on every widget change, and the same series is sent again without
rebuilding its NIfTI files and outlines (about 45 ms for a 128 x 128 x 64 volume with an outline).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
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

CACHED_PAYLOADS = 4  # a few images' worth (a 128 x 128 x 64 volume and its outline: about 2 MB)
_payloads: OrderedDict[str, ViewerPayload] = OrderedDict()
_payloads_lock = threading.Lock()  # the app's sessions run their scripts in threads


def _feed(digest, array: object) -> None:
    """Adds an array (dtype, shape and bytes) or a plain value to ``digest``."""
    if array is None:
        digest.update(b"-")
        return
    a = np.ascontiguousarray(array)
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.data if a.dtype != object else repr(array).encode())


def content_key(
    volume: np.ndarray,
    affine: np.ndarray | None,
    spacing: Sequence[float] | None,
    overlays: Sequence[Overlay],
    options: dict,
) -> str:
    """A digest of everything ``payload`` reads: the same key, the same payload."""
    digest = hashlib.sha256()
    for array in (volume, affine, None if spacing is None else np.asarray(spacing, dtype=float)):
        _feed(digest, array)
    for o in overlays:
        fields = [o.name, o.kind, list(o.color), o.colormap, o.opacity, o.visible, o.threshold]
        digest.update(json.dumps(fields + [o.note], default=str).encode())
        _feed(digest, o.data)
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cached_payload(
    volume: np.ndarray,
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    overlays: Sequence[Overlay] = (),
    **options,
) -> ViewerPayload:
    """``payload(...)``, built once per content among the last ``CACHED_PAYLOADS`` images."""
    key = content_key(volume, affine, spacing, overlays, options)
    with _payloads_lock:
        if key in _payloads:
            _payloads.move_to_end(key)
            return _payloads[key]
    data = payload(volume, affine, spacing, overlays, **options)
    with _payloads_lock:
        _payloads[key] = data
        while len(_payloads) > CACHED_PAYLOADS:
            _payloads.popitem(last=False)
    return data


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
    data = cached_payload(
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
