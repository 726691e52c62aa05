"""Read one DICOM image frame for display and analysis, refusing bad input with a clear reason.

`read_dicom` turns a path, an uploaded stream or raw bytes into a `DicomImage`:
one frame as float32 with the Modality LUT applied (PS3.3 C.11.1), MONOCHROME1
inverted so that higher is brighter (PS3.3 C.7.6.3.1.2), colour converted to
luminance, the pixel spacing in mm and a default window (PS3.3 C.11.2).
Every failure is a `DicomReadError` subclass whose message can be shown to a
user as it is; the pydicom or numpy exception behind it is kept as `__cause__`.

Decoding goes through pydicom's pixel pipeline and whichever decoder plugins
are installed (pylibjpeg, pylibjpeg-openjpeg, python-gdcm, Pillow); what none
of them can decode raises `UnsupportedTransferSyntaxError`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np
import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.pixels.utils import as_pixel_options, get_expected_length
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from models.dicom import sanity

__all__ = [
    "MAX_PIXELS",
    "MAX_TOTAL_BYTES",
    "DicomImage",
    "DicomReadError",
    "FrameOutOfRangeError",
    "ImageTooLargeError",
    "ImplausibleImageError",
    "InconsistentHeaderError",
    "NoPixelDataError",
    "NotDicomError",
    "UnsupportedImageError",
    "UnsupportedTransferSyntaxError",
    "display",
    "image_from_dataset",
    "read_dataset",
    "read_dicom",
    "read_header",
    "require_readable",
    "window",
]

MAX_PIXELS = 8192 * 8192
"""Largest frame accepted, in pixels (rows × columns)."""

MAX_TOTAL_BYTES = 1 << 30
"""Largest pixel data accepted, all frames and samples together, in bytes (1 GiB)."""

ONE_PASS_BYTES = 64 << 20
"""Files up to this size are parsed once (header and pixel bytes together), larger ones header first:
parsing twice cost ~1.5 ms of a 5 ms read of a 256 x 256 image (bench/bench_inference.py)."""

Source = str | os.PathLike[str] | BinaryIO | bytes | bytearray | memoryview

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DICOM_MARKERS = ("SOPClassUID", "SOPInstanceUID", *_PIXEL_KEYWORDS)
_NOT_DICOM = "This file is not a DICOM image (it has no DICOM header)."

# PS3.3 C.7.6.3.1.2: which Photometric Interpretation goes with how many samples.
_GREY = ("MONOCHROME1", "MONOCHROME2")
_PHOTOMETRIC_SAMPLES = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_PARTIAL_420": 3,
    "YBR_ICT": 3,
    "YBR_RCT": 3,
}

# ITU-R BT.601 luma weights: the Y of DICOM's YBR_FULL (PS3.3 C.7.6.3.1.2).
_LUMA = np.array([0.299, 0.587, 0.114])

# Functional group macros of enhanced multi-frame images (PS3.3 C.7.6.16) whose
# attributes replace the top-level ones for a frame.
_FRAME_MACROS = {
    "PixelMeasuresSequence": ("PixelSpacing",),  # C.7.6.16.2.1
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),  # C.7.6.16.2.9
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTSequence"),  # C.7.6.16.2.10
}
_FRAME_KEYWORDS = (
    "PixelSpacing",
    "ImagerPixelSpacing",
    "ModalityLUTSequence",
    "RescaleSlope",
    "RescaleIntercept",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
)


class DicomReadError(Exception):
    """A DICOM file could not be shown; the message is plain English for a user."""


class NotDicomError(DicomReadError):
    """The input is empty, is not DICOM, or is too damaged to parse."""


class NoPixelDataError(DicomReadError):
    """A valid DICOM object without an image (a report, an RT plan, a DICOMDIR...)."""


class UnsupportedTransferSyntaxError(DicomReadError):
    """The pixel data is compressed in a way no installed decoder can read, or is undecodable."""


class InconsistentHeaderError(DicomReadError):
    """Required Image Pixel attributes are missing or do not match the pixel data."""


class ImageTooLargeError(DicomReadError):
    """The header declares an image larger than the limits; refused before decoding."""


class FrameOutOfRangeError(DicomReadError, IndexError):
    """The requested frame index does not exist in the image."""


class ImplausibleImageError(DicomReadError):
    """The image decodes but fails the sanity gate (``models.dicom.sanity``): constant, non-finite,
    a zero rescale slope, more pixel data than declared."""


class UnsupportedImageError(DicomReadError):
    """A valid image of a kind this reader does not render (e.g. a retired colour model)."""


@dataclass(frozen=True, eq=False)
class DicomImage:
    """One decoded frame with what is needed to show and measure it.

    `pixels` is float32 with shape (rows, columns). For greyscale images it holds
    Modality LUT output (PS3.3 C.11.1: e.g. Hounsfield units for CT), mirrored
    for MONOCHROME1 so that higher is always brighter; colour images hold their
    luminance. `window_center`/`window_width` are in the same units as `pixels`.
    `spacing_mm` is (row spacing, column spacing): the distance in mm between
    the centres of adjacent rows and of adjacent columns.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    spacing_source: str
    window_center: float
    window_width: float
    voi_lut_applied: bool
    modality: str
    body_part: str | None
    photometric: str
    frame: int
    n_frames: int
    rows: int
    columns: int
    sop_instance_uid: str | None
    series_uid: str | None
    study_uid: str | None
    study_date: str | None
    patient_id: str | None
    transfer_syntax: str
    # what the study was (Study Description); with modality and body part, what picks its model
    study_description: str | None = None
    _voi_lut: Dataset | None = field(default=None, repr=False)
    _inverted_about: float | None = field(default=None, repr=False)

    @property
    def field_of_view_mm(self) -> tuple[float, float] | None:
        """(height, width) of the image in mm, or None without a known spacing."""
        if self.spacing_mm is None:
            return None
        return (self.rows * self.spacing_mm[0], self.columns * self.spacing_mm[1])


