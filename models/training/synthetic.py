"""Synthetic imaging phantoms with ground-truth lesion masks (research use).

Two families, both drawn deterministically from a ``numpy.random.Generator``
with NumPy/SciPy only (a 256 x 256 phantom in a few milliseconds):

- ``mammogram``: a craniocaudal-like, for-presentation digital mammogram
  (MONOCHROME2, 12-bit values): half-elliptic breast against the chest wall
  (column 0 for a left breast, mirrored for a right one), skin line,
  fibroglandular tissue from 1/f^beta noise (beta = 3) of varying density
  (BI-RADS a-d), vessels, sometimes the pectoral muscle; masses that are
  circumscribed, lobulated, indistinct or spiculated; calcifications
  (clustered pleomorphic microcalcifications more often with malignant masses,
  coarse or round ones otherwise). The classes overlap on purpose: a few benign
  masses are spiculated (radial scar), some cancers are circumscribed,
  low-contrast masses hide in dense tissue, and calcifications are neither
  necessary nor sufficient for malignancy.
- ``brain_mri``: a T1 post-contrast-like axial slice at the level of the
  lateral ventricles: scalp fat, cortical bone and diploe, CSF, folded grey
  matter ribbon, white matter, deep grey nuclei, butterfly-shaped ventricles
  with enhancing choroid plexus, dural sinus and cortical vessels (bright
  distractors), a smooth bias field and Rician noise. A tumour is a
  ring-enhancing mass with a necrotic core or a solid enhancing mass, with
  vasogenic oedema in the white matter and mass effect (midline shift); its
  enhancement is sometimes faint.

Lesion masks: for a mammogram the mass body (spicules and calcifications are
drawn but not in the mask, as a BI-RADS size measurement leaves spicules out);
for the brain the enhancing lesion including its necrotic core (not the
oedema). ``Phantom.lesion_diameter_mm`` is always measured on the final mask:
the maximum Feret diameter between mask pixel centres in mm
(``max_feret_diameter_mm``). A requested diameter is reproduced to within
about one pixel; a request that does not fit the breast or brain is clipped to
the largest that fits, one below three pixels is raised to three pixels, and a
request of 0 mm (a complete response) draws no lesion and reports 0.0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

MAMMOGRAPHY_LABELS = ("normal", "benign", "malignant")
BRAIN_LABELS = ("no_tumour", "tumour")
MAX_STORED_VALUE = 4095  # 12-bit stored values
MIN_SIZE_PX = 32
MAMMO_DIAMETER_RANGE_MM = (6.0, 40.0)
BRAIN_DIAMETER_RANGE_MM = (5.0, 50.0)
F32 = np.float32

__all__ = [
    "BRAIN_LABELS",
    "MAMMOGRAPHY_LABELS",
    "Phantom",
    "brain_mri",
    "mammogram",
    "max_feret_diameter_mm",
    "sample_brain",
    "sample_mammograms",
]


@dataclass(frozen=True, eq=False)
class Phantom:
    """One synthetic image with its lesion ground truth.

    ``eq=False``: phantoms compare by identity (arrays have no single truth
    value); compare ``pixels`` and ``mask`` with ``np.array_equal``.
    """

    pixels: np.ndarray  # uint16 stored values (rows, cols)
    mask: np.ndarray  # bool (rows, cols); all False when no lesion
    label: str  # 'normal' | 'benign' | 'malignant' | 'tumour' | 'no_tumour'
    modality: str  # 'MG' | 'MR'
    spacing_mm: tuple[float, float]  # (row, col) pixel spacing in mm
    lesion_diameter_mm: (
        float | None
    )  # max Feret diameter of the mask in mm; None for normal/no_tumour
    rescale_slope: float
    rescale_intercept: float
    window_center: float
    window_width: float
    laterality: str | None = None  # 'L' | 'R' for mammograms (chest wall at column 0 for 'L')
    breast_density: str | None = (
        None  # BI-RADS density 'a'-'d' drawn for a mammogram (subgroup audits)
    )


# --------------------------------------------------------------------------- checks and helpers


def _check_size(size) -> tuple[int, int]:
    rows, cols = (int(v) for v in size)
    if rows < MIN_SIZE_PX or cols < MIN_SIZE_PX:
        raise ValueError(f"size must be at least {MIN_SIZE_PX} x {MIN_SIZE_PX} pixels, got {size}")
    return rows, cols


def _check_spacing(spacing_mm: float | Iterable[float]) -> tuple[float, float]:
    if isinstance(spacing_mm, int | float | np.integer | np.floating):  # one number: square pixels
        sr = sc = float(spacing_mm)
    else:
        sr, sc = (float(v) for v in spacing_mm)
    if not (sr > 0 and sc > 0 and math.isfinite(sr) and math.isfinite(sc)):
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    return sr, sc


def _check_diameter(lesion_diameter_mm) -> float | None:
    if lesion_diameter_mm is None:
        return None
    d = float(lesion_diameter_mm)
    if not math.isfinite(d) or d < 0:
        raise ValueError(f"lesion_diameter_mm must be >= 0, got {lesion_diameter_mm}")
    return d


def _smoothstep(x, lo: float, hi: float):
    """0 below ``lo``, 1 above ``hi``, smooth in between."""
    t = np.clip((x - lo) * (1.0 / (hi - lo)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _sigmoid(x):
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def _window(values: np.ndarray, lo_pct: float, hi_pct: float) -> tuple[float, float]:
    """Window centre and width spanning two percentiles of ``values``."""
    lo, hi = (
        np.percentile(values, [lo_pct, hi_pct]) if values.size else (0.0, float(MAX_STORED_VALUE))
    )
    return float(round((lo + hi) / 2)), float(max(round(hi - lo), 1))


@functools.lru_cache(maxsize=16)
def _rfreq2(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    fy2 = (np.fft.fftfreq(shape[0])[:, None] ** 2).astype(F32)
    fx2 = (np.fft.rfftfreq(shape[1])[None, :] ** 2).astype(F32)
    return fy2, fx2


def _powerlaw_noise(
    rng: np.random.Generator, shape, beta: float, aniso: float = 1.0, f0: float = 0.0
) -> np.ndarray:
    """Gaussian random field with power spectrum ~ 1/f^beta (zero mean, unit std, float32).

    ``aniso`` > 1 stretches structures along the columns (x); ``f0`` (cycles
    per pixel) flattens the spectrum below it so that no single blob dominates.
    """
    shape = (int(shape[0]), int(shape[1]))
    fy2, fx2 = _rfreq2(shape)
    f2 = fx2 * F32(aniso * aniso) + fy2 + F32(f0 * f0)
    f2[0, 0] = 1.0
    amp = f2 ** F32(-beta / 4.0)
    amp[0, 0] = 0.0
    spec = rng.standard_normal(amp.shape, dtype=F32) + 1j * rng.standard_normal(
        amp.shape, dtype=F32
    )
    field = np.fft.irfft2(spec * amp, s=shape)
    field -= field.mean()
    field /= field.std() + F32(1e-12)
    return field


def _periodic_noise_1d(rng, n: int, k0: float, width: float) -> np.ndarray:
    """Band-limited periodic 1-D noise (``n`` samples over one period), unit std."""
    k = np.arange(n // 2 + 1)
    amp = np.exp(-0.5 * ((k - k0) / width) ** 2)
    spec = (rng.standard_normal(k.size) + 1j * rng.standard_normal(k.size)) * amp
    t = np.fft.irfft(spec, n)
    return (t / (t.std() + 1e-12)).astype(F32)


def _splat(shape, ys, xs, weights) -> np.ndarray:
    """Bilinear splat of point weights at float pixel positions (row, col) into an image."""
    rows, cols = shape
    w = np.broadcast_to(weights, np.shape(ys)).ravel()
    ys = np.ravel(ys)
    xs = np.ravel(xs)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    fy = ys - y0
    fx = xs - x0
    out = np.zeros(rows * cols)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy = y0 + dy
            xx = x0 + dx
            ok = (yy >= 0) & (yy < rows) & (xx >= 0) & (xx < cols)
            out += np.bincount(
                yy[ok] * cols + xx[ok], weights=(w * wy * wx)[ok], minlength=rows * cols
            )
    return out.reshape(rows, cols).astype(F32)


def _curves(rng, y0, x0, heading, length_px, curl, step_px: float = 0.5):
    """Smooth random curves, one per entry, as sampled points: (rows, cols, t in 0..1, step)."""
    n = len(y0)
    npts = max(2, int(math.ceil(float(np.max(length_px)) / step_px)) + 1)
    step = np.asarray(length_px, float)[:, None] / (npts - 1)
    # heading follows integrated Brownian motion: total turning of the order of ``curl`` radians
    kappa = np.cumsum(rng.standard_normal((n, npts)), axis=1) / math.sqrt(npts)
    theta = (
        np.asarray(heading)[:, None] + np.asarray(curl)[:, None] * np.cumsum(kappa, axis=1) / npts
    )
    ys = np.asarray(y0)[:, None] + np.cumsum(step * np.sin(theta), axis=1)
    xs = np.asarray(x0)[:, None] + np.cumsum(step * np.cos(theta), axis=1)
    t = np.broadcast_to(np.linspace(0.0, 1.0, npts), ys.shape)
    return ys, xs, t, step


def _line_weight(peak: float, sigma_px: float) -> float:
    """Splat weight per pixel of length that makes a line blurred by ``sigma_px`` peak at ``peak``."""
    return peak * math.sqrt(2 * math.pi) * sigma_px


def max_feret_diameter_mm(mask: np.ndarray, spacing_mm) -> float:
    """Longest distance between two pixel centres of ``mask`` in mm (max Feret diameter).

    Only the first and last pixel of each row can be convex-hull vertices, so the
    hull is built from those. ``spacing_mm`` is (row, col) or one number.
    """
    sr, sc = _check_spacing(spacing_mm)
    mask = np.asarray(mask, bool)
    rows_any = mask.any(axis=1)
    if not rows_any.any():
        return 0.0
    r = np.flatnonzero(rows_any)
    sub = mask[r]
    first = sub.argmax(axis=1)
    last = sub.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    pts = np.unique(
        np.concatenate([np.column_stack([r, first]), np.column_stack([r, last])]), axis=0
    )
    pts = pts * np.array([sr, sc])
    if len(pts) == 1:
        return 0.0
    if len(pts) > 3:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:  # all on one line: the extremes are few anyway
            pass
    return float(pdist(pts).max())


# --------------------------------------------------------------------------- lesion outlines

_PHI = np.linspace(0.0, 2 * np.pi, 256, endpoint=False)


@dataclass(frozen=True)
class _Shape:
    """Star-shaped outline: radius R(phi) in a frame rotated by ``angle``, its y scaled by ``aspect``."""

    table: np.ndarray
    aspect: float
    angle: float
    feret_unit: float  # continuous max Feret diameter at scale 1
    rmax_unit: float  # farthest outline point from the centre at scale 1

    def boundary(self, phi):
        """Outline points (x, y) at scale 1 for angles ``phi`` of the shape frame."""
        r = np.interp(phi, _PHI, self.table, period=2 * np.pi)
        px, py = r * np.cos(phi), self.aspect * r * np.sin(phi)
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        return ca * px - sa * py, sa * px + ca * py


def _make_shape(rng, lobulation: float, irregularity: float, aspect: float) -> _Shape:
    """Outline from a circle plus low-order lobulation and higher-order irregularity harmonics."""
    r = np.ones_like(_PHI)
    for ks, amp in (
        (np.arange(2, 6), lobulation * np.ones(4)),
        (np.arange(3, 25), irregularity * (3.0 / np.arange(3, 25)) ** 0.8),
    ):
        a = rng.standard_normal(ks.size) * amp
        ph = rng.uniform(0, 2 * np.pi, ks.size)
        r += (a[:, None] * np.cos(ks[:, None] * _PHI + ph[:, None])).sum(0)
    r = np.maximum(r, 0.35)
    r /= r.mean()
    shape = _Shape(r, float(aspect), float(rng.uniform(0, np.pi)), 1.0, 1.0)
    bx, by = shape.boundary(_PHI)
    pts = np.column_stack([bx, by])
    hull = pts[ConvexHull(pts).vertices]
    return _Shape(
        r, shape.aspect, shape.angle, float(pdist(hull).max()), float(np.hypot(bx, by).max())
    )


def _raster(
    shape: _Shape, scale_mm: float, cy: float, cx: float, spacing, img_shape, pad_mm: float = 0.0
):
    """Rasterise the outline at ``scale_mm`` centred at pixel (cy, cx) over its bounding patch.

    Returns (slices, inside, signed distance in mm (positive inside), relative radius, phi).
    """
    sr, sc = spacing
    ext = shape.rmax_unit * scale_mm + pad_mm
    r0 = min(max(int(math.floor(cy - ext / sr)) - 1, 0), img_shape[0])
    r1 = max(min(int(math.ceil(cy + ext / sr)) + 2, img_shape[0]), r0)
    c0 = min(max(int(math.floor(cx - ext / sc)) - 1, 0), img_shape[1])
    c1 = max(min(int(math.ceil(cx + ext / sc)) + 2, img_shape[1]), c0)
    dy = ((np.arange(r0, r1) - cy) * sr)[:, None]
    dx = ((np.arange(c0, c1) - cx) * sc)[None, :]
    ca, sa = math.cos(shape.angle), math.sin(shape.angle)
    px = (ca * dx + sa * dy) / scale_mm
    py = (-sa * dx + ca * dy) / (scale_mm * shape.aspect)
    rho = np.hypot(px, py)
    phi = np.arctan2(py, px)
    rphi = np.interp(phi, _PHI, shape.table, period=2 * np.pi)
    rel = rho / rphi
    sd = (rphi - rho) * scale_mm * (0.5 + 0.5 * shape.aspect)
    return (
        (slice(r0, r1), slice(c0, c1)),
        _largest_component(rel < 1.0),
        sd.astype(F32),
        rel.astype(F32),
        phi.astype(F32),
    )


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component (pixel-centre sampling can leave one-pixel islands)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _fit_scale(shape: _Shape, diameter_mm: float, cy, cx, spacing, img_shape) -> float:
    """Scale at which the rasterised mask's max Feret diameter best matches ``diameter_mm``."""
    scale = diameter_mm / shape.feret_unit
    best_err, best_scale = math.inf, scale
    for _ in range(6):
        inside = _raster(shape, scale, cy, cx, spacing, img_shape)[1]
        measured = max_feret_diameter_mm(inside, spacing)
        err = abs(measured - diameter_mm)
        if err < best_err:
            best_err, best_scale = err, scale
        if err <= 0.3 * min(spacing):
            break
        scale *= diameter_mm / measured if measured > 0 else 1.5
    return best_scale


