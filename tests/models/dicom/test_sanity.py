"""The structural sanity gate (issue 24): files that decode but are not pictures are refused with a
reason before any model reads them; multi-frame refusals say which frame."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.uid import generate_uid

from models.dicom import sanity
from models.dicom.reader import (
    DicomReadError,
    ImplausibleImageError,
    InconsistentHeaderError,
    read_dicom,
    require_readable,
)
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import build_dataset


def _dataset():
    return build_dataset(
        phantoms.mammogram(
            np.random.default_rng(5), "benign", size=(64, 64), lesion_diameter_mm=12.0
        ),
        patient_id="P",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240101",
    )


def _bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_the_seed_image_passes() -> None:
    image = require_readable(read_dicom(_bytes(_dataset())))
    assert image.n_frames == 1 and sanity.frame_label(image.frame, image.n_frames) == ""


def test_one_bit_allocated_over_sixteen_bit_data_is_refused() -> None:
    ds = _dataset()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    with pytest.raises(ImplausibleImageError, match="bit depth or frame count"):
        read_dicom(_bytes(ds))


@pytest.mark.parametrize(
    ("slope", "intercept", "reason"),
    [
        (0, 1e30, "Rescale Slope is 0"),
        (1, 1e300, "not a plausible value"),
        (1e30, 0, "not a plausible value"),
    ],
)
def test_rescale_values_that_destroy_the_image_are_refused(slope, intercept, reason) -> None:
    ds = _dataset()
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    with pytest.raises(ImplausibleImageError, match=reason):
        read_dicom(_bytes(ds))


def test_non_finite_float_pixels_are_refused() -> None:
    ds = _dataset()
    pixels = np.full((64, 64), 5.0, dtype=np.float32)
    pixels[3, 4] = np.inf
    pixels[10, 10] = np.nan
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = pixels.tobytes()
    with pytest.raises(ImplausibleImageError, match="2 of 4,096 pixels are not finite"):
        read_dicom(_bytes(ds))


def test_a_constant_image_is_shown_but_never_read() -> None:
    ds = _dataset()
    ds.PixelData = np.zeros((64, 64), dtype=np.uint16).tobytes()
    image = read_dicom(_bytes(ds))  # the viewer may show a blank frame
    with pytest.raises(ImplausibleImageError, match=r"Every pixel has the same value \(0\)"):
        require_readable(image)


def test_multi_frame_refusals_name_the_frame_and_excess_frames_are_refused() -> None:
    ds = _dataset()
    frames = np.stack([np.asarray(ds.pixel_array), np.zeros((64, 64), dtype=np.uint16)])
    ds.NumberOfFrames = 2
    ds.PixelData = frames.astype(np.uint16).tobytes()
    data = _bytes(ds)
    assert require_readable(read_dicom(data, frame=0)).n_frames == 2
    with pytest.raises(ImplausibleImageError, match="frame 2 of 2"):
        require_readable(read_dicom(data, frame=1))
    ds.NumberOfFrames = 1  # the data holds a frame the header does not declare
    with pytest.raises(ImplausibleImageError, match="1.0 more frames"):
        read_dicom(_bytes(ds))
    ds.NumberOfFrames = 3  # and one it declares but does not hold
    with pytest.raises(InconsistentHeaderError):
        read_dicom(_bytes(ds))


def test_the_gate_errors_are_reader_errors() -> None:
    assert issubclass(ImplausibleImageError, DicomReadError)