def read_header(source: Source) -> Dataset:
    """Return the dataset without its pixel data; raises `NotDicomError` for non-DICOM input."""
    with _opened(source) as stream:
        return _parse(stream, stop_before_pixels=True)


def read_dicom(source: Source, frame: int = 0, max_pixels: int = MAX_PIXELS) -> DicomImage:
    """Read frame `frame` of a DICOM image from a path, binary stream or bytes.

    A stream (e.g. Streamlit's uploaded file) is read from its current position,
    which is restored afterwards, so the same upload can be read again.

    The declared size (Rows × Columns × Number of Frames × Samples per Pixel ×
    Bits Allocated, PS3.3 C.7.6.3) is checked against `max_pixels` per frame and
    `MAX_TOTAL_BYTES` in all from the header alone, before the pixel data is
    read or anything is allocated, and only the requested frame is decoded.

    Raises a `DicomReadError` subclass for anything that cannot be shown.
    """
    return image_from_dataset(read_dataset(source, max_pixels)[0], frame, max_pixels)


def read_dataset(source: Source, max_pixels: int = MAX_PIXELS) -> tuple[Dataset, bool]:
    """The first half of ``read_dicom``: the file parsed (header and pixel bytes, nothing decoded)
    after the same size checks, and whether it parsed as a conforming DICOM file (preamble and
    'DICM' prefix; False for a bare dataset read with ``force``).

    Why apart: a caller that needs the header for something else too (``oncolens predict``'s
    series scan, ``ingest``'s filing) parses each file once and hands the dataset to
    ``image_from_dataset`` instead of parsing it again (issue 23). Raises ``DicomReadError``.
    """
    with _opened(source) as stream:
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)
        if (
            size > ONE_PASS_BYTES
        ):  # a big file: check the header before reading its pixel data at all
            _check_declared_size(_parse(stream, stop_before_pixels=True), max_pixels)
            stream.seek(start)
        ds, conforming = _parse_how(stream, stop_before_pixels=False)
        if (
            size <= ONE_PASS_BYTES
        ):  # a small file is read whole (its bytes are bounded); still checked before decoding
            _check_declared_size(ds, max_pixels)
    return ds, conforming