def _pick(rng, candidates: np.ndarray, weights) -> np.ndarray:
    w = np.asarray(weights, float)
    if not (w.sum() > 0):
        w = np.ones_like(w)
    return candidates[rng.choice(len(w), p=w / w.sum())]


# --------------------------------------------------------------------------- mammography

# margin types: 0 circumscribed, 1 lobulated, 2 indistinct/irregular, 3 spiculated
_MARGIN_P = {"benign": (0.64, 0.22, 0.10, 0.04), "malignant": (0.12, 0.12, 0.30, 0.46)}


def mammogram(
    rng: np.random.Generator,
    label: str,
    size: tuple[int, int] = (256, 256),
    spacing_mm: float = 0.8,
    lesion_diameter_mm: float | None = None,
    laterality: str = "L",
) -> Phantom:
    """A craniocaudal-like for-presentation mammogram labelled 'normal', 'benign' or 'malignant'.

    ``lesion_diameter_mm`` (benign/malignant only) sets the mass's longest
    diameter; None draws one log-uniformly from 6-40 mm. The breast fills a
    fixed share of the field whatever ``spacing_mm`` (tissue sizes are in mm,
    the breast is clipped to the field).
    """
    if label not in MAMMOGRAPHY_LABELS:
        raise ValueError(f"label must be one of {MAMMOGRAPHY_LABELS}, got {label!r}")
    if laterality not in ("L", "R"):
        raise ValueError(f"laterality must be 'L' or 'R', got {laterality!r}")
    diameter = _check_diameter(lesion_diameter_mm)
    if label == "normal" and diameter is not None:
        raise ValueError("a 'normal' mammogram has no lesion; lesion_diameter_mm must be None")
    rows, cols = _check_size(size)
    sr, sc = _check_spacing(spacing_mm)
    px_mm = 0.5 * (1 / sr + 1 / sc)  # pixels per mm

    # -- breast geometry (mm, breast frame): chest wall at x = 0, nipple towards +x
    b = min(rng.uniform(72.0, 98.0), 0.46 * rows * sr)  # half-height
    a = min(rng.uniform(0.95, 1.7) * b, 0.92 * cols * sc)
    y_off = rng.uniform(-0.04, 0.04) * rows * sr
    y_all = (np.arange(rows) - (rows - 1) / 2) * sr - y_off
    r0 = int(np.searchsorted(y_all, -1.15 * b))
    r1 = max(int(np.searchsorted(y_all, 1.15 * b)), r0 + 1)
    c1 = min(cols, int(math.ceil(1.15 * a / sc)) + 1)
    shape = (r1 - r0, c1)  # the work is done on this crop
    yv = y_all[r0:r1].astype(F32)
    y = yv[:, None]
    x = ((np.arange(c1) + 0.5) * sc).astype(F32)[None, :]
    xn, yn = x / F32(a), y / F32(b)
    k = rng.normal(0.0, 0.035, 3)
    rho = np.sqrt(xn * xn + yn * yn) / (
        1.0 + k[0] * yn + k[1] * (xn * xn - yn * yn) + k[2] * xn * yn
    )
    dist_in = (1.0 - rho) * np.hypot(x, y) / np.maximum(rho, F32(1e-3))  # mm to the skin, ~radially
    inside_soft = _smoothstep(dist_in, -0.5 / px_mm, 0.5 / px_mm)
    breast = dist_in > 0

    # -- fibroglandular tissue: 1/f^3 noise, softly thresholded inside a central cone
    density = rng.choice(4, p=[0.12, 0.4, 0.36, 0.12])  # BI-RADS a-d
    bias = (-2.3, -1.1, 0.0, 1.1)[density] + rng.normal(0, 0.25)
    n1 = _powerlaw_noise(rng, shape, 3.0, aniso=rng.uniform(1.3, 2.2), f0=1.0 / rows)
    n2 = _powerlaw_noise(rng, shape, 2.4, aniso=1.8)
    xg, ag, bg = rng.uniform(0.35, 0.5) * a, rng.uniform(0.5, 0.65) * a, rng.uniform(0.6, 0.8) * b
    cone = np.clip(1.0 - ((x - xg) / ag) ** 2 - (y / bg) ** 2, 0.0, None)
    fat_margin = _smoothstep(dist_in, 2.0, rng.uniform(8.0, 16.0)) * _smoothstep(
        x, 2.0, rng.uniform(8.0, 18.0)
    )
    gl = _sigmoid(1.5 * (1.1 * n1 + 3.0 * cone - 1.0 + bias)) * fat_margin
    gl = np.clip(gl * (0.72 + 0.28 * _sigmoid(2.5 * n2 + 1.0)), 0.0, 1.0)

    if rng.random() < 0.3:  # pectoral muscle at the chest wall edge
        hm, wm, ym = rng.uniform(0.25, 0.6) * b, rng.uniform(5.0, 14.0), rng.uniform(-0.3, 0.3) * b
        muscle = _smoothstep(1.0 - (x / wm) ** 2 - ((y - ym) / hm) ** 2, -0.1, 0.5)
        gl = np.maximum(gl, rng.uniform(0.35, 0.6) * muscle * (0.85 + 0.15 * n2))

    line = np.zeros(shape, F32)  # vessels and spicules, in density units before blurring
    line_sigma = rng.uniform(0.5, 0.8) * px_mm
    nv = int(rng.integers(0, 4))
    if nv:  # vessels from the chest wall towards the nipple
        y0 = rng.uniform(-0.7, 0.7, nv) * b
        x0 = rng.uniform(0.0, 0.15, nv) * a
        head = np.arctan2(-y0 * rng.uniform(0.2, 0.8, nv), a - x0)
        ys, xs, t, step = _curves(
            rng,
            (y0 - yv[0]) / sr,
            x0 / sc - 0.5,
            head,
            rng.uniform(0.5, 1.0, nv) * a / sc,
            rng.uniform(0.3, 1.5, nv),
        )
        amp = rng.uniform(0.08, 0.22, nv)[:, None] * (1 - 0.6 * t)
        line += _splat(shape, ys, xs, amp * step * _line_weight(1.0, line_sigma))

    # -- mass ------------------------------------------------------------------
    mask = np.zeros(shape, bool)
    mass = None
    calcs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if label != "normal" and (diameter is None or diameter > 0):
        if diameter is None:
            diameter = float(np.exp(rng.uniform(*np.log(MAMMO_DIAMETER_RANGE_MM))))
        diameter = max(diameter, 3.0 * max(sr, sc))
        malignant = label == "malignant"
        margin = int(rng.choice(4, p=_MARGIN_P[label]))
        lob = (
            rng.uniform(0.0, 0.03),
            rng.uniform(0.05, 0.12),
            rng.uniform(0.02, 0.08),
            rng.uniform(0.0, 0.06),
        )[margin]
        irr = (
            rng.uniform(0.0, 0.012),
            rng.uniform(0.0, 0.02),
            rng.uniform(0.05, 0.14),
            rng.uniform(0.04, 0.12),
        )[margin]
        edge = (
            rng.uniform(0.3, 0.8),
            rng.uniform(0.4, 1.0),
            rng.uniform(1.0, 2.5),
            rng.uniform(0.6, 1.8),
        )[margin]
        shp = _make_shape(
            rng, lob, irr, rng.uniform(0.55, 0.95) if margin < 2 else rng.uniform(0.7, 1.0)
        )

        # clip to the largest size whose bounding disc fits the half ellipse, then place it
        diameter = min(diameter, (0.9 * min(a / 2, b) - 4.0) * shp.feret_unit / shp.rmax_unit)
        r_ext = diameter / shp.feret_unit * shp.rmax_unit * 1.08 + 3.0
        cand_y = rng.uniform(-1, 1, 128) * max(b - r_ext, 0.0)
        cand_x = r_ext + rng.uniform(0, 1, 128) * max(a - 2 * r_ext, 0.0)
        ok = (cand_x / max(a - r_ext, 1e-3)) ** 2 + (cand_y / max(b - r_ext, 1e-3)) ** 2 < 0.85
        if not ok.any():
            cand_y, cand_x, ok = np.array([0.0]), np.array([max(a / 2, r_ext)]), np.array([True])
        weight = 0.3 + np.clip(1.0 - ((cand_x - xg) / ag) ** 2 - (cand_y / bg) ** 2, 0.0, None)
        cy, cx = _pick(
            rng, np.column_stack([(cand_y - yv[0]) / sr, cand_x / sc - 0.5])[ok], weight[ok]
        )
        scale = _fit_scale(shp, diameter, cy, cx, (sr, sc), shape)
        sl, inside, sd, rel, _ = _raster(shp, scale, cy, cx, (sr, sc), shape, pad_mm=3 * edge)
        mask[sl] = _largest_component(inside & breast[sl])
        profile = _sigmoid(sd / F32(0.45 * edge)) * (
            0.82 + 0.18 * np.sqrt(np.clip(1 - rel * rel, 0, 1))
        )
        mass = (sl, profile)

        if margin == 3:  # spicules radiating from the body
            ns = int(rng.integers(6, 26))
            ang = rng.uniform(0, 2 * np.pi, ns)
            bx, by = shp.boundary(ang)
            r_b = np.hypot(bx, by) * scale
            head = np.arctan2(by, bx) + rng.normal(0, 0.15, ns)
            length = r_b * rng.uniform(0.5, 1.0, ns) + rng.uniform(0.4, 1.4, ns) * diameter / 2
            ys, xs, t, step = _curves(
                rng,
                cy + 0.6 * r_b * np.sin(head) / sr,
                cx + 0.6 * r_b * np.cos(head) / sc,
                head,
                length * px_mm,
                rng.uniform(0.1, 0.6, ns),
            )
            amp = rng.uniform(0.2, 0.45, ns)[:, None] * (1 - t) ** 0.8
            line += _splat(shape, ys, xs, amp * step * _line_weight(1.0, line_sigma))

        if rng.random() < (0.55 if malignant else 0.12):
            calcs.append(_calc_cluster(rng, cy, cx, scale, (sr, sc), pleomorphic=malignant))
        if not malignant and rng.random() < 0.25:
            calcs.append(_coarse_calcs(rng, cy, cx, scale, (sr, sc), int(rng.integers(2, 6))))

    if rng.random() < 0.35:  # scattered round benign calcifications, any breast
        n = int(rng.integers(1, 7))
        cy_mm, cx_mm = rng.uniform(-0.8, 0.8, 4 * n) * b, rng.uniform(0.1, 0.85, 4 * n) * a
        keep = np.flatnonzero((cx_mm / a) ** 2 + (cy_mm / b) ** 2 < 0.75)[:n]
        if keep.size:
            calcs.append(
                _round_calcs(
                    rng,
                    (cy_mm[keep] - yv[0]) / sr,
                    cx_mm[keep] / sc - 0.5,
                    rng.uniform(0.3, 1.2, keep.size) * px_mm,
                )
            )

    # -- compose: density -> for-presentation grey values ---------------------------
    line = ndimage.gaussian_filter(line, line_sigma) * breast
    tissue = gl
    if mass is not None:  # a mass adds density; dense tissue masks it
        sl, profile = mass
        c = rng.uniform(0.35, 0.85) if rng.random() > 0.3 else rng.uniform(0.15, 0.35)
        g = gl[sl]
        tissue = gl.copy()
        # A mass is denser than the tissue around it even in a dense breast, but only a little:
        # the extra term keeps it findable (it is what a reader sees), the blend keeps it hard.
        tissue[sl] = 1.0 - (1.0 - g) * (1.0 - c * profile) + rng.uniform(0.1, 0.28) * profile
    tissue = np.clip(tissue + line, 0.0, 1.3)
    air = rng.uniform(30.0, 110.0)
    # thinner tissue towards the skin, then the skin line itself
    periphery = 0.55 + 0.45 * _smoothstep(dist_in, -2.0, rng.uniform(8.0, 16.0))
    periphery += F32(rng.uniform(0.08, 0.2)) * (1.0 - _smoothstep(dist_in, 0.3, 2.2))
    img = air + inside_soft * periphery * (
        rng.uniform(950.0, 1350.0) + rng.uniform(1000.0, 1500.0) * tissue
    )
    if calcs:
        ys, xs, ws = (np.concatenate(v) for v in zip(*calcs, strict=True))
        img += (
            ndimage.gaussian_filter(_splat(shape, ys, xs, ws), 0.55)
            * breast
            * rng.uniform(500.0, 1000.0)
        )

    full = np.full((rows, cols), air, F32)
    full[r0:r1, :c1] = img
    full_mask = np.zeros((rows, cols), bool)
    full_mask[r0:r1, :c1] = mask
    # quantum-like noise (variance proportional to signal) plus a little electronic noise
    q = rng.uniform(0.45, 0.85)
    full += rng.standard_normal((rows, cols), dtype=F32) * np.sqrt(F32(q * q) * full + 16.0)
    pixels = np.clip(np.rint(full), 0, MAX_STORED_VALUE).astype(np.uint16)
    center, width = _window(pixels[r0:r1:3, 0:c1:3][breast[::3, ::3]], 1.0, 99.7)
    if laterality == "R":
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        full_mask = np.ascontiguousarray(full_mask[:, ::-1])
    measured = None
    if label != "normal":
        measured = max_feret_diameter_mm(full_mask, (sr, sc)) if full_mask.any() else 0.0
    return Phantom(
        pixels=pixels,
        mask=full_mask,
        label=label,
        modality="MG",
        spacing_mm=(sr, sc),
        lesion_diameter_mm=measured,
        rescale_slope=1.0,
        rescale_intercept=0.0,
        window_center=center,
        window_width=width,
        laterality=laterality,
        breast_density="abcd"[int(density)],
    )


