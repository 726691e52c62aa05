"""The 3D read: one volume in, the input check, then lesion present or not, its mask, volume and size.

One function (``read_volume``) serves ``oncolens predict`` on a series and the tests, for the
built-in brain-metastasis model and for any registered MONAI bundle (``models.volumes.bundle``),
so they can never disagree about what a model said or about refusing to say it.

Steps (docs/volumes.md, "The 3D model"), each with MONAI where MONAI has it:

1. **Contract**: the series' modality must be the bundle's (a CT is never read by an MR model:
   ``NoModelForVolumeError``); an oblique stack is refused (the model learnt axis-aligned
   volumes).
2. **Preparation** (``prepare``, the same chain training uses): ``Orientation`` to the bundle's
   axis codes, ``Spacing`` to its voxel size (bilinear), ``ScaleIntensityRangePercentiles``
   (0.5th to 99.5th percentile -> 0 to 1, not clipped, so an enhancing rim stays above 1).
3. **Input guard** (``VolumeGuard``): the Mahalanobis distance of fourteen statistics of the
   prepared volume to those of the training volumes, scaled by its largest value on held-out
   volumes; above the threshold the read is refused: no label, no mask, no measurement.
4. **Segmentation**: ``sliding_window_inference`` over windows of the bundle's spatial shape
   (one window covers a 2 mm brain), softmax; the lesion mask is the argmax, cleaned of
   components under ``MIN_LESION_VOXELS``.
5. **Presence and measurements**, derived from the mask rather than from a second head (one
   output to validate, and the presence can never contradict the outline): a lesion is
   present when a component remains whose largest lesion probability reaches the bundle's
   ``min_component_probability`` (``configs/inference.json``, chosen on held-out volumes;
   0.5 when a bundle does not say); its probability is the largest lesion probability of a
   voxel inside it; per lesion the volume (mL, on the model's grid) and the RECIST longest
   axial diameter (max Feret diameter over axial slices, mm).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage

from models.volumes.phantoms import longest_axial_diameter_mm

if TYPE_CHECKING:
    from models.volumes.bundle import Bundle
    from models.volumes.series import Volume

__all__ = [
    "MIN_LESION_VOXELS",
    "STAT_NAMES",
    "LesionMeasure",
    "NoModelForVolumeError",
    "VolumeCheck",
    "VolumeGuard",
    "VolumeRead",
    "prepare",
    "read_volume",
    "segment",
    "volume_statistics",
]

MIN_LESION_VOXELS = 4  # 32 mm^3 at 2 mm: smaller islands are noise, not a 4 mm metastasis
PERCENTILES = (0.5, 99.5)
# the model's grid at most 2^26 voxels (256 MiB as float32; a whole-body CT at 2 mm is ~2^24)
MAX_RESAMPLED_VOXELS = 1 << 26
# MONAI's axis labels for RAS, passed explicitly: the value its Orientation has always used, said
# out loud so a coming change of that default cannot move the grid (and MONAI stops warning users)
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
STAT_NAMES = (
    "mean",
    "std",
    "dark_fraction",
    "bright_fraction",
    "above_one_fraction",
    "gradient_slices",
    "gradient_rows",
    "gradient_columns",
    "entropy",
    "left_right_asymmetry",
    "centre_minus_border",
    "extent_ratio",
    "superior_minus_inferior",
    "posterior_minus_anterior",
)


class NoModelForVolumeError(ValueError):
    """No registered 3D model can read this volume (modality, orientation); the message says why."""


@dataclass(frozen=True)
class VolumeCheck:
    """The guard's answer for one volume: ``input_check`` in the read's JSON."""

    in_distribution: bool
    score: float  # scaled distance (1.0: the largest of the held-out training-like volumes)
    threshold: float
    reason: str  # why refused; "" when not
    statistics_distance: float
    statistics: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("statistics")
        for k in ("score", "threshold", "statistics_distance"):
            out[k] = round(float(out[k]), 4)
        return out


@dataclass(frozen=True)
class VolumeGuard:
    """Mean and inverse covariance of ``volume_statistics`` on training volumes; the scale (the
    largest distance among held-out volumes) and the threshold on the scaled distance."""

    mean: np.ndarray
    precision: np.ndarray
    scale: float
    threshold: float

    @classmethod
    def from_json(cls, data: dict) -> VolumeGuard:
        if list(data.get("statistics", [])) != list(STAT_NAMES):
            raise ValueError("the input guard measures other statistics than this OncoLens")
        return cls(
            np.asarray(data["mean"], float),
            np.asarray(data["precision"], float),
            float(data["scale"]),
            float(data["threshold"]),
        )

    def to_json(self) -> dict:
        return {
            "statistics": list(STAT_NAMES),
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
            "scale": self.scale,
            "threshold": self.threshold,
        }

    def distance(self, stats: np.ndarray) -> float:
        d = np.asarray(stats, float) - self.mean
        return float(np.sqrt(max(d @ self.precision @ d, 0.0)))

    def check(self, prepared: torch.Tensor, title: str) -> VolumeCheck:
        stats = volume_statistics(prepared)
        score = self.distance(stats) / self.scale
        ok = score <= self.threshold
        reason = (
            ""
            if ok
            else (
                f"this volume does not look like the volumes {title} was trained on "
                f"(score {score:.2f} > threshold {self.threshold:.2f}); no read is given"
            )
        )
        return VolumeCheck(ok, score, self.threshold, reason, score, tuple(stats.tolist()))


@dataclass(frozen=True)
class LesionMeasure:
    volume_ml: float
    longest_axial_diameter_mm: float
    probability: float  # largest lesion probability of a voxel inside it
    centre_voxel: tuple[int, int, int]  # on the model grid

    def to_json(self) -> dict:
        return {
            "volume_ml": round(self.volume_ml, 3),
            "longest_axial_diameter_mm": round(self.longest_axial_diameter_mm, 1),
            "probability": round(self.probability, 4),
        }


@dataclass(frozen=True)
class VolumeRead:
    """One series read by one 3D model (refused: ``input_check.reason``)."""

    model: str
    model_version: str
    model_title: str
    series_instance_uid: str
    modality: str
    label: str | None  # "lesion" / "no lesion"; None when refused
    probability: float | None  # of a lesion being present
    lesions: tuple[LesionMeasure, ...]  # largest first
    mask: np.ndarray | None  # bool, model grid (``mask_affine_ras``); None when refused
    mask_affine_ras: np.ndarray | None
    input_check: VolumeCheck
    latency_ms: float

    @property
    def refused(self) -> str | None:
        return None if self.input_check.in_distribution else self.input_check.reason

    def to_json(self) -> dict:
        """The keys of ``oncolens predict --json`` for a series."""
        lesion = self.lesions[0].to_json() if self.lesions else None
        return {
            "kind": "volume",
            "series_instance_uid": self.series_instance_uid,
            "modality": self.modality,
            "model": self.model,
            "model_version": self.model_version,
            "label": self.label,
            "probability": None if self.probability is None else round(self.probability, 4),
            "refused": self.refused,
            "input_check": self.input_check.to_json(),
            "lesion": lesion,
            "lesions": [m.to_json() for m in self.lesions],
            "total_volume_ml": round(sum(m.volume_ml for m in self.lesions), 3)
            if self.label is not None
            else None,
            "latency_ms": round(self.latency_ms, 1),
        }


def prepare(
    pixels: np.ndarray,
    affine_ras: np.ndarray,
    *,
    axcodes: str,
    spacing_mm: tuple[float, float, float],
    labels: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray]:
    """The model's input (1, D, H, W) float32, the labels on the same grid (nearest), the grid's affine.

    The one preparation of training and reading (MONAI's Orientation, Spacing and percentile
    scaling), so a read sees exactly what the network learnt from.
    """
    # lazy: MONAI (about 1 s to import) only where a volume is read or trained on
    from monai.data.meta_tensor import MetaTensor
    from monai.transforms import (  # lazy: as above
        Orientation,
        ScaleIntensityRangePercentiles,
        Spacing,
    )  # lazy: as above

    affine = torch.as_tensor(np.asarray(affine_ras, dtype=np.float64))
    img: Any = MetaTensor(
        torch.from_numpy(np.ascontiguousarray(pixels, np.float32))[None], affine=affine
    )
    img = Orientation(axcodes=axcodes, labels=RAS_LABELS)(img)
    img = Spacing(pixdim=spacing_mm, mode="bilinear", padding_mode="border")(img)
    lab = None
    if labels is not None:
        lt: Any = MetaTensor(
            torch.from_numpy(np.ascontiguousarray(labels, np.float32))[None], affine=affine
        )
        lt = Orientation(axcodes=axcodes, labels=RAS_LABELS)(lt)
        lab = Spacing(pixdim=spacing_mm, mode="nearest")(lt)
    grid_affine = np.asarray(img.affine, dtype=np.float64)
    scaled = ScaleIntensityRangePercentiles(*PERCENTILES, b_min=0.0, b_max=1.0, clip=False)(img)
    out = torch.as_tensor(scaled).as_subclass(torch.Tensor).float().contiguous()
    lab_out = (
        None
        if lab is None
        else torch.as_tensor(lab).as_subclass(torch.Tensor).round().to(torch.uint8)
    )
    return out, lab_out, grid_affine


def volume_statistics(prepared: torch.Tensor | np.ndarray) -> np.ndarray:
    """Fourteen unit-free statistics (``STAT_NAMES``) of a prepared volume (1, D, H, W) or (D, H, W).

    Brightness and contrast, the dark (air, CSF), bright and above-range (enhancement)
    fractions, edge energy along each axis, the histogram's entropy, left-right asymmetry,
    centre against border, the shape's aspect (slices over columns), and top against bottom and
    back against front (after reorientation: a header that lies about the orientation shows):
    cheap (tens of ms), and enough to tell a brain MR from a thorax CT, noise, an upside-down
    or a cropped head.
    """
    a = np.asarray(prepared.numpy() if isinstance(prepared, torch.Tensor) else prepared, np.float32)
    a = a.reshape(a.shape[-3:])
    flat = a.ravel()
    hist, _ = np.histogram(np.clip(flat, 0.0, 1.0), bins=32, range=(0.0, 1.0))
    p = hist / max(hist.sum(), 1)
    d, h, w = map(int, np.shape(a))
    centre = a[d // 4 : 3 * d // 4, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean()
    return np.array(
        [
            flat.mean(),
            flat.std(),
            (flat <= 0.05).mean(),
            (flat >= 0.95).mean(),
            (flat > 1.05).mean() * 100.0,
            np.abs(np.diff(a, axis=0)).mean(),
            np.abs(np.diff(a, axis=1)).mean(),
            np.abs(np.diff(a, axis=2)).mean(),
            -(p * np.log(np.maximum(p, 1e-12))).sum(),
            np.abs(a - a[:, :, ::-1]).mean(),
            centre - flat.mean(),
            d / w,
            a[d // 2 :].mean() - a[: d // 2].mean(),
            a[:, h // 2 :].mean() - a[:, : h // 2].mean(),
        ],
        dtype=np.float64,
    )


def segment(
    network: Any, prepared: torch.Tensor, roi: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Lesion mask (bool) and lesion probability (float32) of a prepared volume, by sliding windows."""
    # lazy: MONAI only where a volume is read
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        logits = sliding_window_inference(
            prepared[None], roi, 1, network, overlap=0.25, mode="gaussian"
        )
        probs = torch.softmax(torch.as_tensor(logits).as_subclass(torch.Tensor)[0], dim=0)
    lesion_p = probs[1:].sum(0).numpy()
    mask = probs.argmax(0).numpy() > 0
    return mask, lesion_p.astype(np.float32)