def image_from_dataset(ds: Dataset, frame: int = 0, max_pixels: int = MAX_PIXELS) -> DicomImage:
    """The second half of ``read_dicom``: frame ``frame`` of a dataset from ``read_dataset``
    decoded and checked. Raises a ``DicomReadError`` subclass for anything that cannot be shown."""
    try:
        return _image_from_dataset(ds, frame, max_pixels)
    except DicomReadError:
        raise
    except sanity.ImplausibleImage as exc:
        raise ImplausibleImageError(str(exc)) from exc
    except Exception as exc:  # pydicom converts raw elements lazily: bad values surface here
        raise InconsistentHeaderError(
            "The image header contains a value that cannot be interpreted."
        ) from exc


def require_readable(image: DicomImage) -> DicomImage:
    """The sanity gate before a model reads ``image`` (``models.dicom.sanity.check_readable``):
    raises ``ImplausibleImageError`` for a frame with one value everywhere; returns the image."""
    try:
        sanity.check_readable(image)
    except sanity.ImplausibleImage as exc:
        raise ImplausibleImageError(str(exc)) from exc
    return image


def window(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map `pixels` to a uint8 display image with a linear window.

    For `width` >= 1 this is the default LINEAR function of PS3.3 C.11.2.1.2.1
    with output range 0..255::

        x <= c - 0.5 - (w - 1) / 2   ->  0
        x >  c - 0.5 + (w - 1) / 2   ->  255
        otherwise                    ->  ((x - (c - 0.5)) / (w - 1) + 0.5) * 255

    rounded half up to an integer (so c=128, w=256 is the identity on 0..255).
    For 0 < `width` < 1, which that function does not allow, LINEAR_EXACT
    (C.11.2.1.3.2) is used. NaN maps to 0.
    """
    if not width > 0:
        raise ValueError(f"window width must be positive, got {width}")
    x = np.asarray(pixels, dtype=np.float64)
    if width >= 1:
        lower = center - 0.5 - (width - 1) / 2
        upper = center - 0.5 + (width - 1) / 2
        if width > 1:
            y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0
        else:
            y = np.zeros_like(x)
        y = np.where(x <= lower, 0.0, np.where(x > upper, 255.0, y))
    else:
        y = np.clip(((x - center) / width + 0.5) * 255.0, 0.0, 255.0)
    return np.floor(np.nan_to_num(y, nan=0.0) + 0.5).astype(np.uint8)


def display(
    image: DicomImage, center: float | None = None, width: float | None = None
) -> np.ndarray:
    """Return the uint8 display image: the header's VOI LUT, else a linear window.

    Without an override (`center` and `width` both None) an image whose header
    has a VOI LUT Sequence (PS3.3 C.11.2.1.1) is shown through that LUT with
    pydicom's `apply_voi_lut`, scaled to 0..255; otherwise `window()` is used
    with the given values, falling back to the image's default window.
    """
    if center is None and width is None and image._voi_lut is not None:
        return _through_voi_lut(image)
    return window(
        image.pixels,
        image.window_center if center is None else center,
        image.window_width if width is None else width,
    )


# --- reading ---------------------------------------------------------------------------


@contextmanager
def _opened(source: Source) -> Iterator[BinaryIO]:
    """`source` as a seekable stream; a caller's stream is put back where it was."""
    stream, owned = _open(source)
    start = stream.tell()
    try:
        yield stream
    finally:
        if owned:
            stream.close()
        else:
            stream.seek(start)


def _open(source: Source) -> tuple[BinaryIO, bool]:
    """Return a seekable binary stream for `source` and whether we must close it."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return path.open("rb"), True
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise DicomReadError(f"Could not open the file {path.name!r}: {reason}.") from exc
    if hasattr(source, "read"):
        if hasattr(source, "seekable") and source.seekable():
            return source, False
        return io.BytesIO(source.read()), True
    raise TypeError(f"expected a path, a binary stream or bytes, got {type(source).__name__}")


def _parse(stream: BinaryIO, stop_before_pixels: bool) -> Dataset:
    """dcmread, then a forced read for files without the 128-byte preamble (PS3.10 7.1)."""
    return _parse_how(stream, stop_before_pixels)[0]


def _parse_how(stream: BinaryIO, stop_before_pixels: bool) -> tuple[Dataset, bool]:
    """``_parse``, and whether the first, conforming read did it (False: the forced read)."""
    start = stream.tell()
    size = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    if size <= 0:
        raise NotDicomError("The file is empty.")
    try:
        return pydicom.dcmread(stream, force=False, stop_before_pixels=stop_before_pixels), True
    except InvalidDicomError:
        pass  # no preamble/'DICM' prefix: try as a bare dataset below
    except Exception as exc:
        raise NotDicomError(
            "The file starts like DICOM but could not be read; it may be damaged or cut short."
        ) from exc

    stream.seek(start)
    head = stream.read(4)
    stream.seek(start)
    try:
        if head == b"DICM":  # prefix kept, preamble dropped
            padded = io.BytesIO(bytes(128) + stream.read())
            return pydicom.dcmread(
                padded, force=False, stop_before_pixels=stop_before_pixels
            ), False
        ds = pydicom.dcmread(stream, force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:
        raise NotDicomError(_NOT_DICOM) from exc
    # force=True turns any bytes into "a dataset": keep it only if it says what it is.
    described = any(keyword in ds for keyword in _DICOM_MARKERS)
    if not (described or ("Rows" in ds and "Columns" in ds)):
        raise NotDicomError(_NOT_DICOM)
    return ds, False


def _transfer_syntax(ds: Dataset) -> UID:
    """The file's Transfer Syntax UID, inferred from the encoding for files without meta."""
    ds.ensure_file_meta()
    file_meta = ds.file_meta
    tsyntax = file_meta.get("TransferSyntaxUID")
    if tsyntax:
        return UID(str(tsyntax))
    implicit, little = ds.original_encoding
    if implicit is None:
        raise InconsistentHeaderError("The file does not say how its pixel data is encoded.")
    if implicit:
        inferred = ImplicitVRLittleEndian
    else:
        inferred = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    file_meta.TransferSyntaxUID = inferred
    return inferred


# --- the Image Pixel module (PS3.3 C.7.6.3) ----------------------------------------------


@dataclass(frozen=True)
class _Layout:
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    n_frames: int
    photometric: str
    keyword: str


def _image_from_dataset(ds: Dataset, frame: int, max_pixels: int) -> DicomImage:
    keyword = next((kw for kw in _PIXEL_KEYWORDS if kw in ds), None)
    if keyword is None:
        _refuse_without_pixels(ds)
    layout = _layout(ds, keyword)
    _check_size(
        layout.rows,
        layout.columns,
        layout.samples,
        layout.bits_allocated,
        layout.n_frames,
        max_pixels,
    )
    if not 0 <= frame < layout.n_frames:
        raise FrameOutOfRangeError(
            f"Frame {frame} was requested but the image has {layout.n_frames} "
            f"frame{'s' if layout.n_frames != 1 else ''} (numbered from 0)."
        )
    tsyntax = _transfer_syntax(ds)
    arr, photometric_out = _decode_frame(ds, layout, tsyntax, frame)

    attrs = _frame_attributes(ds, frame)
    sanity.check_header(attrs, frame, layout.n_frames)  # the sanity gate, before any value is used
    inverted_about: float | None = None
    voi_lut: Dataset | None = None
    if layout.photometric in _GREY:
        values = _modality_values(arr, attrs)
        center, width, voi_lut = _header_window(attrs)
        if layout.photometric == "MONOCHROME1":
            inverted_about = _inversion_constant(ds, attrs, values)
            values = inverted_about - values
            if center is not None:
                center = inverted_about - center
        pixels = values.astype(np.float32)
        if center is None or width is None:
            center, width = _percentile_window(pixels)
    else:
        luminance, top = _luminance(arr, ds, layout, photometric_out)
        pixels = luminance.astype(np.float32)
        center, width = top / 2, top  # full range: colour has no VOI (PS3.3 C.11.2)

    sanity.check_pixels(pixels, frame, layout.n_frames, allow_constant=True)
    spacing, spacing_source = _spacing(attrs)
    return DicomImage(
        pixels=np.ascontiguousarray(pixels),
        spacing_mm=spacing,
        spacing_source=spacing_source,
        window_center=float(center),
        window_width=float(width),
        voi_lut_applied=voi_lut is not None,
        modality=_text(ds, "Modality") or "",
        body_part=_text(ds, "BodyPartExamined"),
        photometric=layout.photometric,
        frame=frame,
        n_frames=layout.n_frames,
        rows=layout.rows,
        columns=layout.columns,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        patient_id=_text(ds, "PatientID"),
        transfer_syntax=str(tsyntax.name),
        study_description=_text(ds, "StudyDescription"),
        _voi_lut=voi_lut,
        _inverted_about=inverted_about,
    )


def _refuse_without_pixels(ds: Dataset) -> NoReturn:
    """Tell a damaged image from an object that never had one (a report, a plan...)."""
    if len(ds) == 0 or _cut_short(ds):
        raise NotDicomError(
            "The DICOM file is damaged or cut short; no image could be read from it."
        )
    sop_class = _sop_class_name(ds)
    if ("Rows" in ds and "Columns" in ds) or "Image Storage" in sop_class:
        # the Image Pixel module is mandatory in image IODs (PS3.3 C.7.6.3)
        raise InconsistentHeaderError(
            f"This {sop_class or 'image'} file has no pixel data; "
            "the file may be cut short or its pixels removed."
        )
    described = f" (it is: {sop_class})" if sop_class else ""
    raise NoPixelDataError(f"This DICOM file holds no image{described}.")


def _cut_short(ds: Dataset) -> bool:
    """Whether pydicom hit the end of the file inside an element's value."""
    for element in ds.elements():  # raw elements are yielded as read, unconverted
        if isinstance(element, RawDataElement) and element.value is not None:
            if element.length != 0xFFFFFFFF and len(element.value) < element.length:
                return True
    return False


def _layout(ds: Dataset, keyword: str) -> _Layout:
    """Check the Image Pixel module attributes that describe the pixel data (PS3.3 C.7.6.3.1)."""
    required = ["Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation"]
    if keyword == "PixelData":
        required += ["BitsStored", "PixelRepresentation"]
    missing = [kw for kw in required if ds.get(kw) in (None, "")]
    if missing:
        raise InconsistentHeaderError(
            "The image header is missing required attributes: " + ", ".join(missing) + "."
        )
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples, bits_allocated = int(ds.SamplesPerPixel), int(ds.BitsAllocated)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if rows < 1 or columns < 1:
        raise InconsistentHeaderError(f"The header declares an image of {rows} × {columns} pixels.")
    if not (bits_allocated == 1 or (bits_allocated % 8 == 0 and 8 <= bits_allocated <= 64)):
        raise InconsistentHeaderError(f"Bits Allocated of {bits_allocated} is not valid.")
    if keyword == "PixelData":
        bits_stored = int(ds.BitsStored)
        if not 1 <= bits_stored <= bits_allocated:
            raise InconsistentHeaderError(
                f"Bits Stored ({bits_stored}) must be between 1 and Bits Allocated ({bits_allocated})."
            )
        if int(ds.PixelRepresentation) not in (0, 1):
            raise InconsistentHeaderError("Pixel Representation must be 0 or 1.")
    if photometric not in _PHOTOMETRIC_SAMPLES:
        raise UnsupportedImageError(
            f"Images with photometric interpretation {photometric!r} are not supported."
        )
    if samples != _PHOTOMETRIC_SAMPLES[photometric]:
        raise InconsistentHeaderError(
            f"A {photometric} image must have {_PHOTOMETRIC_SAMPLES[photometric]} sample(s) "
            f"per pixel, but the header says {samples}."
        )
    n_frames = _number_of_frames(ds)
    return _Layout(rows, columns, samples, bits_allocated, n_frames, photometric, keyword)


def _number_of_frames(ds: Dataset) -> int:
    value = ds.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    try:
        n_frames = int(value)
    except (TypeError, ValueError) as exc:
        raise InconsistentHeaderError(f"Number of Frames {str(value)!r} is not a number.") from exc
    if n_frames < 0:
        raise InconsistentHeaderError(f"Number of Frames {n_frames} is negative.")
    return max(n_frames, 1)  # 0 is non-conformant; pydicom reads it as 1, and so do we


def _check_declared_size(header: Dataset, max_pixels: int) -> None:
    """The size check on a header read without its pixel data; bad values are left for later."""
    try:
        numbers = [int(header.get(kw) or 1) for kw in ("Rows", "Columns", "SamplesPerPixel")]
        bits_allocated = int(header.get("BitsAllocated") or 1)
        n_frames = int(header.get("NumberOfFrames") or 1)
    except Exception:
        return  # _layout() explains what is wrong once the whole file is read
    rows, columns, samples = numbers
    _check_size(rows, columns, samples, bits_allocated, max(n_frames, 1), max_pixels)


def _check_size(
    rows: int, columns: int, samples: int, bits_allocated: int, n_frames: int, max_pixels: int
) -> None:
    frame_pixels = rows * columns
    if frame_pixels > max_pixels:
        raise ImageTooLargeError(
            f"The image is {rows} × {columns} pixels; the largest accepted is "
            f"{max_pixels:,} pixels per frame."
        )
    total_bytes = math.ceil(frame_pixels * samples * n_frames * bits_allocated / 8)
    if total_bytes > MAX_TOTAL_BYTES:
        raise ImageTooLargeError(
            f"The image data would take {total_bytes / 2**30:.1f} GiB ({n_frames} frames); "
            f"the largest accepted is {MAX_TOTAL_BYTES / 2**30:.0f} GiB."
        )


def _decode_frame(ds: Dataset, layout: _Layout, tsyntax: UID, frame: int) -> tuple[np.ndarray, str]:
    """Decode one frame with pydicom's decoder for the transfer syntax (PS3.5 8, A.4)."""
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise UnsupportedTransferSyntaxError(
            f"Images encoded as {tsyntax.name} cannot be decoded here."
        ) from exc
    if tsyntax.is_encapsulated:
        if not decoder.is_available:
            raise UnsupportedTransferSyntaxError(
                f"Images compressed with {tsyntax.name} need a decoder that is not installed."
            )
    else:
        _check_native_length(ds, layout)
    try:
        arr, meta = decoder.as_array(ds, index=frame, validate=True, **as_pixel_options(ds))
    except Exception as exc:
        if tsyntax.is_encapsulated:
            raise UnsupportedTransferSyntaxError(
                f"The {tsyntax.name} compressed image could not be decoded; "
                "it may be damaged or use a variant the installed decoders do not support."
            ) from exc
        raise InconsistentHeaderError(
            "The pixel data does not match what the image header declares."
        ) from exc
    expected = (layout.rows, layout.columns) + ((layout.samples,) if layout.samples > 1 else ())
    if arr.shape != expected:
        raise InconsistentHeaderError(
            f"The decoded frame is {arr.shape} but the header declares {expected}."
        )
    return arr, str(meta.get("photometric_interpretation", layout.photometric))


def _check_native_length(ds: Dataset, layout: _Layout) -> None:
    """Uncompressed pixel data must hold every declared frame (PS3.5 8.1.1)."""
    value = ds[layout.keyword].value
    actual = len(value) if value is not None else 0
    expected = get_expected_length(ds, "bytes")
    if actual < expected:
        raise InconsistentHeaderError(
            f"The pixel data holds {actual:,} bytes but the header declares an image of "
            f"{expected:,} bytes; the file may be cut short or its header wrong."
        )
    sanity.check_excess(actual, expected, layout.n_frames)


# --- greyscale: Modality LUT, MONOCHROME1, VOI (PS3.3 C.11) --------------------------------


def _frame_attributes(ds: Dataset, frame: int) -> Dataset:
    """Spacing, Modality LUT and VOI attributes that apply to `frame`.

    Top-level attributes, replaced by the Shared and then the Per-frame
    Functional Groups of enhanced multi-frame images (PS3.3 C.7.6.16).
    """
    attrs = Dataset()
    attrs.file_meta = ds.file_meta  # LUT Data in OW needs the byte order
    attrs.set_original_encoding(*ds.original_encoding)
    for keyword in _FRAME_KEYWORDS:
        if ds.get(keyword) not in (None, ""):
            attrs.add(ds[keyword])
    groups = []
    if shared := ds.get("SharedFunctionalGroupsSequence"):
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    for group in groups:
        for macro, keywords in _FRAME_MACROS.items():
            if items := group.get(macro):
                for keyword in keywords:
                    if items[0].get(keyword) not in (None, ""):
                        attrs.add(items[0][keyword])
    if lut := attrs.get("ModalityLUTSequence"):
        if lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
            attrs.ModalityLUTSequence = _as_16_bit_lut(lut[0])
    return attrs


def _modality_values(arr: np.ndarray, attrs: Dataset) -> np.ndarray:
    """Modality LUT or Rescale Slope/Intercept (PS3.3 C.11.1) via pydicom."""
    return np.asarray(apply_modality_lut(arr, attrs), dtype=np.float64)


def _bits_stored(ds: Dataset, layout: _Layout) -> int:
    value = ds.get("BitsStored")
    return int(value) if value not in (None, "") else layout.bits_allocated


def _inversion_constant(ds: Dataset, attrs: Dataset, values: np.ndarray) -> float:
    """K such that K - x turns MONOCHROME1 (low = white) into higher = brighter.

    K is the sum of the lowest and highest possible Modality LUT outputs, taken
    from Bits Stored and Pixel Representation, so the mirror is the same for
    every frame of a file. Float pixel data uses the frame's own range.
    """
    if "PixelData" in ds:
        bits = int(ds.BitsStored)
        if int(ds.PixelRepresentation) == 1:
            stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], dtype=np.int64)
        else:
            stored = np.array([0, 2**bits - 1], dtype=np.int64)
        ends = np.asarray(apply_modality_lut(stored, attrs), dtype=np.float64)
    else:
        ends = values[np.isfinite(values)]
    if ends.size == 0:
        return 0.0
    return float(ends.min() + ends.max())