def _round_calcs(rng, ys, xs, radius_px):
    """Round calcifications with radii in pixels, as weighted splat points."""
    off = np.arange(-3, 4)
    oy, ox = (o.ravel() for o in np.meshgrid(off, off, indexing="ij"))
    w = np.clip(np.asarray(radius_px)[:, None] + 0.5 - np.hypot(oy, ox)[None, :], 0.0, 1.0)
    w *= rng.uniform(0.6, 1.0, (len(ys), 1))
    keep = w > 0
    return (np.asarray(ys)[:, None] + oy)[keep], (np.asarray(xs)[:, None] + ox)[keep], w[keep]


def _calc_cluster(rng, cy, cx, scale, spacing, pleomorphic: bool):
    """A cluster of microcalcifications in or next to the mass: pleomorphic, or few round ones."""
    sr, sc = spacing
    n = int(rng.integers(6, 26)) if pleomorphic else int(rng.integers(3, 9))
    off_r, off_a, radius = (
        rng.uniform(0, 0.9) * scale,
        rng.uniform(0, 2 * np.pi),
        rng.uniform(3.0, 10.0),
    )
    rr = radius * np.sqrt(rng.uniform(0, 1, n))
    aa = rng.uniform(0, 2 * np.pi, n)
    ys = cy + (off_r * math.sin(off_a) + rr * np.sin(aa)) / sr
    xs = cx + (off_r * math.cos(off_a) + rr * np.cos(aa)) / sc
    if not pleomorphic:
        return _round_calcs(rng, ys, xs, rng.uniform(0.15, 0.5, n) / min(sr, sc))
    # irregular, fine-linear and branching specks of varied brightness
    m = rng.choice(3, n, p=[0.6, 0.3, 0.1]) + 1
    d = rng.uniform(0, 2 * np.pi, n)
    idx = np.repeat(np.arange(n), m)
    j = np.concatenate([np.arange(k) for k in m])
    py = ys[idx] + j * 0.6 * np.sin(d[idx]) + rng.normal(0, 0.2, idx.size)
    px = xs[idx] + j * 0.6 * np.cos(d[idx]) + rng.normal(0, 0.2, idx.size)
    return py, px, rng.uniform(0.35, 1.0, idx.size)


