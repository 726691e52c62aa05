"""The demo's 3D phantoms: brain MR on real anatomy with metastases, and a thorax CT with nodules.

Brain MR. The anatomy is the MNI152 2009c symmetric T1 template and its grey- and white-matter
maps, the files nilearn ships inside its wheel (``nilearn/datasets/data``; freely
distributable, offline; ``nilearn.datasets.load_mni152_template`` reads the same file without a
download). They are read with nibabel straight from the installed package: importing
``nilearn.datasets`` costs about 7 s on the 2-core machine, the file 0.05 s; a test checks the
array equals what nilearn's loader returns. The 1 mm template is averaged to 2 mm and turned
into a post-contrast T1 (white matter brighter than grey, CSF dark), with a smooth bias field
and Rician noise. A metastasis is drawn as BraTS draws its labels: **enhancing rim** (label 3,
bright after contrast), **necrotic core** (label 1, dark, from 12 mm) and **oedema** (label 2,
T1-hypointense, spreading through white matter around it). Its longest axis lies in the axial
plane, so its longest axial diameter (RECIST's measure for the brain, RANO-BM) is the drawn
size; the same head, centre and shape serve every time point, only the size changes.

Thorax CT. A body outline (fat, muscle), two lungs (about -850 HU with soft texture),
mediastinum and heart, a contrast-filled aorta, the spine and ribs, in Hounsfield units with
12 HU noise; the target lesion (label 1) in a lung at the size asked, and two small non-target
nodules (label 2) that do not change. Both phantoms return the voxels in DICOM's layout
(``[slice, row, column]``, axial, rows towards posterior and columns towards the patient's
left) with the LPS origin and spacing, ready for ``models.volumes.write``.

Everything is drawn from a NumPy ``Generator``: the same seed gives the same volumes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "BRAIN_LABELS",
    "CT_LABELS",
    "Lesion",
    "PhantomVolume",
    "brain_lesion",
    "brain_mr",
    "longest_axial_diameter_mm",
    "mni152_t1",
    "thorax_ct",
    "thorax_lesion",
]

BRAIN_LABELS = {1: "necrotic core", 2: "oedema", 3: "enhancing rim"}
CT_LABELS = {1: "target lesion", 2: "non-target nodule"}
BRAIN_SPACING_MM = 2.0
CT_SHAPE = (64, 192, 192)  # slices, rows, columns
CT_SPACING_MM = (3.0, 2.0, 2.0)
NECROSIS_FROM_MM = 12.0
_TEMPLATE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


@dataclass(frozen=True)
class PhantomVolume:
    """Voxels ``[slice, row, column]`` (signal for MR, HU for CT), labels of the same shape, geometry."""

    values: np.ndarray  # float32
    labels: np.ndarray  # uint8; see BRAIN_LABELS / CT_LABELS
    origin_lps: tuple[float, float, float]  # centre of voxel (0, 0, 0)
    spacing_mm: tuple[float, float, float]  # slice, row, column
    lesion_diameter_mm: float  # longest axial diameter of the drawn lesion (0: none)

    @property
    def lesion_volume_ml(self) -> dict[str, float]:
        voxel_ml = float(np.prod(self.spacing_mm)) / 1000.0
        counts = np.bincount(self.labels.ravel(), minlength=4)
        return {
            str(k): round(float(counts[k]) * voxel_ml, 3)
            for k in range(1, len(counts))
            if counts[k]
        }


@dataclass(frozen=True)
class Lesion:
    """Where a patient's lesion sits and its shape; the size comes per time point."""

    centre_vox: tuple[float, float, float]  # slice, row, column
    axes: tuple[float, float]  # the two shorter semi-axes relative to the longest (<= 1)
    angle: float  # in-plane direction of the longest axis (radians)
    wobble: tuple[float, float, float]  # surface irregularity: amplitude, two phases
    oedema: float  # oedema extent beyond the rim, relative to the radius


# --------------------------------------------------------------------------- brain MR


def mni152_t1() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1 mm MNI152 T1, grey- and white-matter maps (uint8, RAS index order) from nilearn's wheel."""
    return _template("t1"), _template("gm"), _template("wm")