def _header_window(attrs: Dataset) -> tuple[float | None, float | None, Dataset | None]:
    """Default VOI from the header (PS3.3 C.11.2), in Modality LUT units.

    A VOI LUT Sequence (C.11.2.1.1) wins over Window Center/Width, as pydicom's
    `apply_voi_lut(prefer_lut=True)` does; its window is the input range over
    which the LUT rises, so `window()` approximates it.
    """
    voi = _voi_lut_dataset(attrs)
    if voi is not None:
        item = voi.VOILUTSequence[0]
        first = int(item.LUTDescriptor[1])
        n_entries = int(item.LUTDescriptor[0]) or 2**16
        inputs = np.arange(first, first + n_entries, dtype=np.int64)
        outputs = np.asarray(apply_voi_lut(inputs, voi), dtype=np.float64)
        changing = np.flatnonzero(np.diff(outputs) != 0)
        if changing.size:
            low, high = inputs[changing[0]], inputs[changing[-1] + 1]
            return (low + high) / 2, float(max(high - low, 1)), voi
        return float(inputs.mean()), float(max(n_entries, 1)), voi
    center, width = (
        _first_number(attrs.get("WindowCenter")),
        _first_number(attrs.get("WindowWidth")),
    )
    if center is None or width is None or width <= 0:
        return None, None, None
    return center, width, None