def measure(
    mask: np.ndarray,
    lesion_p: np.ndarray,
    spacing_mm: tuple[float, float, float],
    min_probability: float = 0.5,
) -> tuple[np.ndarray, tuple[LesionMeasure, ...]]:
    """The mask without islands under ``MIN_LESION_VOXELS`` or whose largest lesion probability is
    under ``min_probability`` (the bundle's, chosen on held-out volumes), and each lesion's
    measures, largest first."""
    comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    keep = np.zeros_like(mask)
    found = []
    for k, box in enumerate(ndimage.find_objects(comp), start=1):
        if box is None:
            continue
        part = comp[box] == k
        if part.sum() < MIN_LESION_VOXELS or float(lesion_p[box][part].max()) < min_probability:
            continue
        keep[box] |= part
        centre = tuple(
            int(s.start + c) for s, c in zip(box, ndimage.center_of_mass(part), strict=True)
        )
        found.append(
            LesionMeasure(
                float(part.sum()) * voxel_ml,
                longest_axial_diameter_mm(part, spacing_mm),
                float(lesion_p[box][part].max()),
                (centre[0], centre[1], centre[2]),
            )
        )
    found.sort(key=lambda m: -m.volume_ml)
    return keep, tuple(found)


def read_volume(volume: Volume, bundle: Bundle) -> VolumeRead:
    """The read of ``volume`` by ``bundle``: refused by the guard, or presence, mask and measures.

    Raises ``NoModelForVolumeError`` when the bundle's contract does not cover the volume.
    """
    t0 = time.perf_counter()
    contract = bundle.contract
    if volume.modality != contract.modality:
        raise NoModelForVolumeError(
            f"{bundle.title} reads {contract.modality} volumes; this series is {volume.modality or 'of unknown modality'}"
        )
    rot = volume.affine_lps[:3, :3] / np.linalg.norm(volume.affine_lps[:3, :3], axis=0)
    if np.abs(rot).max(axis=0).min() < 0.99:
        raise NoModelForVolumeError(
            f"{bundle.title} reads axis-aligned volumes; this series is oblique (reformat it first)"
        )
    # the model's grid from the header's voxel sizes, bounded before anything is allocated: a
    # 3-slice series claiming 50 mm pixels would resample to ~10^10 voxels (found in review)
    extent = np.asarray(volume.shape) * np.linalg.norm(volume.affine_lps[:3, :3], axis=0)
    resampled = float(np.prod(np.maximum(extent / np.asarray(contract.spacing_mm), 1.0)))
    if not np.isfinite(resampled) or resampled > MAX_RESAMPLED_VOXELS:
        raise NoModelForVolumeError(
            f"{bundle.title} resamples to {' x '.join(f'{v:g}' for v in contract.spacing_mm)} mm; "
            f"this series' voxel sizes would make that {resampled:.3g} voxels, over the limit of "
            f"{MAX_RESAMPLED_VOXELS:,} (check its pixel spacing)"
        )
    prepared, _, grid = prepare(
        volume.pixels, volume.affine_ras, axcodes=contract.axcodes, spacing_mm=contract.spacing_mm
    )
    check = bundle.guard.check(prepared, bundle.title)
    if not check.in_distribution:
        return VolumeRead(
            bundle.name, bundle.version, bundle.title, volume.series_instance_uid,
            volume.modality, None, None, (), None, None, check,
            1e3 * (time.perf_counter() - t0),
        )  # fmt: skip
    mask, lesion_p = segment(bundle.network, prepared, contract.spatial_shape)
    mask, lesions = measure(mask, lesion_p, contract.spacing_mm, bundle.min_probability)
    present = bool(lesions)
    prob = max(m.probability for m in lesions) if present else float(lesion_p.max())
    return VolumeRead(
        bundle.name, bundle.version, bundle.title, volume.series_instance_uid, volume.modality,
        "lesion" if present else "no lesion", prob, lesions, mask, grid, check,
        1e3 * (time.perf_counter() - t0),
    )  # fmt: skip