def _coarse_calcs(rng, cy, cx, scale, spacing, n):
    """Coarse ('popcorn') calcifications inside a benign mass."""
    sr, sc = spacing
    rr = rng.uniform(0, 0.6, n) * scale
    aa = rng.uniform(0, 2 * np.pi, n)
    return _round_calcs(
        rng,
        cy + rr * np.sin(aa) / sr,
        cx + rr * np.cos(aa) / sc,
        rng.uniform(0.8, 2.2, n) / min(sr, sc),
    )


# --------------------------------------------------------------------------- brain MRI


def _ellipse_q(U, V, cu, cv, au, av, rot):
    """Normalised elliptical radius (1 on the outline) of a rotated ellipse."""
    c, s = math.cos(rot), math.sin(rot)
    du, dv = U - F32(cu), V - F32(cv)
    return np.hypot((c * du + s * dv) * F32(1 / au), (c * dv - s * du) * F32(1 / av))


def _pair_q(U, V, cu, cv, au, av, rot):
    """Elliptical radius of a left-right mirrored pair of ellipses."""
    return np.minimum(
        _ellipse_q(U, V, cu, cv, au, av, rot), _ellipse_q(U, V, -cu, cv, au, av, -rot)
    )


def _deep_anatomy(rng, k: float) -> dict:
    """Lateral ventricles, third ventricle and deep grey nuclei, in brain units (u/A_b, v/B_b)."""
    return {
        "ventricles": (
            (
                0.085 * k**0.5,
                -0.2,
                0.045 * k,
                0.15 * k**0.6,
                math.radians(rng.uniform(15, 30)),
            ),  # frontal horns
            (
                0.12 * k**0.4,
                0.17,
                0.045 * k,
                0.22 * k**0.5,
                -math.radians(rng.uniform(8, 20)),
            ),  # bodies
            (0.15 * k**0.4, 0.33, 0.06 * k, 0.08 * k, 0.0),  # atria
        ),
        "third": (0.0, 0.02, 0.012 * k, 0.09, 0.0),
        "caudate": (0.14 * k**0.3 + 0.03, -0.17, 0.06, 0.09, 0.3),
        "nuclei": (
            (0.3, -0.02, 0.07, 0.16, 0.2),
            (0.08 + 0.012 * k, 0.08, 0.07, 0.11, -0.1),
        ),  # lentiform, thalamus
        "plexus": (0.15 * k**0.4, 0.37, 0.035, 0.06, 0.0),
    }


