"""The structural sanity gate: cheap checks that an image is a plausible picture before anything
reads it (issue 24).

Why apart from the reader's header checks: those ask "can this be decoded?"; these ask "is what
was decoded worth showing a model?". A file can decode cleanly and still be garbage: a zero
Rescale Slope makes every pixel the intercept, a huge intercept overflows to infinity, a 1-bit
Bits Allocated over 16-bit data decodes as noise followed by megabytes nobody declared, an
all-zero frame carries no image at all. Each gets a confident AI read if nothing stops it.

``check_header`` runs on the frame's attributes before any value is used, ``check_excess`` on
native pixel data, ``check_pixels`` on the decoded frame: ``read_dicom`` calls all three (a blank
frame may still be shown), and ``check_readable`` (no constant frame either) runs before every
AI read (``models.inference.read.read_image``), so every model read passes the gate first.
The learned out-of-distribution guard (``models.inference``) runs after it, on images that pass.
Each refusal is an ``ImplausibleImage`` whose message says what is wrong and, for multi-frame
images, which frame; ``read_dicom`` re-raises it as ``reader.ImplausibleImageError`` (a
``DicomReadError``). This module imports nothing of the reader, so the reader can import it.
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset

__all__ = [
    "ImplausibleImage",
    "check",
    "check_excess",
    "check_header",
    "check_pixels",
    "frame_label",
]


class ImplausibleImage(ValueError):
    """The image decodes but is not a plausible picture; the message says why, for a user."""


def frame_label(frame: int, n_frames: int) -> str:
    """'' for a single-frame image, else 'frame 3 of 12' (numbered from 1, as people count)."""
    return "" if n_frames <= 1 else f"frame {frame + 1} of {n_frames}"


def _where(frame: int, n_frames: int) -> str:
    label = frame_label(frame, n_frames)
    return f" ({label})" if label else ""


def check_header(ds: Dataset, frame: int = 0, n_frames: int = 1) -> None:
    """Refuse a Modality LUT that maps every pixel to one value or to nothing finite."""
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    for name, value in (("Rescale Slope", slope), ("Rescale Intercept", intercept)):
        if value in (None, ""):
            continue
        try:
            number = float(value[0] if isinstance(value, list | tuple) else value)
        except (TypeError, ValueError, IndexError):
            raise ImplausibleImage(f"{name} {str(value)[:32]!r} is not a number.") from None
        if not math.isfinite(number) or abs(number) > 1e12:
            raise ImplausibleImage(
                f"{name} of {number:g} is not a plausible value{_where(frame, n_frames)}."
            )
        if name == "Rescale Slope" and number == 0:
            raise ImplausibleImage(
                "Rescale Slope is 0: every pixel would have the same value; the header is wrong."
            )


def check_excess(actual: int, expected: int, n_frames: int) -> None:
    """Native pixel data must not hold a whole frame more than the header declares.

    Extra bytes mean the header describes something else than the data: a wrong Bits Allocated
    (1 over 16-bit data), a wrong Number of Frames, or data appended to the file. Less than a
    frame of trailing bytes is padding, which real files carry (pydicom's MR_small_padded.dcm)."""
    frame_bytes = expected / max(n_frames, 1)
    extra = actual - expected
    if extra > 1 and extra >= frame_bytes:
        raise ImplausibleImage(
            f"The pixel data holds {actual:,} bytes but the header declares {expected:,} (about "
            f"{extra / max(frame_bytes, 1):.1f} more frames' worth): its bit depth or frame count "
            "does not match the data."
        )


def check_pixels(
    pixels: np.ndarray, frame: int = 0, n_frames: int = 1, *, allow_constant: bool = False
) -> None:
    """Refuse a decoded frame with non-finite values or (unless ``allow_constant``: the viewer may
    show a blank frame, a model may not read one) a single value everywhere."""
    where = _where(frame, n_frames)
    finite = np.isfinite(pixels)
    if not finite.all():
        bad = int(pixels.size - np.count_nonzero(finite))
        raise ImplausibleImage(
            f"{bad:,} of {pixels.size:,} pixels are not finite numbers{where}: the rescale values "
            "or the pixel data are wrong."
        )
    if allow_constant and pixels.size:
        return
    if pixels.size == 0 or float(pixels.max()) == float(pixels.min()):
        value = float(pixels.flat[0]) if pixels.size else float("nan")
        raise ImplausibleImage(
            f"Every pixel has the same value ({value:g}){where}: there is no image to read."
        )


def check(pixels: np.ndarray, ds: Dataset, frame: int = 0, n_frames: int = 1) -> None:
    """Both checks, for a caller (e.g. another guard) that holds the data set and a decoded frame."""
    check_header(ds, frame, n_frames)
    check_pixels(pixels, frame, n_frames)


def check_readable(image) -> None:
    """The gate before a model reads a ``DicomImage``: call it first (the learned guard runs after).

    ``read_dicom`` already refused what cannot be a picture; this adds what cannot be *read*:
    a frame with one value everywhere. Typed loosely so this module never imports the reader."""
    check_pixels(image.pixels, image.frame, image.n_frames)
