"""models.dicom.reader: pydicom's whole test corpus, LUTs, spacing, frames, codecs, bad input, window()."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data.data_manager import DATA_ROOT
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    generate_uid,
)

from models.dicom.reader import (
    MAX_PIXELS,
    DicomImage,
    DicomReadError,
    FrameOutOfRangeError,
    ImageTooLargeError,
    InconsistentHeaderError,
    NoPixelDataError,
    NotDicomError,
    UnsupportedImageError,
    UnsupportedTransferSyntaxError,
    display,
    read_dicom,
    read_header,
    window,
)

# pydicom prints warnings for the corpus' deliberately odd files; they are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore")

TEST_FILES = Path(DATA_ROOT) / "test_files"
CR_MONOCHROME1 = (
    TEST_FILES / "dicomdirtests" / "77654033" / "CR1" / "6154"
)  # MONOCHROME1 CR with rescale


def corpus(name: str) -> Path:
    return TEST_FILES / name


# --- the corpus ------------------------------------------------------------------------------
# pydicom.data.get_testdata_files() returns the files shipped inside the package (the glob below)
# plus ones it downloads on demand; calling it here would try the network. Of those, 79 are
# download-only with pydicom 3.0.2 (urls.json): they are tested if a previous download left
# them in pydicom's cache, and otherwise reported as skipped.

LOCAL_FILES = sorted(p for p in TEST_FILES.glob("**/*") if p.is_file())


def _downloadable() -> list[object]:
    from pydicom.data.data_manager import online_test_file_dummy_paths

    cache = Path.home() / ".pydicom" / "data"  # pydicom's download cache, not created here
    params: list[object] = []
    for name in sorted({Path(p).name for p in online_test_file_dummy_paths()}):
        cached = cache / name
        marks = (
            () if cached.is_file() else pytest.mark.skip(reason="download-only pydicom test file")
        )
        params.append(pytest.param(cached, id=f"download/{name}", marks=marks))
    return params


# Refusals that are not simply "no image" or "not DICOM", each with the reason.
KNOWN_REFUSALS: dict[str, type[DicomReadError]] = {
    # 12-bit JPEG Extended: no permissive decoder (pylibjpeg-libjpeg is GPL-3.0, so not used).
    "JPEG-lossy.dcm": UnsupportedTransferSyntaxError,
    "JPGExtended.dcm": UnsupportedTransferSyntaxError,
    # A sequence delimiter inside the J2K codestream: corrupt for every decoder.
    "JPEG2000-embedded-sequence-delimiter.dcm": UnsupportedTransferSyntaxError,
    "MR_truncated.dcm": InconsistentHeaderError,  # pixel data shorter than Rows x Columns
    "badVR.dcm": InconsistentHeaderError,  # Number of Frames '1A'
    "meta_missing_tsyntax.dcm": InconsistentHeaderError,  # Pixel Data without any Image Pixel tags
    "nested_priv_SQ.dcm": InconsistentHeaderError,  # likewise
}


def _has_pixel_data(path: Path) -> bool:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:
        return False
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _is_image_class(path: Path) -> bool:
    """An image IOD (CT Image Storage...): missing pixels there mean a damaged file."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return False
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
    return uid is not None and "Image Storage" in pydicom.uid.UID(str(uid)).name


