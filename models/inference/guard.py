"""The input guard: do these pixels look like what the model was trained on? Decided from the pixels.

Why: the DICOM tags only say what an image claims to be. A photograph, a CT of a vertebra or a
real brain MR behind an "MR / BRAIN" header used to get a confident read with a lesion outline
in millimetres. Every AI read (``models.inference.read.read_image``: ``oncolens predict``,
``ingest``, PACS pulls, the report and the Imaging page) and every explanation
(``models.saliency.methods.explain_file``) passes through ``check_input`` first, so a refusal
is one decision, the same everywhere.

How (docs/imaging.md, "Input guard"): two distances, each scaled by its own 99.9th percentile on
held-out in-distribution phantoms, and the larger one is the score.

* **Feature distance**: the Mahalanobis distance of the network's penultimate features (what
  its last layer sees; ``LesionNet.forward_with_features``) to the nearest class mean, with one
  shared covariance (Lee et al., NeurIPS 2018), estimated with Ledoit-Wolf shrinkage. It comes
  from the read's own forward pass, so it costs no second pass.
* **Image statistics**: the Mahalanobis distance of ten cheap statistics of the network input
  (brightness, contrast, air and saturated fractions, edge energy by direction, texture,
  histogram entropy, left-right asymmetry) to those of the phantoms; it catches inputs whose
  features happen to land near a class (noise, flat patterns).

The threshold is the largest score among 2,000 held-out phantoms (expected false refusal
1 / 2,001, about 0.05 %; checked on a third set: at most 2 %). Why the maximum and not a 1 %
quantile: the phantoms' score has a long tail, a 1 % threshold refused about one ordinary
phantom in a hundred (test fixtures and demo images among them), and every
out-of-distribution image of the test set scores well above the held-out maximum. Statistics and threshold are written beside the weights
(``NAME.guard.json``) by ``python -m models.training.guard`` and checked against the card's
sha256 like the weights: a guard that does not match its card refuses to load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.inference.tasks import NoModelForImageError

if TYPE_CHECKING:
    import torch

STAT_NAMES = (
    "mean",
    "std",
    "air_fraction",
    "saturated_fraction",
    "edge_rows",
    "edge_columns",
    "texture",
    "entropy",
    "asymmetry",
    "centre_minus_border",
)
SCALE_QUANTILE = 99.9  # each distance is divided by this percentile on held-out phantoms
# the threshold's quantile on held-out phantoms: 0 puts it at their largest score, so the
# expected false refusal is 1 / (n + 1) (0.05 % with the 2,000 held-out phantoms)
FALSE_REFUSAL_TARGET = 0.0
FALSE_REFUSAL_LIMIT = 0.02  # what a third held-out set must confirm (the bound)


class GuardUnavailableError(Exception):
    """The guard statistics of a model are missing, unreadable or do not match its card."""


class InputRefusedError(NoModelForImageError):
    """The input guard refused the image: no model reads it (callers that cannot show a refusal
    as a result, e.g. an explanation or a report figure, raise this; the read itself returns it)."""


@dataclass(frozen=True)
class InputCheck:
    """The guard's answer for one image: part of every read's JSON as ``input_check``."""

    in_distribution: bool
    score: (
        float  # max of the two scaled distances (1.0: a held-out phantom at the 99.9th percentile)
    )
    threshold: float
    reason: str  # why the image was refused; "" when it was not
    feature_distance: float  # scaled Mahalanobis distance of the penultimate features
    statistics_distance: float  # scaled Mahalanobis distance of the image statistics
    # the ten image statistics (STAT_NAMES) the check measured: stored with the read for drift
    # monitoring (analytics.governance.lifecycle), not part of the CLI's JSON
    statistics: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("statistics")
        for k in ("score", "threshold", "feature_distance", "statistics_distance"):
            out[k] = round(float(out[k]), 4)
        return out


@lru_cache(maxsize=8)
def _window_scale(h: int, w: int, k: int = 5) -> np.ndarray:
    """1 / (pixels of a k x k window centred on each pixel that lie inside an h x w image): what
    turns the window's sum (zeros outside) into the mean of the pixels inside."""
    rows = np.minimum(np.arange(h) + k // 2, h - 1) - np.maximum(np.arange(h) - k // 2, 0) + 1
    cols = np.minimum(np.arange(w) + k // 2, w - 1) - np.maximum(np.arange(w) - k // 2, 0) + 1
    return (1.0 / np.outer(rows, cols)).astype(np.float32)


def _local_mean(a: np.ndarray, k: int = 5) -> np.ndarray:
    """The mean over the pixels inside a k x k window centred on each pixel of each image (N, H, W).

    Why shifted sums and not SciPy's ``uniform_filter``: k slices added along each axis of a
    zero-padded copy are about half its cost at 128 x 128 (0.13 against 0.25 ms of one core), and
    the guard runs on every read; they agree with it to float32 rounding (1e-7).
    """
    n, h, w = a.shape
    r = k // 2
    padded = np.zeros((n, h + 2 * r, w + 2 * r), dtype=np.float32)
    padded[:, r : r + h, r : r + w] = a
    rows = padded[:, 0:h] + padded[:, 1 : h + 1]
    for i in range(2, k):
        rows += padded[:, i : i + h]
    out = rows[:, :, 0:w] + rows[:, :, 1 : w + 1]
    for i in range(2, k):
        out += rows[:, :, i : i + w]
    out *= _window_scale(h, w, k)
    return out


def image_statistics(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Ten statistics (``STAT_NAMES``) of each network input (N, 1, S, S) in [0, 1]: (N, 10).

    All are unit-free (the input is already percentile-normalised). NumPy, not torch: a dozen
    tiny torch ops cost more in thread-pool overhead than the forward pass on a busy machine
    (65 ms against 2 ms here, bench/bench_inference.py). Texture is the mean absolute
    difference from the 5 x 5 mean over the window's pixels inside the image; the histogram
    has 32 equal bins on [0, 1]. Counts, not means of boolean arrays, for the air and saturated
    fractions (a boolean mean converts every pixel to float first).
    """
    # a tensor (explanations, training) without importing PyTorch here: the read passes arrays
    arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    # float32: half the memory traffic of float64; the statistics agree to about 1e-6
    a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32)[:, 0])
    n, h, w = a.shape
    pixels = h * w
    flat = a.reshape(n, -1)
    mean = flat.mean(axis=1)
    d_rows = np.abs(a[:, 1:] - a[:, :-1]).mean(axis=(1, 2))
    d_cols = np.abs(a[:, :, 1:] - a[:, :, :-1]).mean(axis=(1, 2))
    local = _local_mean(a)
    np.subtract(a, local, out=local)
    np.abs(local, out=local)
    texture = local.mean(axis=(1, 2))
    bins = (flat * 32).astype(np.int32)
    np.clip(bins, 0, 31, out=bins)
    bins += 32 * np.arange(n, dtype=np.int32)[:, None]
    hist = np.bincount(bins.ravel(), minlength=32 * n).reshape(n, 32).astype(np.float64)
    p = hist / pixels
    entropy = -(p * np.log(np.maximum(p, 1e-12))).sum(axis=1)
    # |a - mirror(a)| is itself mirror-symmetric: its left half has the whole image's mean
    half = w // 2
    asym = (
        np.abs(a[:, :, :half] - a[:, :, ::-1][:, :, :half]).mean(axis=(1, 2))
        if w % 2 == 0
        else np.abs(a - a[:, :, ::-1]).mean(axis=(1, 2))
    )
    centre = a[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean(axis=(1, 2))
    return np.stack(
        [
            mean,
            flat.std(axis=1, ddof=1),
            np.count_nonzero(flat <= 0.01, axis=1) / pixels,
            np.count_nonzero(flat >= 0.99, axis=1) / pixels,
            d_rows,
            d_cols,
            texture,
            entropy,
            asym,
            centre - mean,
        ],
        axis=1,
    ).astype(np.float64)


@dataclass(frozen=True)
class GuardStats:
    """What the guard compares against: fitted on phantoms, stored beside the weights."""

    class_means: np.ndarray  # (C, D) penultimate-feature means per class
    feature_precision: np.ndarray  # (D, D) inverse of the shared (within-class) covariance
    stats_mean: np.ndarray  # (K,)
    stats_precision: np.ndarray  # (K, K)
    feature_scale: float  # 99.9th percentile of the feature distance on held-out phantoms
    stats_scale: float  # same for the image statistics
    threshold: float  # on the combined score
    fitted_on: dict  # seeds and counts, for the card

    def distances(self, features: np.ndarray, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled Mahalanobis distances (feature to nearest class mean, statistics to mean): (N,), (N,)."""
        f = np.asarray(features, dtype=np.float64)[:, None, :] - self.class_means[None]
        d_f = ((f @ self.feature_precision) * f).sum(axis=2).min(axis=1)
        s = np.asarray(stats, dtype=np.float64) - self.stats_mean
        d_s = np.einsum("nk,kl,nl->n", s, self.stats_precision, s)
        return np.sqrt(np.maximum(d_f, 0.0)), np.sqrt(np.maximum(d_s, 0.0))

    def scores(self, features: np.ndarray, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled distances (N, 2): feature, statistics; the score is their row maximum."""
        d_f, d_s = self.distances(features, stats)
        return d_f / self.feature_scale, d_s / self.stats_scale

    def check(self, features: np.ndarray, stats: np.ndarray, model_title: str) -> list[InputCheck]:
        out = []
        rows = np.asarray(stats, dtype=np.float64)
        for i, (f, s) in enumerate(zip(*self.scores(features, stats), strict=True)):
            score = max(float(f), float(s))
            ok = bool(np.isfinite(score) and score <= self.threshold)
            reason = ""
            if not ok:
                what = "the model's features" if f >= s else "the image's brightness and texture"
                reason = (
                    f"the pixels do not look like the images the {model_title.lower()} was trained on "
                    f"({what} are {score:.1f} times the usual distance, threshold {self.threshold:.2f}); "
                    "no read is given for an image outside what the model knows"
                )
            out.append(
                InputCheck(
                    ok,
                    score,
                    self.threshold,
                    reason,
                    float(f),
                    float(s),
                    tuple(float(v) for v in rows[i]),
                )
            )
        return out

    def to_json(self) -> dict:
        return {
            "method": "max(Mahalanobis of penultimate features to the nearest class mean, "
            "Mahalanobis of image statistics), each scaled by its 99.9th percentile on held-out phantoms",
            "statistics": list(STAT_NAMES),
            "class_means": np.round(self.class_means, 6).tolist(),
            "feature_precision": np.round(self.feature_precision, 6).tolist(),
            "stats_mean": np.round(self.stats_mean, 8).tolist(),
            "stats_precision": np.round(self.stats_precision, 6).tolist(),
            "feature_scale": round(self.feature_scale, 6),
            "stats_scale": round(self.stats_scale, 6),
            "threshold": round(self.threshold, 6),
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_json(cls, data: dict) -> GuardStats:
        try:
            return cls(
                class_means=np.asarray(data["class_means"], dtype=np.float64),
                feature_precision=np.asarray(data["feature_precision"], dtype=np.float64),
                stats_mean=np.asarray(data["stats_mean"], dtype=np.float64),
                stats_precision=np.asarray(data["stats_precision"], dtype=np.float64),
                feature_scale=float(data["feature_scale"]),
                stats_scale=float(data["stats_scale"]),
                threshold=float(data["threshold"]),
                fitted_on=dict(data.get("fitted_on", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GuardUnavailableError(f"guard statistics are malformed: {exc}") from exc


def _precision(centred: np.ndarray) -> np.ndarray:
    # lazy: scikit-learn is needed only when a guard is fitted (training), never for a read
    from sklearn.covariance import LedoitWolf

    return LedoitWolf(assume_centered=True).fit(centred).precision_


def fit_guard(
    features: np.ndarray,
    labels: np.ndarray,
    stats: np.ndarray,
    held_features: np.ndarray,
    held_stats: np.ndarray,
    fitted_on: dict,
    false_refusal: float = FALSE_REFUSAL_TARGET,
) -> GuardStats:
    """Means and shrunk precisions from one phantom set; scales and threshold from another.

    The scales and the threshold come from held-out phantoms (never the fit set, whose
    distances are smaller), so the stated false-refusal rate is that of unseen images.
    """
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    within = features - means[np.searchsorted(classes, labels)]
    stats_mean = stats.mean(axis=0)
    partial = GuardStats(
        class_means=means,
        feature_precision=_precision(within),
        stats_mean=stats_mean,
        stats_precision=_precision(stats - stats_mean),
        feature_scale=1.0,
        stats_scale=1.0,
        threshold=np.inf,
        fitted_on=fitted_on,
    )
    d_f, d_s = partial.distances(held_features, held_stats)
    q = 100 * (1 - false_refusal)
    scaled = GuardStats(
        **{
            **partial.__dict__,
            "feature_scale": float(np.percentile(d_f, SCALE_QUANTILE)),
            "stats_scale": float(np.percentile(d_s, SCALE_QUANTILE)),
        }
    )
    combined = np.maximum(*scaled.scores(held_features, held_stats))
    return GuardStats(**{**scaled.__dict__, "threshold": float(np.percentile(combined, q))})


def guard_path(weights: Path) -> Path:
    """``NAME.guard.json`` beside ``NAME.pt``."""
    return weights.with_name(f"{weights.stem}.guard.json")


def load_guard(weights: Path, card: dict) -> GuardStats:
    """The guard stored beside ``weights``, verified against the card's ``input_guard.sha256``."""
    # lazy: hashlib only where a guard is loaded (start-up time of the CLI's other commands)
    import hashlib

    path = guard_path(weights)
    expected = (card.get("input_guard") or {}).get("sha256")
    if not path.exists() or not expected:
        raise GuardUnavailableError(
            f"no input guard for {weights.stem} ({path.name} and the card's input_guard.sha256 are "
            f"needed); fit it with `python -m models.training.guard --task {weights.stem}`"
        )
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != expected:
        raise GuardUnavailableError(
            f"input guard {path} does not match its model card (sha256); refusing to read without it"
        )
    try:
        return GuardStats.from_json(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise GuardUnavailableError(f"input guard {path} cannot be read: {exc}") from exc
