"""Image to network input: the one preprocessing path shared by training and every AI read.

Why percentile scaling: stored values differ by vendor, bit depth and rescale
(MG in detector units, MR in arbitrary units); scaling each image by its own
1st and 99.5th percentiles makes the network see the same range whatever the
file's units, without depending on the display window a user picked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

INPUT_SIZE = 128  # the network's input side (models.inference.network.INPUT_SIZE, which is this)

LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.5


_COUNTED_SPAN = 1 << 20  # widest range of whole-number pixel values counted instead of partitioned


def percentiles(pixels: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(pixels, q)`` (the linear method), the same float64 values bit for bit.

    Why not call it: stored pixels are whole numbers (16-bit detectors, Hounsfield units) almost
    always, and for them the order statistics come from counting each value (``np.bincount``)
    at a quarter of the cost of NumPy's partition (~1.5 ms of a 256 x 256 read, issue 23). The
    interpolation between the two neighbouring order statistics is NumPy's own formula
    (``numpy.lib._function_base_impl._lerp``) on the same float32 values; anything else (a
    fractional value, NaN, infinity, a range over ``_COUNTED_SPAN``) goes to ``np.percentile``.
    tests/models/inference/test_preprocess.py compares the two on integer and float images.
    """
    p = np.asarray(pixels, dtype=np.float32).reshape(-1)
    n = p.size
    if n == 0:
        return np.percentile(p, q)
    with np.errstate(invalid="ignore"):  # NaN or infinity: not whole numbers, and not cast here
        whole = p.astype(np.int64)
    lowest = int(whole.min())
    span = int(whole.max()) - lowest + 1
    if span > _COUNTED_SPAN or not np.array_equal(whole, p):
        return np.percentile(p, q)
    cumulative = np.cumsum(np.bincount(whole - lowest, minlength=span))
    virtual = (n - 1) * (np.asanyarray(q, dtype=np.float64) / 100)
    previous = np.floor(virtual)
    gamma = virtual - previous
    first = previous.astype(np.intp)
    second = np.minimum(first + 1, n - 1)
    # the k-th smallest value (k from 0): the first value whose running count exceeds k
    a = (np.searchsorted(cumulative, first, side="right") + lowest).astype(np.float32)
    b = (np.searchsorted(cumulative, second, side="right") + lowest).astype(np.float32)
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Float image scaled to [0, 1] by its own percentiles (constant images become zeros)."""
    p = np.asarray(pixels, dtype=np.float32)
    lo, hi = percentiles(p, (LOW_PERCENTILE, HIGH_PERCENTILE))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-6:
        return np.zeros_like(p, dtype=np.float32)
    # float64, as NumPy promotes the float32 image against the float64 percentiles; in place
    scaled = np.subtract(p, lo, dtype=np.float64)
    scaled /= hi - lo
    np.clip(scaled, 0.0, 1.0, out=scaled)
    return scaled.astype(np.float32)


def area_resize(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """``image`` (H, W) float32 averaged down (or up) to (size, size): PyTorch's
    ``F.interpolate(mode="area")`` (adaptive average pooling), bit for bit.

    Why NumPy: the AI read runs on ONNX Runtime and must not import PyTorch (3.4 CPU-seconds of
    every ``oncolens predict``'s start, issue 23). Each output pixel averages the input window
    ``[floor(i*H/size), ceil((i+1)*H/size))``; the sum runs row by row, column by column in
    float32 and is divided by the window's height, then its width, exactly as PyTorch's CPU
    kernel does, so the network sees the very same input (tests/models/inference/test_preprocess.py
    compares them on many shapes).
    """
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    if (h, w) == (size, size):
        return img.copy()
    out_i = np.arange(size)
    hs, he = (out_i * h) // size, -((-(out_i + 1) * h) // size)
    ws, we = (out_i * w) // size, -((-(out_i + 1) * w) // size)
    hk, wk = he - hs, we - ws
    kh, kw = int(hk.max()), int(wk.max())
    out = np.zeros((size, size), dtype=np.float32)
    if (
        h == size * kh and w == size * kw
    ):  # an integer factor: every window the same (the usual case)
        for dy in range(kh):
            for dx in range(kw):
                out += img[dy::kh, dx::kw]
        return out / np.float32(kh) / np.float32(kw)
    padded = np.zeros((h + kh, w + kw), dtype=np.float32)
    padded[:h, :w] = img
    for dy in range(kh):
        rows = padded[hs + dy]
        for dx in range(kw):
            # adding 0.0 where a window is smaller than the largest leaves its sum unchanged
            inside = (dy < hk)[:, None] & (dx < wk)[None, :]
            out += np.where(inside, rows[:, ws + dx], np.float32(0.0))
    return out / hk[:, None].astype(np.float32) / wk[None, :].astype(np.float32)


def to_input(images: list[np.ndarray] | np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Stack normalised images resized to (size, size): float32 array (N, 1, size, size), the
    network input (``to_tensor``'s values, without PyTorch).

    Resizing uses area averaging (anti-aliasing when shrinking), so thin
    structures such as spicules survive as a fainter signal rather than aliasing.
    """
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    batch = np.empty((len(images), 1, size, size), dtype=np.float32)
    for i, img in enumerate(images):
        batch[i, 0] = area_resize(normalise(img), size)
    return batch


def to_tensor(images: list[np.ndarray] | np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """``to_input`` as a PyTorch tensor, for training and the explanations (which need gradients)."""
    import torch  # lazy: only training and saliency want a tensor; the read stays without PyTorch

    return torch.from_numpy(to_input(images, size))


def mask_to_input(mask: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """Ground-truth mask at network resolution (soft coverage in [0, 1])."""
    import torch  # lazy: training only

    return torch.from_numpy(area_resize(mask.astype(np.float32), size))[None, None]


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source rows (or columns) and weights of a bilinear resize, half-pixel centres
    (``align_corners=False``): (first, second, weight of first, weight of second)."""
    real = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(
        np.float32(n_in) / np.float32(n_out)
    ) - np.float32(0.5)
    real = np.maximum(real, np.float32(0.0))
    first = real.astype(np.intp)
    second = first + (first < n_in - 1)
    w1 = real - first.astype(np.float32)
    return first, second, np.float32(1.0) - w1, w1


def mask_to_image(mask_logits: Any, shape: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """Network mask logits (1, 1, s, s) (an array, or a CPU tensor) back to a boolean mask at the
    image's own rows/columns: the sigmoid, a bilinear resize (half-pixel centres), the threshold.

    NumPy in float32, so the read needs no PyTorch; it agrees with PyTorch's ``sigmoid`` and
    ``F.interpolate(mode="bilinear")`` to float rounding (a pixel within about 1e-7 of the
    threshold may fall the other way; tests/models/inference/test_preprocess.py)."""
    logits = np.asarray(mask_logits, dtype=np.float32)[0, 0]
    prob = np.float32(1.0) / (np.float32(1.0) + np.exp(-logits))
    r0, r1, rw0, rw1 = _bilinear_axis(prob.shape[0], shape[0])
    c0, c1, cw0, cw1 = _bilinear_axis(prob.shape[1], shape[1])
    # columns first, on the mask's own rows (4 x fewer than the image's): the same products and
    # sums per output pixel as interpolating each gathered row
    cols = prob[:, c0] * cw0 + prob[:, c1] * cw1
    return (cols[r0] * rw0[:, None] + cols[r1] * rw1[:, None]) >= threshold


def body_mask(pixels: np.ndarray) -> np.ndarray:
    """Where the body is (True) as opposed to the air around it, at the image's rows x columns.

    Why: a saliency contour drawn over the air outside the body points at nothing a clinician
    can look at; the saliency figures clip their top-k contour to this mask. Otsu's threshold on
    the percentile-normalised image, holes filled, the largest connected part kept, then
    dilated by 2 % of the image side so the skin line stays inside. An image without a clear
    background (no air) is all body.
    """
    # lazy: scipy and scikit-image only where a saliency figure is drawn
    from scipy import ndimage
    from skimage.filters import threshold_otsu  # lazy: as above

    p = normalise(pixels)
    if float(p.max()) <= 0.0:
        return np.ones(p.shape, dtype=bool)
    body = ndimage.binary_fill_holes(p > threshold_otsu(p) * 0.5)
    labels, n = ndimage.label(body)
    if n == 0:
        return np.ones(p.shape, dtype=bool)
    sizes = ndimage.sum(body, labels, index=range(1, n + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    body = ndimage.binary_dilation(body, iterations=max(1, round(0.02 * max(p.shape))))
    return body if body.mean() > 0.05 else np.ones(p.shape, dtype=bool)