@lru_cache(maxsize=4)
def _template(kind: str) -> np.ndarray:
    # lazy: nibabel is needed only by the demo's brain volumes
    import nibabel as nib

    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "nilearn is not installed; it carries the MNI152 template (pip install nilearn)"
        )
    path = (
        Path(list(spec.submodule_search_locations)[0])
        / "datasets"
        / "data"
        / _TEMPLATE.format(kind)
    )
    img: Any = nib.load(path)
    if not np.allclose(np.diag(img.affine)[:3], 1.0) or np.count_nonzero(img.affine[:3, :3]) != 3:
        raise RuntimeError(f"unexpected template orientation in {path.name}")
    arr = np.asarray(img.dataobj)
    arr.setflags(write=False)
    return arr


@lru_cache(maxsize=1)
def _brain_anatomy() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """2 mm T1, white-matter and brain maps in DICOM layout, and the LPS origin of voxel 0."""
    t1, gm, wm = (np.asarray(a, np.float32) / 255.0 for a in mni152_t1())
    crop = tuple(slice(0, (n // 2) * 2) for n in t1.shape)

    def down(a: np.ndarray) -> np.ndarray:
        a = a[crop]
        s = a.shape
        return a.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean(axis=(1, 3, 5))

    t1d, gmd, wmd = down(t1), down(gm), down(wm)

    # RAS (i: right, j: anterior, k: superior) -> [slice S, row P, column L]
    def layout(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[::-1, ::-1, :].transpose(2, 1, 0))

    ni, nj = t1d.shape[:2]
    # centre of the 2 mm voxel (i, j, 0) in the 1 mm template's RAS frame (origin -98, -134, -72)
    ras = np.array([-98.0 + 0.5 + 2 * (ni - 1), -134.0 + 0.5 + 2 * (nj - 1), -72.0 + 0.5])
    origin = (float(-ras[0]), float(-ras[1]), float(ras[2]))
    brain = ndimage.binary_fill_holes(layout(gmd + wmd) > 0.35)
    return layout(t1d), layout(wmd), brain, origin


def brain_lesion(rng: np.random.Generator, max_diameter_mm: float) -> Lesion:
    """A metastasis site in the cerebrum, deep enough for ``max_diameter_mm`` plus its oedema."""
    _, wm, brain, _ = _brain_anatomy()
    depth = _brain_depth()
    need = min(max_diameter_mm / 2 + 6.0, float(depth.max()) * 0.8)
    upper = np.zeros_like(brain)
    upper[brain.shape[0] // 3 :] = True  # above the cerebellum and brainstem
    ok = np.argwhere((depth >= need) & upper & (wm > 0.2))
    if ok.size == 0:
        ok = np.argwhere(depth >= need)
    c = ok[int(rng.integers(len(ok)))]
    return Lesion(
        (float(c[0]), float(c[1]), float(c[2])),
        (float(rng.uniform(0.75, 0.95)), float(rng.uniform(0.75, 0.95))),
        float(rng.uniform(0, np.pi)),
        (
            float(rng.uniform(0.04, 0.1)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0, 2 * np.pi)),
        ),
        float(rng.uniform(0.6, 1.3)),
    )


@lru_cache(maxsize=1)
def _brain_depth() -> np.ndarray:
    """Distance (mm) from each brain voxel to the brain's surface."""
    return np.asarray(ndimage.distance_transform_edt(_brain_anatomy()[2]) * BRAIN_SPACING_MM)


def brain_mr(rng: np.random.Generator, lesion: Lesion | None, diameter_mm: float) -> PhantomVolume:
    """A post-contrast T1 brain volume; ``lesion`` drawn at ``diameter_mm`` (none when 0 or None)."""
    t1, wm, brain, origin = _brain_anatomy()
    sp = (BRAIN_SPACING_MM,) * 3
    # post-contrast T1: template contrast, white matter a little brighter, skull and scalp kept
    signal = 900.0 * t1 + 80.0 * wm
    labels = np.zeros(t1.shape, np.uint8)
    drawn = 0.0
    if lesion is not None and diameter_mm > 0:
        # half a voxel in from the size: the longest diameter of a rasterised disc measures
        # about one voxel more than the disc it samples (pixel corners, not centres)
        radius = max(diameter_mm / 2 - sp[1] / 2, sp[1] / 2)
        r = _radius_field(t1.shape, lesion, sp, radius * (2 + lesion.oedema) / min(lesion.axes) + 4)
        tumour = r <= radius
        core = r <= 0.55 * radius if diameter_mm >= NECROSIS_FROM_MM else np.zeros_like(tumour)
        oedema_r = radius * (1 + lesion.oedema)
        oedema = (r <= oedema_r) & ~tumour & brain & ((wm > 0.25) | (r <= radius + 4.0))
        labels[oedema] = 2
        labels[tumour] = 3
        labels[core] = 1
        signal = np.where(oedema, signal * 0.78, signal)
        signal = np.where(tumour & ~core, 1250.0, signal)
        signal = np.where(core, 260.0, signal)
        signal = ndimage.gaussian_filter(signal, 0.6)  # partial volume at the 2 mm grid
        drawn = longest_axial_diameter_mm((labels == 1) | (labels == 3), sp)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in t1.shape), indexing="ij")
    bias = 1 + 0.06 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1) + z * rng.uniform(-1, 1))
    sigma = 12.0
    noisy = np.hypot(signal * bias + rng.normal(0, sigma, t1.shape), rng.normal(0, sigma, t1.shape))
    return PhantomVolume(noisy.astype(np.float32), labels, origin, sp, round(drawn, 1))