def _ventricle_q(U, V, p) -> np.ndarray:
    q = _ellipse_q(U, V, *p["third"])
    for e in p["ventricles"]:
        q = np.minimum(q, _pair_q(U, V, *e))
    return q


def brain_mri(
    rng: np.random.Generator,
    tumour: bool,
    size: tuple[int, int] = (256, 256),
    spacing_mm: float = 0.9,
    lesion_diameter_mm: float | None = None,
) -> Phantom:
    """A T1 post-contrast-like axial brain slice, with or without an enhancing tumour.

    ``lesion_diameter_mm`` (tumour only) sets the enhancing lesion's longest
    diameter; None draws one log-uniformly from 5-50 mm. Anterior is up,
    patient left on the image right (radiological convention).
    """
    tumour = bool(tumour)
    diameter = _check_diameter(lesion_diameter_mm)
    if not tumour and diameter is not None:
        raise ValueError("a slice without tumour has no lesion; lesion_diameter_mm must be None")
    rows, cols = _check_size(size)
    sr, sc = _check_spacing(spacing_mm)
    px_mm = 0.5 * (1 / sr + 1 / sc)
    pv = 0.5 / px_mm  # half a pixel in mm, for partial volume

    # -- head geometry (mm); u: right-left (image x), v: anterior (-) to posterior (+)
    A = rng.uniform(62.0, 76.0)
    B = A * rng.uniform(1.14, 1.3)
    fit = min(1.0, 0.44 * cols * sc / A, 0.44 * rows * sr / B)
    A, B = A * fit, B * fit
    ang = math.radians(float(np.clip(rng.normal(0, 4.0), -10, 10)))
    ca, sa = math.cos(ang), math.sin(ang)
    oy, ox = rng.normal(0, 0.015 * rows * sr), rng.normal(0, 0.015 * cols * sc)
    y_all = (np.arange(rows) - (rows - 1) / 2) * sr - oy
    x_all = (np.arange(cols) - (cols - 1) / 2) * sc - ox
    half_y = 1.1 * math.hypot(A * sa, B * ca) + 2
    half_x = 1.1 * math.hypot(A * ca, B * sa) + 2
    r0, r1 = int(np.searchsorted(y_all, -half_y)), int(np.searchsorted(y_all, half_y))
    c0, c1 = int(np.searchsorted(x_all, -half_x)), int(np.searchsorted(x_all, half_x))
    shape = (r1 - r0, c1 - c0)  # the work is done on the head's box
    yv, xv = y_all[r0:r1].astype(F32), x_all[c0:c1].astype(F32)
    u = ca * xv[None, :] + sa * yv[:, None]
    v = ca * yv[:, None] - sa * xv[None, :]
    rho = np.hypot(
        u / (A * (1.0 + rng.uniform(0.03, 0.08) * (v / B))), v / F32(B)
    )  # egg: broader at the back
    depth = (1.0 - rho) * np.hypot(u, v) / np.maximum(rho, F32(1e-3))  # mm in from the scalp

    # layers from the scalp in: skin, fat, outer table, diploe, inner table, CSF; then the brain
    edges = np.cumsum(
        [
            rng.uniform(1.0, 2.0),
            rng.uniform(2.5, 5.0),
            rng.uniform(1.2, 2.2),
            rng.uniform(1.5, 3.5),
            rng.uniform(1.0, 1.8),
            rng.uniform(1.2, 3.0),
        ]
    )
    level = (
        0.0,
        0.55,
        rng.uniform(1.15, 1.4),
        0.06,
        rng.uniform(0.65, 0.9),
        0.06,
        rng.uniform(0.15, 0.28),
    )
    knots = np.repeat(np.array((0.0, *edges[:-1])), 2) + np.tile([-pv, pv], len(edges))
    img = np.interp(depth, knots, np.repeat(level, 2)[1:-1]).astype(F32)
    brain_depth = depth - F32(edges[-1])  # mm inside the brain surface
    A_b, B_b = A - edges[-1], B - edges[-1]
    csf = level[-1]

    # -- tumour placement first: its mass effect displaces the deep anatomy
    vent_scale = rng.uniform(0.75, 1.6)
    anat = _deep_anatomy(rng, vent_scale)
    tum = None
    if tumour and (diameter is None or diameter > 0):
        if diameter is None:
            diameter = float(np.exp(rng.uniform(*np.log(BRAIN_DIAMETER_RANGE_MM))))
        diameter = max(diameter, 3.0 * max(sr, sc))
        ring = rng.random() < (0.65 if diameter > 12 else 0.25)
        shp = _make_shape(
            rng,
            rng.uniform(0.0, 0.07),
            rng.uniform(0.0, 0.06 if ring else 0.03),
            rng.uniform(0.7, 1.0),
        )
        diameter = min(diameter, (0.85 * min(A_b, B_b) - 4.0) * shp.feret_unit / shp.rmax_unit)
        r_ext = diameter / shp.feret_unit * shp.rmax_unit * 1.08 + 3.0
        cu = rng.uniform(-1, 1, 160) * max(A_b - r_ext, 0.0)
        cv = rng.uniform(-1, 1, 160) * max(B_b - r_ext, 0.0)
        ok = (cu / max(A_b - r_ext, 1e-3)) ** 2 + (cv / max(B_b - r_ext, 1e-3)) ** 2 < 0.9
        w = ok * np.clip(_ventricle_q(cu / A_b, cv / B_b, anat) - 1.0, 0.05, 1.0)
        if not ok.any():
            cu, cv, w = np.zeros(1), np.zeros(1), np.ones(1)
        tu, tv = _pick(rng, np.column_stack([cu, cv]), w)
        cy = (sa * tu + ca * tv - yv[0]) / sr  # centre in pixel coordinates of the box
        cx = (ca * tu - sa * tv - xv[0]) / sc
        scale = _fit_scale(shp, diameter, cy, cx, (sr, sc), shape)
        tum = (tu, tv, cy, cx, scale, shp, ring)

    # -- deep anatomy in displaced coordinates (mass effect pushes it away from the tumour)
    U, V = u / F32(A_b), v / F32(B_b)
    central = (np.abs(U) < 0.7) & (V > -0.7) & (V < 0.75)
    win_r, win_c = np.flatnonzero(central.any(axis=1)), np.flatnonzero(central.any(axis=0))
    dsl = (slice(win_r[0], win_r[-1] + 1), slice(win_c[0], win_c[-1] + 1))
    ud, vd = u, v
    if tum is not None:
        tu, tv, _, _, scale, _, _ = tum
        du, dv = u - F32(tu), v - F32(tv)
        sig = 1.6 * scale + 6.0
        f = 1.0 - F32(min(0.45, scale / 30.0) * rng.uniform(0.5, 1.0)) * np.exp(
            (du * du + dv * dv) * F32(-0.5 / sig**2)
        )
        ud, vd = F32(tu) + du * f, F32(tv) + dv * f

    # -- cortex: CSF-filled sulci run inwards from the surface at the zeros of cos(phase), a
    # phase that winds k0 times around the head and wanders with angle, depth and position
    theta = np.arctan2(v, u)
    tab_idx = (theta + F32(np.pi)) * F32(256 / (2 * np.pi))
    grid = np.arange(257, dtype=F32)

    def lookup(table):
        return np.interp(tab_idx, grid, np.append(table, table[0]).astype(F32))

    k0 = int(round(math.pi * 0.5 * (A_b + B_b) / rng.uniform(12.0, 17.0)))  # sulci 12-17 mm apart
    wy = [
        _periodic_noise_1d(rng, shape[0], shape[0] * sr / 30.0, shape[0] * sr / 60.0)
        for _ in range(2)
    ]
    wx = [
        _periodic_noise_1d(rng, shape[1], shape[1] * sc / 30.0, shape[1] * sc / 60.0)
        for _ in range(2)
    ]
    wander = wy[0][:, None] + wx[0][None, :] + wy[1][:, None] * wx[1][None, :]
    phase = (
        F32(k0) * theta
        + lookup(1.6 * _periodic_noise_1d(rng, 256, 3.0, 2.0))
        + brain_depth * lookup(_periodic_noise_1d(rng, 256, 6.0, 3.0) / rng.uniform(10.0, 20.0))
        + F32(rng.uniform(0.4, 0.8)) * wander
    )
    m = np.floor(phase * F32(1 / np.pi))
    d_sulcus = np.abs(phase - F32(np.pi) * (m + 0.5)) * np.hypot(u, v) * F32(1 / k0)
    ant = np.where(
        u >= 0, -theta, theta - np.sign(theta) * F32(np.pi)
    )  # angle from the left-right axis
    sylvian = 1.0 + 1.2 * np.exp(-(((ant - 0.15) / 0.1) ** 2))  # deep lateral (Sylvian) fissures
    per_sulcus = rng.uniform(0.45, 1.25, 64).astype(F32)
    sulc_depth = F32(rng.uniform(9.0, 15.0)) * per_sulcus[m.astype(np.int64) % 64] * sylvian
    d_csf = np.minimum(brain_depth, np.hypot(d_sulcus, np.maximum(brain_depth - sulc_depth, 0.0)))
    # interhemispheric fissure, absent between the genu and splenium of the corpus callosum
    v_genu, v_spl = rng.uniform(-0.45, -0.35) * B_b, rng.uniform(0.38, 0.5) * B_b
    gap = np.maximum(0.0, np.minimum(vd - F32(v_genu), F32(v_spl) - vd))
    d_csf = np.minimum(d_csf, np.hypot(np.abs(ud), gap))
    w_csf = rng.uniform(0.25, 0.55) + 0.5 * (vent_scale - 0.75) / 0.85
    gm_t = rng.uniform(2.2, 3.2)
    wm, gm = 1.0, rng.uniform(0.62, 0.78)
    csf_frac = 1.0 - _smoothstep(d_csf, w_csf - pv, w_csf + pv)
    gm_frac = 1.0 - _smoothstep(d_csf, w_csf + gm_t - pv, w_csf + gm_t + pv) - csf_frac
    wm_frac = 1.0 - csf_frac - gm_frac
    tissue = F32(wm) * wm_frac + F32(gm) * gm_frac + F32(csf) * csf_frac

    # deep grey nuclei and ventricles, computed on the central window only
    Ud, Vd = ud[dsl] / F32(A_b), vd[dsl] / F32(B_b)
    deep = 1.0 - _smoothstep(
        np.minimum(_pair_q(Ud, Vd, *anat["nuclei"][0]), _pair_q(Ud, Vd, *anat["nuclei"][1])),
        0.85,
        1.1,
    )
    caudate = 1.0 - _smoothstep(_pair_q(Ud, Vd, *anat["caudate"]), 0.85, 1.1)
    deep = np.maximum(deep, caudate) * wm_frac[dsl]
    ventricle = (1.0 - _smoothstep(_ventricle_q(Ud, Vd, anat), 0.92, 1.08)) * _smoothstep(
        np.abs(ud[dsl]), 0.6, 1.4
    )
    ventricle *= (1.0 - caudate) * (brain_depth[dsl] > 8.0)
    plexus = 1.0 - _smoothstep(_pair_q(Ud, Vd, *anat["plexus"]), 0.6, 1.0)
    deep_gm = rng.uniform(0.8, 0.9)
    sub = tissue[dsl] + F32(deep_gm - wm) * deep
    tissue[dsl] = sub * (1.0 - ventricle) + ventricle * (
        F32(csf) + plexus * F32(rng.uniform(0.6, 1.1))
    )
    wm_frac[dsl] -= deep

    # -- tumour: oedema in the white matter, then the enhancing lesion
    mask = np.zeros(shape, bool)
    if tum is not None:
        tu, tv, cy, cx, scale, shp, ring = tum
        oed = rng.uniform(1.2, 2.6) if rng.random() < 0.8 else rng.uniform(1.0, 1.2)
        sl, inside, sd, rel, phi = _raster(
            shp,
            scale,
            cy,
            cx,
            (sr, sc),
            shape,
            pad_mm=(oed - 1) * scale * shp.rmax_unit * 1.5 + 6.0,
        )
        wobble = (
            1.0
            + 0.25 * np.sin(3 * phi + rng.uniform(0, 6.3))
            + 0.15 * np.sin(5 * phi + rng.uniform(0, 6.3))
        )
        oedema = 1.0 - _smoothstep(rel, 0.9 * oed * wobble, 1.1 * oed * wobble + 0.05)
        tissue[sl] *= 1.0 - F32(rng.uniform(0.12, 0.32)) * oedema * (
            wm_frac[sl] + 0.3 * (1.0 - wm_frac[sl])
        )
        lesion = _sigmoid(sd / F32(0.45 * rng.uniform(0.35, 0.9)))
        enh = rng.uniform(1.02, 1.15) if rng.random() < 0.2 else rng.uniform(1.2, 1.65)
        if ring:
            rim = rng.uniform(0.18, 0.45) * (1 + 0.3 * np.sin(2 * phi + rng.uniform(0, 6.3)))
            core = _smoothstep(rel, 1.0 - rim - 0.12, 1.0 - rim + 0.05)
            val = F32(rng.uniform(0.25, 0.55)) * (1 - core) + F32(enh) * core
        else:
            val = F32(enh) * (1.0 + 0.06 * np.sin(4 * phi + rng.uniform(0, 6.3)) * rel)
        tissue[sl] = tissue[sl] * (1 - lesion) + val * lesion
        mask[sl] = _largest_component(inside & (brain_depth[sl] > 0))

    in_brain = _smoothstep(brain_depth, -pv, pv)
    img = img * (1.0 - in_brain) + tissue * in_brain

    # enhancing dural sinus at the posterior midline and a few cortical vessels (bright distractors)
    sinus = 1.0 - _smoothstep(np.hypot(u / F32(3.0), (v - F32(B_b - 2.5)) / F32(2.5)), 0.8, 1.2)
    img = np.maximum(img, sinus * F32(rng.uniform(1.1, 1.5)))
    nvx = int(rng.integers(4, 14))
    pa, pr = rng.uniform(0, 2 * np.pi, nvx), rng.uniform(0.75, 0.97, nvx)
    vu, vv = pr * A_b * np.cos(pa), pr * B_b * np.sin(pa)
    dots = _splat(
        shape,
        (sa * vu + ca * vv - yv[0]) / sr,
        (ca * vu - sa * vv - xv[0]) / sc,
        rng.uniform(0.4, 1.0, nvx),
    )
    img += ndimage.gaussian_filter(dots, 0.7 * px_mm) * F32(3.0) * in_brain

    # smooth bias field, partial-volume blur
    Un, Vn = u / F32(A), v / F32(B)
    c = rng.normal(0.0, 0.08, 5).astype(F32)
    img *= np.exp(
        c[0] * Un
        + c[1] * Vn
        + c[2] * Un * Vn
        + c[3] * (Un * Un - Vn * Vn)
        + c[4] * (Un * Un + Vn * Vn)
    )
    img = ndimage.gaussian_filter(img, 0.45)

    # scale to stored values and add Rician noise (magnitude of complex Gaussian noise) everywhere
    s_wm = rng.uniform(850.0, 1400.0)
    sigma = F32(s_wm * rng.uniform(0.018, 0.045))
    full = np.zeros((rows, cols), F32)
    full[r0:r1, c0:c1] = img * F32(s_wm)
    full = np.hypot(
        full + sigma * rng.standard_normal((rows, cols), dtype=F32),
        sigma * rng.standard_normal((rows, cols), dtype=F32),
    )
    pixels = np.clip(np.rint(full), 0, MAX_STORED_VALUE).astype(np.uint16)
    full_mask = np.zeros((rows, cols), bool)
    full_mask[r0:r1, c0:c1] = mask
    center, width = _window(pixels[r0:r1:3, c0:c1:3][brain_depth[::3, ::3] > 0], 0.5, 99.5)
    measured = None
    if tumour:
        measured = max_feret_diameter_mm(full_mask, (sr, sc)) if full_mask.any() else 0.0
    return Phantom(
        pixels=pixels,
        mask=full_mask,
        label="tumour" if tumour else "no_tumour",
        modality="MR",
        spacing_mm=(sr, sc),
        lesion_diameter_mm=measured,
        rescale_slope=1.0,
        rescale_intercept=0.0,
        window_center=center,
        window_width=width,
    )


