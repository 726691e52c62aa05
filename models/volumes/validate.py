"""``oncolens validate imaging`` for 3D models: what can be measured afresh, what comes from the card,
and what cannot be measured at all, said for each.

For every 3D bundle (the built-in one and every registered one):

- **input guard, measured afresh**: the guard's scores on fresh brain MR volumes (seed
  ``VALIDATE_SEED``, a stream no training uses) that it must let through, and on volumes it must
  refuse, built from them: uniform noise, the brain upside down, its lower half only, and a
  thorax CT labelled MR. Reported: the AUROC of the score (in- against out-of-distribution), the
  refusal rate of each group, and which must-refuse kinds got through. A registered bundle that
  ships its own guard was fitted on volumes of its own task, which OncoLens does not have: only
  the noise volumes (out of distribution for every model) are scored, and the AUROC is "not
  measured" with that reason.
- **segmentation, from the card**: Dice, HD95, lesion sensitivity by size, with the card's
  command; re-measuring them means reading dozens of volumes (minutes), which
  ``python -m models.training.train3d --evaluate`` does. A registered bundle's own card figures
  are passed on as "reported by the bundle, not reproduced": OncoLens has no labelled volumes
  of its task.
- **saliency, from the card**: each method's verdict (``models.saliency.verdict``), measured
  by ``python -m models.saliency.volume_quality --write-card`` into the bundle's
  ``docs/saliency.json`` (the card's ``saliency`` section once loaded); a bundle without the
  file (or measured on other weights) says "not measured".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.volumes import geometry, phantoms, segment
from models.volumes.cards import saliency_measured_on

if TYPE_CHECKING:
    from models.volumes.bundle import Bundle

__all__ = ["VALIDATE_SEED", "saliency_summary", "validate_volume_model"]

VALIDATE_SEED = 20_261_204
N_VOLUMES = 8  # fresh brains (each also gives its upside-down, half and noise twins)
AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def _prepared(vol: phantoms.PhantomVolume, bundle: Bundle) -> torch.Tensor:
    affine = geometry.LPS_TO_RAS @ geometry.affine_lps(
        np.asarray(vol.origin_lps), AXIAL, (vol.spacing_mm[1], vol.spacing_mm[2]),
        np.array([0.0, 0.0, vol.spacing_mm[0]]),
    )  # fmt: skip
    c = bundle.contract
    x, _, _ = segment.prepare(vol.values, affine, axcodes=c.axcodes, spacing_mm=c.spacing_mm)
    return x


def _own_guard(bundle: Bundle) -> bool:
    return (bundle.root / "configs" / "input_guard.json").is_file() and not bundle.builtin


def guard_figures(bundle: Bundle, n: int = N_VOLUMES, seed: int = VALIDATE_SEED) -> dict:
    """The guard's AUROC and refusal rates on fresh volumes (see the module docstring)."""
    # lazy: scikit-learn's AUROC only for this report
    from sklearn.metrics import roc_auc_score

    def score(x: torch.Tensor) -> float:
        return float(bundle.guard.check(x, bundle.title).score)

    rng = np.random.default_rng([seed, 0])
    noise = [
        score(torch.from_numpy(rng.random((1, *bundle.contract.spatial_shape), dtype=np.float32)))
        for _ in range(n)
    ]
    threshold = float(bundle.guard.threshold)
    if _own_guard(bundle):
        return {
            "threshold": threshold,
            "auroc": None,
            "auroc_not_measured": "the bundle ships its own input guard, fitted on volumes of its "
            "own task; OncoLens has no such volumes to score it against",
            "refusal_rate_out_of_distribution": round(
                float(np.mean(np.array(noise) > threshold)), 4
            ),
            "n_out_of_distribution": n,
            "out_of_distribution": "uniform noise only",
        }
    inside, outside = [], {"uniform noise": noise}
    for k in range(n):
        r = np.random.default_rng([seed, 1, k])
        size = float(r.uniform(5.0, 36.0)) if k % 4 else 0.0
        vol = phantoms.brain_mr(r, phantoms.brain_lesion(r, max(size, 5.0)) if size else None, size)
        x = _prepared(vol, bundle)
        inside.append(score(x))
        outside.setdefault("brain upside down", []).append(score(torch.flip(x, dims=(1,))))
        outside.setdefault("brain, lower half only", []).append(score(x[:, : x.shape[1] // 2]))
    for k in range(max(1, n // 4)):
        r = np.random.default_rng([seed, 2, k])
        ct = phantoms.thorax_ct(r, None, 0.0)
        outside.setdefault("thorax CT labelled MR", []).append(score(_prepared(ct, bundle)))
    out_scores = [s for v in outside.values() for s in v]
    labels = np.r_[np.zeros(len(inside)), np.ones(len(out_scores))]
    return {
        "threshold": threshold,
        "auroc": round(float(roc_auc_score(labels, np.r_[inside, out_scores])), 4),
        "refusal_rate_in_distribution": round(float(np.mean(np.array(inside) > threshold)), 4),
        "n_in_distribution": len(inside),
        "refusal_rate_out_of_distribution": round(
            float(np.mean(np.array(out_scores) > threshold)), 4
        ),
        "n_out_of_distribution": len(out_scores),
        "refusal_rate_by_kind": {
            k: round(float(np.mean(np.array(v) > threshold)), 4) for k, v in outside.items()
        },
        "let_through": sorted(k for k, v in outside.items() if min(v) <= threshold),
        "in_distribution": f"{len(inside)} fresh brain MR volumes (seed {seed}), 3 in 4 with a lesion",
    }


def saliency_summary(bundle: Bundle) -> dict:
    """Each 3D method's verdict from the card's ``saliency`` section, with its headline figures."""
    # lazy: the saliency package only for the report and the page
    from models.saliency.volume import METHODS_3D, card_verdict

    section = bundle.card.get("saliency") or {}
    measured = saliency_measured_on(section, bundle.sha256)
    out: dict[str, Any] = {}
    for method in METHODS_3D:
        entry = (section.get("methods") or {}).get(method) if measured else None
        out[method] = {"verdict": card_verdict(bundle, method).to_json()}
        if entry:
            out[method].update(
                {
                    "pointing_game": entry.get("pointing_game"),
                    "deletion_gain": entry.get("deletion_gain"),
                    "insertion_gain": entry.get("insertion_gain"),
                    "sanity_spearman": (entry.get("sanity") or {}).get("spearman_abs"),
                    "n_volumes": entry.get("n_images"),
                    "latency_ms": entry.get("latency_ms"),
                }
            )
    return {
        "methods": out,
        "pointing_game_random": section.get("pointing_game_random") if measured else None,
        "command": "python -m models.saliency.volume_quality --write-card",
    }


def validate_volume_model(bundle: Bundle, n: int = N_VOLUMES, seed: int = VALIDATE_SEED) -> dict:
    """One 3D model's entry in ``oncolens validate imaging --json``."""
    t0 = time.perf_counter()
    metrics = bundle.card.get("metrics") or {}
    if bundle.builtin:
        seg: dict[str, Any] = {
            "source": "model card (held-out volumes; python -m models.training.train3d)",
            **{
                k: metrics.get(k)
                for k in (
                    "dice",
                    "hd95_mm",
                    "lesion_sensitivity",
                    "sensitivity_by_size",
                    "n_test_volumes",
                )
                if k in metrics
            },
        }
    else:
        seg = {
            "source": "reported by the bundle's card, not reproduced",
            "reported": metrics,
            "not_measured": "OncoLens has no labelled volumes of this bundle's task: Dice and HD95 "
            "cannot be measured here",
        }
    return {
        "kind": "volume",
        "model": bundle.name,
        "model_version": bundle.version,
        "builtin": bundle.builtin,
        "modality": bundle.contract.modality,
        "guard": guard_figures(bundle, n, seed),
        "segmentation": seg,
        "saliency": saliency_summary(bundle),
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