def _voi_lut_dataset(attrs: Dataset) -> Dataset | None:
    sequence = attrs.get("VOILUTSequence")
    if not sequence:
        return None
    item = sequence[0]
    descriptor = item.get("LUTDescriptor")
    if descriptor is None or item.get("LUTData") is None or len(descriptor) != 3:
        return None
    voi = Dataset()
    voi.file_meta = attrs.file_meta
    voi.set_original_encoding(*attrs.original_encoding)
    voi.VOILUTSequence = _as_16_bit_lut(item)
    return voi


def _as_16_bit_lut(item: Dataset) -> Sequence:
    """A LUT item (PS3.3 C.11.1.1.1) whose descriptor declares 16-bit entries.

    pydicom's apply_voi indexes with the table's own dtype, which wraps around
    for 8-bit tables of more than 256 entries, and apply_modality_lut rejects
    depths other than 8 and 16; the entries are the same either way.
    """
    descriptor = item["LUTDescriptor"]
    table = Dataset()
    table.add(DataElement(descriptor.tag, descriptor.VR, [*descriptor.value[:2], 16]))
    table.add(item["LUTData"])
    return Sequence([table])


def _through_voi_lut(image: DicomImage) -> np.ndarray:
    """Display through the header's VOI LUT, scaled from its output range to 0..255."""
    assert image._voi_lut is not None
    values = image.pixels.astype(np.float64)
    if image._inverted_about is not None:
        values = image._inverted_about - values  # back to the LUT's input units
    item = image._voi_lut.VOILUTSequence[0]
    first, n_entries = int(item.LUTDescriptor[1]), int(item.LUTDescriptor[0]) or 2**16
    # The VOI LUT input is the (integer) Modality LUT output (PS3.3 C.11.2.1.1); values
    # outside the table take its first or last entry.
    inputs = np.clip(np.rint(values), first, first + n_entries - 1).astype(np.int64)
    out = np.asarray(apply_voi_lut(inputs, image._voi_lut), dtype=np.float64)
    table = np.asarray(
        apply_voi_lut(np.arange(first, first + n_entries, dtype=np.int64), image._voi_lut),
        dtype=np.float64,
    )
    low, high = table.min(), table.max()
    scaled = (out - low) / (high - low) * 255.0 if high > low else np.zeros_like(out)
    if image._inverted_about is not None:
        scaled = 255.0 - scaled  # MONOCHROME1: high LUT output is dark
    return np.floor(np.clip(scaled, 0.0, 255.0) + 0.5).astype(np.uint8)