def _decodable(path: Path) -> bool:
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    uid = ds.file_meta.get("TransferSyntaxUID")
    try:
        return uid is None or get_decoder(uid).is_available
    except NotImplementedError:
        return False


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(TEST_FILES))) for p in LOCAL_FILES] + _downloadable(),
)
def test_every_pydicom_test_file_loads_or_is_refused_cleanly(path: Path) -> None:
    expected = KNOWN_REFUSALS.get(path.name)
    if expected is not None:
        with pytest.raises(expected):
            read_dicom(path)
        return
    if not _has_pixel_data(path):
        # a report, plan or DICOMDIR has no image; an image object without pixels is damaged
        expected_refusal = (
            InconsistentHeaderError if _is_image_class(path) else (NoPixelDataError, NotDicomError)
        )
        with pytest.raises(expected_refusal):
            read_dicom(path)
        return
    if not _decodable(path):
        with pytest.raises(UnsupportedTransferSyntaxError):
            read_dicom(path)
        return
    image = read_dicom(path)  # an image with pixel data and an installed decoder must load
    header = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
    assert image.pixels.shape == (header.Rows, header.Columns) == (image.rows, image.columns)
    assert np.isfinite(image.window_center) and image.window_width > 0
    shown = display(image)
    assert shown.dtype == np.uint8 and shown.shape == image.pixels.shape


def test_corpus_is_local_and_complete() -> None:
    # 176 files ship with pydicom 3.0.2; a new pydicom should make us look again.
    assert len(LOCAL_FILES) >= 170
    assert any(p.name == "CT_small.dcm" for p in LOCAL_FILES)


# --- greyscale pipeline ----------------------------------------------------------------------


def test_ct_small_is_in_hounsfield_units() -> None:
    ds = pydicom.dcmread(corpus("CT_small.dcm"))
    image = read_dicom(corpus("CT_small.dcm"))
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    np.testing.assert_array_equal(image.pixels, ds.pixel_array.astype(np.float32) - 1024)
    assert image.pixels.min() == -896  # lowest stored value 128, minus 1024
    assert abs(float(np.median(image.pixels))) < 50  # soft tissue near 0 HU
    assert image.modality == "CT" and image.photometric == "MONOCHROME2"
    assert image.spacing_mm == (0.661468, 0.661468) and image.spacing_source == "PixelSpacing"
    assert image.field_of_view_mm == pytest.approx((128 * 0.661468, 128 * 0.661468))
    assert image.transfer_syntax == "Explicit VR Little Endian"
    assert image.study_uid == ds.StudyInstanceUID and image.sop_instance_uid == ds.SOPInstanceUID
    assert image.series_uid == ds.SeriesInstanceUID and image.study_date == ds.StudyDate
    assert image.patient_id == ds.PatientID and (image.frame, image.n_frames) == (0, 1)
    # no Window Center/Width in the header: 1st-99th percentile window
    low, high = np.percentile(image.pixels, [1, 99])
    assert image.window_center == pytest.approx((low + high) / 2)
    assert image.window_width == pytest.approx(high - low)
    assert not image.voi_lut_applied


def test_monochrome1_file_is_inverted_with_its_window() -> None:
    ds = pydicom.dcmread(CR_MONOCHROME1)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 12
    image = read_dicom(CR_MONOCHROME1)
    modality = apply_modality_lut(ds.pixel_array, ds)
    k = (0 * 0.684 + 200) + (4095 * 0.684 + 200)  # both ends of the 12-bit stored range
    np.testing.assert_allclose(image.pixels, k - modality, rtol=1e-6)
    assert image.window_center == pytest.approx(k - 1600) and image.window_width == 2800
    # the lowest stored value is the brightest pixel
    assert image.pixels.flat[ds.pixel_array.argmin()] == image.pixels.max()