# --------------------------------------------------------------------------- batches


def _item_rngs(n: int, seed: int):
    """One generator for the labels and one independent child generator per item."""
    label_seq, *items = np.random.SeedSequence(int(seed)).spawn(n + 1)
    return np.random.default_rng(label_seq), [np.random.default_rng(s) for s in items]


def sample_mammograms(
    n: int, seed: int, *, diameter_range_mm: tuple[float, float] = MAMMO_DIAMETER_RANGE_MM, **kw
) -> list[Phantom]:
    """``n`` mammograms with classes as balanced as ``n`` allows, in shuffled order.

    Item ``i`` draws from its own child of ``SeedSequence(seed)``, so the list
    is deterministic. Mass diameters are log-uniform over ``diameter_range_mm``
    unless ``lesion_diameter_mm`` is given (ignored for 'normal'); laterality is
    random unless given. Other keywords go to ``mammogram``.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    label_rng, rngs = _item_rngs(n, seed)
    labels = np.array(MAMMOGRAPHY_LABELS)[label_rng.permutation(n) % 3]
    lo, hi = np.log(diameter_range_mm)
    out = []
    for label, rng in zip(labels, rngs, strict=True):
        args = dict(kw)
        if args.get("laterality") is None:
            args["laterality"] = "L" if rng.random() < 0.5 else "R"
        if label == "normal":
            args.pop("lesion_diameter_mm", None)
        elif args.get("lesion_diameter_mm") is None:
            args["lesion_diameter_mm"] = float(np.exp(rng.uniform(lo, hi)))
        out.append(mammogram(rng, str(label), **args))
    return out


def sample_brain(
    n: int, seed: int, *, diameter_range_mm: tuple[float, float] = BRAIN_DIAMETER_RANGE_MM, **kw
) -> list[Phantom]:
    """``n`` brain slices, half of them (rounded) with a tumour, shuffled; seeded as ``sample_mammograms``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    label_rng, rngs = _item_rngs(n, seed)
    flags = label_rng.permutation(n) % 2 == 0
    lo, hi = np.log(diameter_range_mm)
    out = []
    for flag, rng in zip(flags, rngs, strict=True):
        args = dict(kw)
        if not flag:
            args.pop("lesion_diameter_mm", None)
        elif args.get("lesion_diameter_mm") is None:
            args["lesion_diameter_mm"] = float(np.exp(rng.uniform(lo, hi)))
        out.append(brain_mri(rng, bool(flag), **args))
    return out