def _radius_field(
    shape: tuple[int, ...], lesion: Lesion, spacing: tuple[float, ...], reach_mm: float
) -> np.ndarray:
    """Distance (mm) from the lesion centre in its own frame, scaled so its surface is a sphere.

    The longest semi-axis lies in the axial plane at ``lesion.angle``; the other two are
    shorter (``lesion.axes``); a low-order angular ripple roughens the surface. Computed only
    within ``reach_mm`` of the centre (infinite beyond): a few thousand voxels, not millions.
    """
    c = lesion.centre_vox
    box = tuple(
        slice(
            max(0, int(c[i] - reach_mm / spacing[i]) - 1),
            min(n, int(c[i] + reach_mm / spacing[i]) + 2),
        )
        for i, n in enumerate(shape)
    )
    zz, yy, xx = (
        (np.arange(box[i].start, box[i].stop) - c[i])[
            tuple(slice(None) if j == i else None for j in range(3))
        ]
        * spacing[i]
        for i in range(3)
    )
    ca, sa = np.cos(lesion.angle), np.sin(lesion.angle)
    u = xx * ca + yy * sa
    v = (-xx * sa + yy * ca) / lesion.axes[0]
    w = zz / lesion.axes[1]
    d = np.sqrt(u * u + v * v + w * w)
    theta = np.arctan2(v, u)
    phi = np.arctan2(w, np.hypot(u, v))
    amp, p1, p2 = lesion.wobble
    out = np.full(shape, np.inf, dtype=np.float32)
    out[box] = d / (1 + amp * np.sin(3 * theta + p1) * np.cos(2 * phi + p2) ** 2)
    return out


def longest_axial_diameter_mm(mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    """The longest in-plane distance across ``mask`` in any axial slice (max Feret, mm)."""
    # lazy: scikit-image's measure module is needed only here
    from skimage.measure import regionprops

    best = 0.0
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        sl = mask[k]
        if spacing[1] != spacing[2]:
            raise ValueError("longest_axial_diameter_mm needs square pixels")
        for region in regionprops(sl.astype(np.uint8)):
            best = max(best, float(region.feret_diameter_max) * spacing[1])
    return best


# --------------------------------------------------------------------------- thorax CT


def thorax_lesion(rng: np.random.Generator, max_diameter_mm: float) -> Lesion:
    """A target lesion site in the right or left lung, its centre deep enough when it can be."""
    depth = _lung_depth()
    need = min(max_diameter_mm / 2, float(depth.max()) * 0.9)
    ok = np.argwhere(depth >= need)
    c = ok[int(rng.integers(len(ok)))]
    return Lesion(
        (float(c[0]), float(c[1]), float(c[2])),
        (float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.8, 0.95))),
        float(rng.uniform(0, np.pi)),
        (
            float(rng.uniform(0.03, 0.08)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0, 2 * np.pi)),
        ),
        0.0,
    )


@lru_cache(maxsize=1)
def _thorax_masks() -> tuple[np.ndarray, np.ndarray]:
    """Body and lung masks of the standard thorax (one anatomy; patients differ by lesion and noise)."""
    ns, nr, nc = CT_SHAPE
    z = (np.arange(ns) + 0.5) / ns  # 0 at the lung bases (inferior), 1 at the apices
    y = (np.arange(nr) - nr / 2 + 0.5) * CT_SPACING_MM[1]  # mm, + posterior
    x = (np.arange(nc) - nc / 2 + 0.5) * CT_SPACING_MM[2]  # mm, + patient's left
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    body = (X / 165.0) ** 2 + ((Y - 5) / 115.0) ** 2 <= 1.0
    taper = np.sqrt(np.clip(1.15 - Z, 0, None) / 1.15) * np.clip(Z * 4, 0, 1) ** 0.3
    lungs = np.zeros(CT_SHAPE, bool)
    for side in (-1, 1):
        ax, ay = 62.0 * taper + 1e-3, 85.0 * taper + 1e-3
        lungs |= ((X - side * 78.0) / ax) ** 2 + ((Y - 5.0) / ay) ** 2 <= 1.0
    lungs &= body
    return body, lungs


