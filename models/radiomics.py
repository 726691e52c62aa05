"""Lesion measurements from a mask and the pixel spacing: RECIST diameter, shape, intensity, texture.

Why these: RECIST 1.1 follows the longest diameter in millimetres; radiomics
studies compare first-order, shape and grey-level co-occurrence (GLCM) features
whose definitions follow the Image Biomarker Standardisation Initiative (IBSI,
Zwanenburg et al., Radiology 2020) where scikit-image implements them.
Every length is in mm and every area in mm², computed with the image's own
(row, column) spacing, so anisotropic pixels are measured correctly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops

GLCM_LEVELS = 32


@dataclass(frozen=True)
class LesionFeatures:
    longest_diameter_mm: float  # RECIST 1.1: maximum Feret diameter in the image plane
    area_mm2: float
    perimeter_mm: float
    compactness: float  # 4 pi area / perimeter^2 (1 for a disc, lower for irregular)
    eccentricity: float  # of the moment-equivalent ellipse (0 circle, -> 1 elongated)
    solidity: float  # area / convex hull area (spiculated margins lower it)
    mean_intensity: float  # first-order, in the image's modality units
    std_intensity: float
    skewness: float
    kurtosis: float  # excess kurtosis
    p10_intensity: float
    p90_intensity: float
    entropy_bits: float  # of a 32-bin histogram of the lesion
    glcm_contrast: float  # 32 grey levels, distance 1 pixel, mean over 4 directions
    glcm_homogeneity: float
    glcm_correlation: float
    glcm_energy: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component: RECIST measures one target lesion, not speckle."""
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(mask, labelled, index=np.arange(1, n + 1))
    return labelled == (1 + int(np.argmax(sizes)))