def _percentile_window(pixels: np.ndarray) -> tuple[float, float]:
    """Window spanning the 1st to 99th percentile of the finite pixel values."""
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [1, 99]))
    if high <= low:
        return low, 1.0
    return (low + high) / 2, high - low


# --- colour ---------------------------------------------------------------------------------


def _luminance(
    arr: np.ndarray, ds: Dataset, layout: _Layout, photometric: str
) -> tuple[np.ndarray, float]:
    """Luminance of a colour frame and the size of its value range.

    BT.601 luma of RGB, or the Y of YBR (PS3.3 C.7.6.3.1.2). pydicom's decoders
    already convert YBR_FULL/422 to RGB (as_rgb); PALETTE COLOR goes through
    `apply_color_lut` (C.7.6.3.1.5) and takes the range of its LUT entries.
    `convert_color_space` is not used for the last step: it accepts only uint8
    and rounds.
    """
    if photometric == "PALETTE COLOR":
        arr = np.asarray(apply_color_lut(arr, ds))[..., :3]
        top = float(2 ** (8 * arr.dtype.itemsize))
        photometric = "RGB"
    else:
        top = float(2 ** _bits_stored(ds, layout))
    if photometric.startswith("YBR"):
        return arr[..., 0].astype(np.float64), top
    return arr[..., :3].astype(np.float64) @ _LUMA, top