@lru_cache(maxsize=1)
def _lung_depth() -> np.ndarray:
    """Distance (mm) from each lung voxel to the lung's surface."""
    return np.asarray(ndimage.distance_transform_edt(_thorax_masks()[1], sampling=CT_SPACING_MM))


def thorax_ct(
    rng: np.random.Generator,
    lesion: Lesion | None,
    diameter_mm: float,
    others: tuple[tuple[Lesion, float], ...] = (),
) -> PhantomVolume:
    """A contrast-enhanced thorax CT in HU with the target lesion at ``diameter_mm`` (none: 0).

    ``others`` are non-target nodules (site, diameter mm), the same at every time point.
    ``rng`` draws only the noise and lung texture of this scan.
    """
    ns, nr, nc = CT_SHAPE
    body, lungs = _thorax_masks()
    y = (np.arange(nr) - nr / 2 + 0.5) * CT_SPACING_MM[1]
    x = (np.arange(nc) - nc / 2 + 0.5) * CT_SPACING_MM[2]
    Y, X = np.meshgrid(y, x, indexing="ij")
    hu = np.full(CT_SHAPE, -1000.0, np.float32)
    inner = (X / 150.0) ** 2 + ((Y - 5) / 100.0) ** 2 <= 1.0  # inside the subcutaneous fat
    hu[body] = -100.0
    hu[:, inner] = 40.0
    hu[body & ~np.broadcast_to(inner, CT_SHAPE)] = -100.0
    texture = ndimage.gaussian_filter(rng.normal(0, 1, CT_SHAPE), (1.0, 2.0, 2.0)) * 60.0
    hu[lungs] = -850.0 + texture[lungs]
    heart = ((X - 15) / 55.0) ** 2 + ((Y + 20) / 45.0) ** 2 <= 1.0
    aorta = (X + 5) ** 2 + (Y - 35) ** 2 <= 13.0**2
    spine = X**2 + (Y - 75) ** 2 <= 17.0**2
    cortex = (X**2 + (Y - 75) ** 2 <= 20.0**2) & ~spine
    for k in range(ns):
        z = (k + 0.5) / ns
        if z < 0.75:
            hu[k][heart & ~lungs[k]] = 45.0
        hu[k][aorta] = 180.0
        hu[k][spine] = 250.0
        hu[k][cortex] = 700.0
    ring = ((X / 158.0) ** 2 + ((Y - 5) / 108.0) ** 2 <= 1.0) & (
        (X / 150.0) ** 2 + ((Y - 5) / 100.0) ** 2 > 1.0
    )
    for k in range(ns):
        if (k // 3) % 3 == 0:  # ribs: a band every ~27 mm
            hu[k][ring & (Y > -60)] = 650.0
    labels = np.zeros(CT_SHAPE, np.uint8)
    for site, size in others:
        labels[(_radius_field(CT_SHAPE, site, CT_SPACING_MM, size * 2) <= size / 2) & lungs] = 2
    drawn = 0.0
    if lesion is not None and diameter_mm > 0:
        radius = max(diameter_mm / 2 - CT_SPACING_MM[1] / 2, CT_SPACING_MM[1] / 2)  # see brain_mr
        r = _radius_field(CT_SHAPE, lesion, CT_SPACING_MM, radius * 1.5 / min(lesion.axes) + 4)
        target = (r <= radius) & body
        labels[target] = 1
        drawn = longest_axial_diameter_mm(target, CT_SPACING_MM)
    hu[labels > 0] = 35.0
    hu = ndimage.gaussian_filter(hu, (0.5, 0.7, 0.7))  # the scanner's point spread
    hu += rng.normal(0, 12.0, CT_SHAPE)
    origin = (float(x[0]), float(y[0]), -96.0)
    return PhantomVolume(hu.astype(np.float32), labels, origin, CT_SPACING_MM, round(drawn, 1))