def longest_diameter_mm(mask: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    """Maximum Feret diameter in mm over pixel corners (so a one-pixel lesion measures one pixel)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0.0
    # the four corners of every pixel, de-duplicated on the integer grid (one integer per corner:
    # a 1-D unique is an order of magnitude faster than np.unique(axis=0) on float pairs), in mm
    width = int(cols.max()) + 2
    corners = np.unique(
        np.concatenate(
            [
                rows * width + cols,
                (rows + 1) * width + cols,
                rows * width + cols + 1,
                (rows + 1) * width + cols + 1,
            ]
        )
    )
    pts = np.stack([(corners // width) * spacing_mm[0], (corners % width) * spacing_mm[1]], axis=1)
    if len(pts) > 3:
        # lazy: scipy is imported only when this is used (start-up time)
        from scipy.spatial import ConvexHull

        try:
            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # degenerate (collinear) point sets
            pass
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    return float(d.max())


def _central_moment(values: np.ndarray, k: int) -> float:
    return float(((values - values.mean()) ** k).mean())


def _skewness(values: np.ndarray) -> float:
    """Fisher-Pearson skewness, biased (``scipy.stats.skew``'s default, the IBSI definition);
    NumPy here because scipy.stats costs a second of start-up and a third of a millisecond per
    call in its argument handling (tests/models/test_radiomics.py compares the two)."""
    return _central_moment(values, 3) / _central_moment(values, 2) ** 1.5


def _excess_kurtosis(values: np.ndarray) -> float:
    """Excess kurtosis, biased (``scipy.stats.kurtosis``'s default, the IBSI definition)."""
    return _central_moment(values, 4) / _central_moment(values, 2) ** 2 - 3.0


def measure_lesion(
    pixels: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float]
) -> LesionFeatures | None:
    """Features of the largest lesion component, or None when the mask is empty."""
    mask = largest_component(np.asarray(mask, dtype=bool))
    if not mask.any():
        return None
    sr, sc = float(spacing_mm[0]), float(spacing_mm[1])
    props = regionprops(mask.astype(np.uint8), spacing=(sr, sc))[0]
    area = float(mask.sum() * sr * sc)
    perimeter = float(props.perimeter) if props.perimeter > 0 else 2 * (sr + sc)
    values = pixels[mask].astype(np.float64)
    hist, _ = np.histogram(values, bins=32)
    p = hist[hist > 0] / hist.sum()
    lo, hi = np.percentile(values, [0.5, 99.5]) if values.size > 1 else (values[0], values[0] + 1)
    rr, cc = np.nonzero(mask)
    box = (slice(rr.min(), rr.max() + 1), slice(cc.min(), cc.max() + 1))
    # quantised over the lesion's bounding box only (element-wise: the same values as the whole image)
    quantised = np.clip(
        ((pixels[box] - lo) / max(hi - lo, 1e-6) * (GLCM_LEVELS - 1)).round(), 0, GLCM_LEVELS - 1
    )
    # pixels outside the lesion go to an extra level that is dropped, so texture is lesion-only
    roi = np.where(mask[box], quantised, GLCM_LEVELS).astype(np.uint8)
    glcm = graycomatrix(
        roi,
        distances=[1],
        angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
        levels=GLCM_LEVELS + 1,
        symmetric=True,
        normed=False,
    )[:GLCM_LEVELS, :GLCM_LEVELS]
    glcm = glcm.astype(np.float64)
    sums = glcm.sum(axis=(0, 1), keepdims=True)
    glcm = np.divide(glcm, sums, out=np.zeros_like(glcm), where=sums > 0)

    def texture(name: str) -> float:
        with np.errstate(invalid="ignore", divide="ignore"):
            v = graycoprops(glcm, name)
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else 0.0

    return LesionFeatures(
        longest_diameter_mm=longest_diameter_mm(mask, (sr, sc)),
        area_mm2=area,
        perimeter_mm=perimeter,
        compactness=float(min(4 * np.pi * area / perimeter**2, 1.0)),
        eccentricity=float(props.eccentricity),
        solidity=float(props.solidity),
        mean_intensity=float(values.mean()),
        std_intensity=float(values.std()),
        skewness=_skewness(values) if values.size > 2 and values.std() > 0 else 0.0,
        kurtosis=_excess_kurtosis(values) if values.size > 3 and values.std() > 0 else 0.0,
        p10_intensity=float(np.percentile(values, 10)),
        p90_intensity=float(np.percentile(values, 90)),
        entropy_bits=float(-(p * np.log2(p)).sum()),
        glcm_contrast=texture("contrast"),
        glcm_homogeneity=texture("homogeneity"),
        glcm_correlation=texture("correlation"),
        glcm_energy=texture("energy"),
    )


# What each feature means and its unit, for tables a clinician reads. Intensity
# units are the image's modality units (e.g. HU for CT, arbitrary for MR/MG).
FEATURE_TABLE: tuple[tuple[str, str, str, str], ...] = (
    ("longest_diameter_mm", "Longest diameter (RECIST 1.1)", "mm", "size"),
    ("area_mm2", "Area", "mm²", "size"),
    ("perimeter_mm", "Perimeter", "mm", "size"),
    ("compactness", "Compactness (1 = disc)", "ratio", "shape"),
    ("eccentricity", "Eccentricity (0 = circle)", "ratio", "shape"),
    ("solidity", "Solidity (lower = spiculated)", "ratio", "shape"),
    ("mean_intensity", "Mean intensity", "modality units", "first-order"),
    ("std_intensity", "Intensity SD", "modality units", "first-order"),
    ("skewness", "Skewness", "—", "first-order"),
    ("kurtosis", "Excess kurtosis", "—", "first-order"),
    ("p10_intensity", "10th percentile", "modality units", "first-order"),
    ("p90_intensity", "90th percentile", "modality units", "first-order"),
    ("entropy_bits", "Entropy (32 bins)", "bits", "first-order"),
    ("glcm_contrast", "GLCM contrast", "—", "texture"),
    ("glcm_homogeneity", "GLCM homogeneity", "—", "texture"),
    ("glcm_correlation", "GLCM correlation", "—", "texture"),
    ("glcm_energy", "GLCM energy", "—", "texture"),
)


def feature_rows(features: LesionFeatures, spacing_known: bool = True) -> list[dict[str, object]]:
    """Rows (group, feature, value, unit) for display; sizes are dropped when the spacing is unknown."""
    values = features.as_dict()
    rows = []
    for key, label, unit, group in FEATURE_TABLE:
        if not spacing_known and unit in ("mm", "mm²"):
            continue
        rows.append({"group": group, "feature": label, "value": values[key], "unit": unit})
    return rows