# --- small helpers --------------------------------------------------------------------------


def _spacing(attrs: Dataset) -> tuple[tuple[float, float] | None, str]:
    """Pixel Spacing, else Imager Pixel Spacing for projection images, else none.

    Pixel Spacing (PS3.3 C.7.6.2.1.1, 10.7.1.3) is in the patient. Imager Pixel
    Spacing (C.8.11.4, used by MG per C.8.11.7, CR and DX) is at the detector
    front plane, so lengths from it are not corrected for geometric
    magnification; `spacing_source` says which one was used.
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = attrs.get(keyword)
        try:
            parsed = [float(v) for v in value] if value is not None else []
        except (TypeError, ValueError):
            continue
        if len(parsed) == 2 and all(math.isfinite(v) and v > 0 for v in parsed):
            return (parsed[0], parsed[1]), keyword
    return None, "none"


def _first_number(value: Any) -> float | None:
    """The first value of a possibly multi-valued DS/IS (Window Center may hold several)."""
    if value is None or value == "":
        return None
    try:
        first = value[0] if isinstance(value, list | tuple | MultiValue) else value
        number = float(first)
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) else None


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed optional attribute is treated as absent
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _sop_class_name(ds: Dataset) -> str:
    """'CT Image Storage' etc. from the SOP Class (or the file meta's), '' when unknown."""
    file_meta = getattr(ds, "file_meta", None) or {}
    sop_class = ds.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID")
    if not sop_class:
        return ""
    name = str(UID(str(sop_class)).name)
    return "" if name == str(sop_class) else name
