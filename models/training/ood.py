"""Out-of-distribution test images: pictures the models never saw, behind valid tags of their modality.

Why: the input guard (``models.inference.guard``) is only as good as the inputs it was tried
on. These are all available offline and none was used in training: real DICOM images of other
modalities and body parts from pydicom's test corpus (CT, MR of other anatomy, NM, US, secondary
captures), non-medical photographs and textures from scikit-image's bundled data, the other
model's phantoms (a brain slice behind an MG header and the reverse), synthetic patterns and
noise. Each is written as a DICOM file with the tags the model accepts (``write_ood_dicom``),
so the whole path (reader, model choice, guard) is exercised, never the pixels alone.

Everything is seeded; what is not installed (scikit-image) is skipped and the kinds that ran
are reported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom

PYDICOM_FILES = (
    "CT_small.dcm",
    "693_J2KI.dcm",
    "MR_small.dcm",
    "examples_overlay.dcm",
    "JPEG2000.dcm",
    "examples_jpeg2k.dcm",
    "examples_palette.dcm",
    "examples_rgb_color.dcm",
    "SC_rgb_jpeg.dcm",
    "image_dfl.dcm",
)
SKIMAGE_IMAGES = (
    "camera",
    "coins",
    "moon",
    "page",
    "text",
    "astronaut",
    "coffee",
    "chelsea",
    "brick",
    "grass",
    "gravel",
    "clock",
    "cell",
    "retina",
    "immunohistochemistry",
    "rocket",
    "shepp_logan_phantom",
    "hubble_deep_field",
)
KINDS = (
    "other modality or body part (pydicom corpus)",
    "non-medical picture (scikit-image)",
    "the other model's phantom",
    "synthetic pattern",
    "noise",
)


@dataclass(frozen=True, eq=False)
class OodImage:
    kind: str  # one of KINDS
    name: str
    pixels: np.ndarray  # 2-D float, any range (scaled to stored values when written)


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4:  # frames of colour: the first
        a = a[0]
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
    elif a.ndim == 3:  # frames: the middle one
        a = a[a.shape[0] // 2]
    return a


def _pydicom_images() -> list[OodImage]:
    # lazy: pydicom's test-data manager is needed only to build this set
    from pydicom import dcmread
    from pydicom.data import get_testdata_file  # lazy: as above

    out = []
    for name in PYDICOM_FILES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                path = get_testdata_file(name)
                if path is None:
                    continue
                pixels = _grey(dcmread(path).pixel_array)
        except Exception:  # a codec missing on this machine: that file is left out, others run
            continue
        if pixels.shape[0] >= 32 and pixels.shape[1] >= 32:
            out.append(OodImage(KINDS[0], name, pixels))
    return out


def _skimage_images() -> list[OodImage]:
    try:
        # lazy: scikit-image is optional; without it this kind is skipped
        from skimage import data
    except ImportError:
        return []
    out = []
    for name in SKIMAGE_IMAGES:
        try:
            out.append(OodImage(KINDS[1], name, _grey(getattr(data, name)())))
        except Exception:  # an image whose file is not bundled in this version
            continue
    return out


def _patterns(rng: np.random.Generator, size: int = 256) -> list[OodImage]:
    yy, xx = np.mgrid[0:size, 0:size] / size
    r = np.hypot(yy - 0.5, xx - 0.5)
    return [
        OodImage(KINDS[3], "checkerboard", ((yy * 8).astype(int) + (xx * 8).astype(int)) % 2 * 1.0),
        OodImage(KINDS[3], "stripes", np.sin(2 * np.pi * 12 * xx)),
        OodImage(KINDS[3], "linear gradient", xx + 0.0 * yy),
        OodImage(KINDS[3], "radial gradient", 1 - r),
        OodImage(KINDS[3], "bright disc", (r < 0.35) * 1.0),
        OodImage(KINDS[3], "rings", np.cos(2 * np.pi * 10 * r)),
        OodImage(
            KINDS[3],
            "rectangles",
            sum(
                (abs(yy - rng.random()) < rng.random() / 4) * (abs(xx - rng.random()) < 0.1) * 1.0
                for _ in range(8)
            ),
        ),
        OodImage(
            KINDS[3], "text-like bars", (np.sin(2 * np.pi * 40 * yy) > 0.7) * (xx < 0.8) * 1.0
        ),
    ]


def _noise(rng: np.random.Generator, size: int = 256) -> list[OodImage]:
    # lazy: scipy only where this set is built
    from scipy.ndimage import gaussian_filter

    white = rng.standard_normal((size, size))
    return [
        OodImage(KINDS[4], "gaussian noise", white),
        OodImage(KINDS[4], "uniform noise", rng.random((size, size))),
        OodImage(KINDS[4], "salt and pepper", (rng.random((size, size)) < 0.05) * 1.0),
        OodImage(KINDS[4], "smooth noise", gaussian_filter(white, 6)),
        OodImage(KINDS[4], "blotchy noise", gaussian_filter(white, 20)),
        OodImage(
            KINDS[4],
            "sparse bright dots",
            gaussian_filter((rng.random((size, size)) < 0.003) * 1.0, 2),
        ),
    ]


def _other_phantoms(task_name: str, n: int, seed: int) -> list[OodImage]:
    items = (
        phantoms.sample_brain(n, seed)
        if task_name == "mammography"
        else phantoms.sample_mammograms(n, seed)
    )
    return [
        OodImage(
            KINDS[2], f"{p.modality} phantom {i}", p.pixels * p.rescale_slope + p.rescale_intercept
        )
        for i, p in enumerate(items)
    ]


def ood_images(task_name: str, seed: int = 4242, n_other_phantoms: int = 12) -> list[OodImage]:
    """The out-of-distribution set for one model (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    return [
        *_pydicom_images(),
        *_skimage_images(),
        *_other_phantoms(task_name, n_other_phantoms, seed),
        *_patterns(rng),
        *_noise(rng),
    ]


def write_ood_dicom(image: OodImage, task_name: str, path: Path) -> Path:
    """``image`` as a DICOM file the model's tags accept (MG, or MR with BodyPartExamined BRAIN).

    The pixels are scaled to 12-bit stored values; the spacing is that of the phantoms, so
    nothing but the pixels tells the image apart.
    """
    a = np.asarray(image.pixels, dtype=np.float64)
    lo, hi = float(np.min(a)), float(np.max(a))
    stored = (
        np.zeros(a.shape, np.uint16)
        if hi - lo < 1e-12
        else ((a - lo) / (hi - lo) * 4095).astype(np.uint16)
    )
    mammo = task_name == "mammography"
    fake = phantoms.Phantom(
        pixels=stored,
        mask=np.zeros(a.shape, bool),
        label="normal" if mammo else "no_tumour",
        modality="MG" if mammo else "MR",
        spacing_mm=(0.8, 0.8) if mammo else (0.9, 0.9),
        lesion_diameter_mm=None,
        rescale_slope=1.0,
        rescale_intercept=0.0,
        window_center=2048.0,
        window_width=4096.0,
        laterality="L" if mammo else None,
    )
    return write_phantom_dicom(
        fake,
        path,
        patient_id="OOD-TEST",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20250101",
    )


def read_back(
    images: list[OodImage], task_name: str, folder: Path
) -> list[tuple[OodImage, np.ndarray]]:
    """Each image written behind valid tags and read by the project's DICOM reader: (image, pixels)."""
    # lazy: the reader pulls in pydicom's pixel handlers, not needed to list the set
    from models.dicom.reader import read_dicom

    out = []
    for i, image in enumerate(images):
        path = write_ood_dicom(image, task_name, folder / f"ood_{i:03d}.dcm")
        out.append((image, read_dicom(path).pixels))
    return out