def _dataset(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attrs: object,
) -> Dataset:
    """A small, valid secondary-capture-like dataset around `pixels`."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "OT"
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.dtype.itemsize * 8)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_monochrome1_synthetic_exact_values() -> None:
    pixels = np.array([[0, 1000], [4095, 2048]], dtype=np.uint16)
    image = read_dicom(
        _bytes(_dataset(pixels, "MONOCHROME1", 12, WindowCenter=1000, WindowWidth=500))
    )
    np.testing.assert_array_equal(image.pixels, 4095 - pixels.astype(np.float32))
    assert (image.window_center, image.window_width) == (3095.0, 500.0)
    np.testing.assert_array_equal(display(image), window(4095 - pixels, 3095, 500))


@pytest.mark.parametrize("bits", [16, 12])  # 12 is non-conformant but seen; entries are the same
def test_modality_lut_sequence_is_applied(bits: int) -> None:
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, bits]
    lut.add_new(0x00283006, "US", [10, 20, 40, 80])  # LUT Data
    lut.ModalityLUTType = "US"
    pixels = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    image = read_dicom(_bytes(_dataset(pixels, ModalityLUTSequence=Sequence([lut]))))
    np.testing.assert_array_equal(image.pixels, [[10, 20], [40, 80]])


def test_voi_lut_sequence_drives_the_default_display() -> None:
    voi = Dataset()
    # inputs 100..355; output 0 below 150, a ramp 150..200, 255 above
    data = np.clip((np.arange(256) - 50) * 255 // 50, 0, 255).astype(np.uint16)
    voi.LUTDescriptor = [256, 100, 8]
    voi.add_new(0x00283006, "US", data.tolist())  # LUT Data
    pixels = np.arange(100, 400, dtype=np.uint16).reshape(15, 20)
    ds = _dataset(pixels, VOILUTSequence=Sequence([voi]), WindowCenter=1, WindowWidth=2)
    image = read_dicom(_bytes(ds))
    assert image.voi_lut_applied
    assert image.window_center == pytest.approx(175, abs=1)  # the ramp 150..200
    assert image.window_width == pytest.approx(50, abs=2)
    # by hand: inputs past the table take its last entry (pydicom's apply_voi wraps them
    # around for 8-bit tables, so the reader clips first)
    expected = data[np.clip(pixels.astype(np.int64) - 100, 0, 255)]
    np.testing.assert_array_equal(display(image), expected)
    assert display(image).max() == 255 and display(image)[-1, -1] == 255
    # the linear window approximates the LUT
    assert np.abs(display(image).astype(int) - window(image.pixels, 175, 50)).max() <= 6
    # an explicit window overrides the LUT
    np.testing.assert_array_equal(display(image, 300, 100), window(image.pixels, 300, 100))


def test_long_8_bit_voi_lut_and_monochrome1() -> None:
    # 4096 entries of 8 bits: pydicom's apply_voi alone would wrap indices past 255
    voi = Dataset()
    data = (np.arange(4096) // 16).astype(np.uint16)
    voi.LUTDescriptor = [4096, 0, 8]
    voi.add_new(0x00283006, "US", data.tolist())  # LUT Data
    pixels = np.array([[0, 300], [2000, 4095]], dtype=np.uint16)
    image = read_dicom(_bytes(_dataset(pixels, "MONOCHROME1", 12, VOILUTSequence=Sequence([voi]))))
    assert image.voi_lut_applied
    np.testing.assert_array_equal(image.pixels, 4095 - pixels)
    # MONOCHROME1: the LUT output is inverted for display
    np.testing.assert_array_equal(display(image), 255 - data[pixels])


def test_enhanced_multiframe_uses_functional_groups() -> None:
    pixels = np.stack([np.full((4, 4), 10, np.uint16), np.full((4, 4), 20, np.uint16)])
    ds = _dataset(pixels, NumberOfFrames=2)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.25]
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for slope, intercept, center in ((2, -5, 10), (3, 1, 60)):
        group, transform, voi = Dataset(), Dataset(), Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        transform.RescaleType = "US"
        voi.WindowCenter, voi.WindowWidth = center, 40
        group.PixelValueTransformationSequence = Sequence([transform])
        group.FrameVOILUTSequence = Sequence([voi])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    data = _bytes(ds)
    first, second = read_dicom(data, frame=0), read_dicom(data, frame=1)
    assert first.n_frames == 2 and second.frame == 1
    assert first.pixels[0, 0] == 2 * 10 - 5 and second.pixels[0, 0] == 3 * 20 + 1
    assert (first.window_center, second.window_center) == (10, 60)
    assert first.spacing_mm == (0.5, 0.25) and first.field_of_view_mm == (2.0, 1.0)


# --- spacing ----------------------------------------------------------------------------------


def test_imager_pixel_spacing_when_pixel_spacing_absent() -> None:
    pixels = np.zeros((30, 40), np.uint16)
    image = read_dicom(_bytes(_dataset(pixels, Modality="MG", ImagerPixelSpacing=[0.07, 0.065])))
    assert image.spacing_mm == (0.07, 0.065) and image.spacing_source == "ImagerPixelSpacing"
    assert image.field_of_view_mm == pytest.approx((30 * 0.07, 40 * 0.065))
    assert image.modality == "MG"


def test_pixel_spacing_wins_and_bad_spacing_is_ignored() -> None:
    pixels = np.zeros((3, 3), np.uint16)
    both = _dataset(pixels, PixelSpacing=[0.1, 0.2], ImagerPixelSpacing=[0.07, 0.07])
    assert read_dicom(_bytes(both)).spacing_source == "PixelSpacing"
    bad = _dataset(pixels, PixelSpacing=[0.0, 0.2], ImagerPixelSpacing=[0.07, 0.07])
    assert read_dicom(_bytes(bad)).spacing_mm == (0.07, 0.07)
    none = read_dicom(_bytes(_dataset(pixels)))
    assert (none.spacing_mm, none.spacing_source, none.field_of_view_mm) == (None, "none", None)
    assert none.body_part is None and none.study_date is None and none.patient_id is None


# --- frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "k"),
    [
        ("rtdose.dcm", 7),
        ("rtdose_rle.dcm", 14),
        ("examples_ybr_color.dcm", 17),
        ("SC_rgb_rle_2frame.dcm", 1),
    ],
)
def test_frame_k_is_the_kth_frame(name: str, k: int) -> None:
    ds = pydicom.dcmread(corpus(name))
    expected = ds.pixel_array[k].astype(np.float64)
    if ds.SamplesPerPixel == 3:
        expected = expected @ np.array([0.299, 0.587, 0.114])
    image = read_dicom(corpus(name), frame=k)
    assert (image.frame, image.n_frames) == (k, int(ds.NumberOfFrames))
    np.testing.assert_allclose(image.pixels, expected, rtol=1e-5, atol=1e-3)
    assert not np.array_equal(image.pixels, read_dicom(corpus(name), frame=0).pixels)


@pytest.mark.parametrize("frame", [-1, 15, 1000])
def test_frame_out_of_range(frame: int) -> None:
    with pytest.raises(FrameOutOfRangeError, match="15 frames") as caught:
        read_dicom(corpus("rtdose.dcm"), frame=frame)
    assert isinstance(caught.value, DicomReadError) and isinstance(caught.value, IndexError)


# --- compressed transfer syntaxes against their uncompressed twins ------------------------------

LOSSLESS_PAIRS = [
    ("MR_small.dcm", "MR_small_RLE.dcm"),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm"),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm"),
    ("MR_small.dcm", "MR_small_bigendian.dcm"),
    ("MR_small.dcm", "MR_small_implicit.dcm"),
    ("MR_small.dcm", "MR_small_padded.dcm"),
    ("rtdose.dcm", "rtdose_rle.dcm"),
    ("rtdose.dcm", "rtdose_expb.dcm"),
    ("SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm"),  # JPEG Lossless SV1
    ("SC_rgb_rle.dcm", "SC_rgb_gdcm_KY.dcm"),  # JPEG 2000, RGB
    ("liver_1frame.dcm", "liver_expb_1frame.dcm"),  # 1-bit segmentation
    ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm"),
]
LOSSY_PAIRS = [  # reference, compressed, max |difference| of luminance
    ("SC_rgb_rle.dcm", "SC_rgb_jpeg_dcmtk.dcm", 4),  # JPEG baseline, YBR_FULL
    ("SC_rgb_rle.dcm", "SC_rgb_dcmtk_+eb+cr.dcm", 4),  # JPEG baseline, RGB
    ("SC_rgb_rle.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", 10),  # JPEG baseline, YBR_FULL_422
    ("SC_rgb_rle.dcm", "SC_ybr_full_422_uncompressed.dcm", 4),
    ("SC_rgb_rle.dcm", "SC_rgb_jls_lossy_line.dcm", 2),  # JPEG-LS near-lossless, NEAR=2
]


def _needs_decoder(path: Path) -> None:
    uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if not get_decoder(uid).is_available:
        pytest.skip(f"no decoder installed for {uid.name}")


@pytest.mark.parametrize(("reference", "compressed"), LOSSLESS_PAIRS)
def test_lossless_syntaxes_match_their_reference(reference: str, compressed: str) -> None:
    _needs_decoder(corpus(compressed))
    np.testing.assert_array_equal(
        read_dicom(corpus(compressed)).pixels, read_dicom(corpus(reference)).pixels
    )


@pytest.mark.parametrize(("reference", "compressed", "tolerance"), LOSSY_PAIRS)
def test_lossy_syntaxes_are_close_to_their_reference(
    reference: str, compressed: str, tolerance: float
) -> None:
    _needs_decoder(corpus(compressed))
    difference = np.abs(
        read_dicom(corpus(compressed)).pixels - read_dicom(corpus(reference)).pixels
    )
    assert difference.max() <= tolerance and difference.mean() < 1


@pytest.mark.parametrize("uid", [JPEG2000, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless])
def test_decoders_for_common_compressed_syntaxes_are_installed(uid: pydicom.uid.UID) -> None:
    # python-gdcm (pyproject) brings JPEG Lossless and JPEG-LS; pylibjpeg-openjpeg brings J2K.
    assert get_decoder(uid).is_available


def test_unsupported_syntax_and_corrupt_stream_are_refused() -> None:
    pixels = np.zeros((8, 8), np.uint8)
    mpeg = _dataset(pixels)
    mpeg.file_meta.TransferSyntaxUID = MPEG2MPML
    mpeg.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    with pytest.raises(UnsupportedTransferSyntaxError, match="MPEG2"):
        read_dicom(_bytes(mpeg))
    j2k = _dataset(pixels)
    j2k.file_meta.TransferSyntaxUID = JPEG2000
    j2k.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    with pytest.raises(UnsupportedTransferSyntaxError, match="could not be decoded"):
        read_dicom(_bytes(j2k))


# --- sources and files without a preamble ---------------------------------------------------------


def test_path_str_bytes_and_streams_give_the_same_image(tmp_path: Path) -> None:
    path = corpus("MR_small.dcm")
    data = path.read_bytes()
    reference = read_dicom(path).pixels
    stream = io.BytesIO(data)
    sources = [str(path), data, bytearray(data), memoryview(data), stream]
    for source in sources:
        np.testing.assert_array_equal(read_dicom(source).pixels, reference)
    assert not stream.closed and stream.tell() == 0  # the caller's upload stays usable
    header = read_header(stream)
    np.testing.assert_array_equal(read_dicom(stream).pixels, reference)  # read twice
    assert header.Rows == 64
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(data)
    with copy.open("rb") as handle:
        np.testing.assert_array_equal(read_dicom(handle).pixels, reference)


def test_files_without_preamble_still_load() -> None:
    data = corpus("CT_small.dcm").read_bytes()
    reference = read_dicom(data).pixels
    assert data[128:132] == b"DICM"
    np.testing.assert_array_equal(read_dicom(data[128:]).pixels, reference)  # 'DICM', no preamble
    np.testing.assert_array_equal(read_dicom(data[132:]).pixels, reference)  # meta, no 'DICM'
    bare = _bare_dataset(pydicom.dcmread(corpus("CT_small.dcm")))
    image = read_dicom(bare)  # no meta at all: the transfer syntax is inferred from the encoding
    np.testing.assert_array_equal(image.pixels, reference)
    assert image.transfer_syntax == "Implicit VR Little Endian"


def _bare_dataset(ds: Dataset) -> bytes:
    """`ds` as a bare implicit VR little endian dataset: no preamble, no 'DICM', no meta."""
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    data = buffer.getvalue()
    assert data[:4] != b"DICM" and data[:2] == b"\x08\x00"
    return data


def test_read_header_stops_before_pixels() -> None:
    header = read_header(corpus("CT_small.dcm"))
    assert header.Modality == "CT" and "PixelData" not in header
    with pytest.raises(NotDicomError):
        read_header(b"not a dicom file at all, just some text" * 4)
    with pytest.raises(NotDicomError):
        read_header(io.BytesIO())


# --- bad input ------------------------------------------------------------------------------------


def _png_bytes() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00\x10\x00\x20\x30")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="zero-length"),
        pytest.param(np.random.default_rng(0).bytes(4096), id="random"),
        pytest.param(
            bytes(128) + b"DICM" + np.random.default_rng(1).bytes(300), id="preamble-then-noise"
        ),
        pytest.param(_png_bytes(), id="png"),
        pytest.param(b'{"00100010": {"vr": "PN"}}', id="json"),
    ],
)
def test_non_dicom_is_refused(data: bytes) -> None:
    with pytest.raises(NotDicomError):
        read_dicom(data)


def test_zero_length_file_and_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(NotDicomError, match="empty"):
        read_dicom(empty)
    renamed_png = tmp_path / "scan.dcm"
    renamed_png.write_bytes(_png_bytes())
    with pytest.raises(NotDicomError):
        read_dicom(renamed_png)
    with pytest.raises(DicomReadError, match="Could not open"):
        read_dicom(tmp_path / "absent.dcm")


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb_jpeg.dcm", "rtdose.dcm", "MR_small_RLE.dcm"]
)
@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.5, 0.9])
def test_truncated_files_are_refused(name: str, fraction: float) -> None:
    # Mostly NotDicomError (cut inside an element) or InconsistentHeaderError (image modules
    # without their pixels); a cut exactly between two elements before the image modules of a
    # class that may lack pixels (RT Dose) reads as a valid object without an image.
    data = corpus(name).read_bytes()
    with pytest.raises(DicomReadError):
        read_dicom(data[: int(len(data) * fraction)])


def test_first_half_of_ct_is_inconsistent() -> None:
    data = corpus("CT_small.dcm").read_bytes()
    with pytest.raises(InconsistentHeaderError, match="cut short"):
        read_dicom(data[: len(data) // 2])


def test_huge_header_is_refused_before_decoding() -> None:
    ds = _dataset(np.zeros((2, 2), np.uint16))
    ds.Rows = ds.Columns = 65535
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="65535"):
        read_dicom(_bytes(ds))
    assert time.perf_counter() - started < 1.0


def test_many_frames_are_refused_by_total_size() -> None:
    ds = _dataset(np.zeros((2, 2), np.uint16))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4000, 4000, 100  # 3.2 GB declared
    with pytest.raises(ImageTooLargeError, match="GiB"):
        read_dicom(_bytes(ds))
    with pytest.raises(ImageTooLargeError):
        read_dicom(corpus("CT_small.dcm"), max_pixels=128 * 127)
    assert read_dicom(corpus("CT_small.dcm"), max_pixels=128 * 128).rows == 128
    assert MAX_PIXELS == 8192 * 8192


def test_pixel_data_shorter_than_declared() -> None:
    ds = _dataset(np.zeros((10, 10), np.uint16))
    ds.PixelData = bytes(150)
    with pytest.raises(InconsistentHeaderError, match="150 bytes"):
        read_dicom(_bytes(ds))


def test_no_pixel_data() -> None:
    report = _dataset(np.zeros((2, 2), np.uint8), Modality="SR")
    for keyword in ("PixelData", "Rows", "Columns", "PhotometricInterpretation", "BitsAllocated"):
        delattr(report, keyword)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = pydicom.uid.BasicTextSRStorage
    with pytest.raises(NoPixelDataError, match="no image .it is: Basic Text SR Storage"):
        read_dicom(_bytes(report))
    with pytest.raises(NoPixelDataError, match="RT Plan"):
        read_dicom(corpus("rtplan.dcm"))


def test_image_object_without_pixel_data_is_damaged() -> None:
    # the Image Pixel module is mandatory for an image SOP class: its absence is not "no image"
    stripped = _dataset(np.zeros((2, 2), np.uint8))
    del stripped.PixelData
    with pytest.raises(InconsistentHeaderError, match="no pixel data"):
        read_dicom(_bytes(stripped))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"Rows": None}, InconsistentHeaderError),
        ({"BitsAllocated": 12}, InconsistentHeaderError),
        ({"BitsStored": 20}, InconsistentHeaderError),
        ({"PixelRepresentation": 2}, InconsistentHeaderError),
        ({"SamplesPerPixel": 3}, InconsistentHeaderError),
        ({"NumberOfFrames": -2}, InconsistentHeaderError),
        ({"PhotometricInterpretation": "CMYK"}, UnsupportedImageError),
    ],
)
def test_broken_image_pixel_module(change: dict[str, object], error: type[DicomReadError]) -> None:
    ds = _dataset(np.zeros((4, 4), np.uint16))
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    with pytest.raises(error):
        read_dicom(_bytes(ds))


def test_errors_are_plain_english_with_the_cause_kept() -> None:
    with pytest.raises(UnsupportedTransferSyntaxError) as caught:
        read_dicom(corpus("JPGExtended.dcm"))
    assert "JPEG Extended" in str(caught.value) and caught.value.__cause__ is not None
    assert "Traceback" not in str(caught.value)


def test_image_is_frozen() -> None:
    image = read_dicom(corpus("MR_small.dcm"))
    assert isinstance(image, DicomImage)
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.window_center = 0.0  # type: ignore[misc]


# --- window() ---------------------------------------------------------------------------------------


def test_window_linear_by_hand() -> None:
    # c=40, w=400: below -160 black, above 239 white, between ((x - 39.5) / 399 + 0.5) * 255
    x = np.array([-1000, -160, -159, 39.5, 238, 239, 240, np.nan])
    expected = [0, 0, 1, 128, 254, 255, 255, 0]  # -159 -> 0.64; 39.5 -> 127.5; 238 -> 254.36
    result = window(x, 40, 400)
    assert result.dtype == np.uint8
    assert result.tolist() == expected


def test_window_identity_step_and_exact() -> None:
    values = np.arange(256, dtype=np.float32).reshape(16, 16)
    np.testing.assert_array_equal(window(values, 128, 256), values)  # identity on 0..255
    assert window(np.array([9.5, 9.6]), 10, 1).tolist() == [0, 255]  # width 1: a step at c - 0.5
    assert window(np.array([-0.25, 0.0, 0.25]), 0, 0.5).tolist() == [0, 128, 255]  # LINEAR_EXACT
    with pytest.raises(ValueError):
        window(values, 0, 0)


# --- layering ---------------------------------------------------------------------------------------


def test_models_dicom_imports_neither_streamlit_nor_analytics() -> None:
    code = "import sys, models.dicom.reader; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'analytics'))))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert json.loads(out.stdout) == []


def test_big_files_are_read_header_first_with_the_same_result(monkeypatch) -> None:
    import models.dicom.reader as dicom_module

    one_pass = read_dicom(corpus("CT_small.dcm"))
    monkeypatch.setattr(dicom_module, "ONE_PASS_BYTES", 0)  # every file counts as big: two parses
    two_pass = read_dicom(corpus("CT_small.dcm"))
    assert np.array_equal(one_pass.pixels, two_pass.pixels)
    ds = _dataset(np.zeros((2, 2), np.uint16))
    ds.Rows = ds.Columns = 65535
    with pytest.raises(ImageTooLargeError, match="65535"):
        read_dicom(_bytes(ds))
