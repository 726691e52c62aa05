"""Image to network input: the one preprocessing path shared by training and every AI read.

Why percentile scaling: stored values differ by vendor, bit depth and rescale
(MG in detector units, MR in arbitrary units); scaling each image by its own
1st and 99.5th percentiles makes the network see the same range whatever the
file's units, without depending on the display window a user picked.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from models.inference.network import INPUT_SIZE

LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.5


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Float image scaled to [0, 1] by its own percentiles (constant images become zeros)."""
    p = np.asarray(pixels, dtype=np.float32)
    lo, hi = np.percentile(p, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-6:
        return np.zeros_like(p, dtype=np.float32)
    return np.clip((p - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_tensor(images: list[np.ndarray] | np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """Stack normalised images resized to (size, size): shape (N, 1, size, size).

    Resizing uses area averaging (anti-aliasing when shrinking), so thin
    structures such as spicules survive as a fainter signal rather than aliasing.
    """
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    batch = []
    for img in images:
        t = torch.from_numpy(normalise(img))[None, None]
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="area")
        batch.append(t)
    return torch.cat(batch, dim=0)


def mask_to_input(mask: np.ndarray, size: int = INPUT_SIZE) -> torch.Tensor:
    """Ground-truth mask at network resolution (soft coverage in [0, 1])."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="area")


def mask_to_image(
    mask_logits: torch.Tensor, shape: tuple[int, int], threshold: float = 0.5
) -> np.ndarray:
    """Network mask logits (1, 1, s, s) back to a boolean mask at the image's own rows/columns."""
    prob = torch.sigmoid(mask_logits.float())
    up = F.interpolate(prob, size=shape, mode="bilinear", align_corners=False)
    return (up[0, 0] >= threshold).numpy()


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
