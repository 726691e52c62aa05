"""Fit each model's input guard, decide its calibration, measure its weak spots; write them to the card.

    python -m models.training.guard --task mammography     # writes mammography.guard.json + card sections
    python -m models.training.guard --task brain_mri --check   # refit in memory, compare with the card

Why one script after training (``models.training.train`` runs it too): the guard's statistics,
the decision to apply temperature scaling and the small-lesion sensitivity all come from the
committed weights on seeded phantoms, so they can be regenerated exactly and the card keeps
the sha256 of every file it describes.

Phantom sets, each from its own seed, none used to set anything it is then judged on:

* fit (``FIT_SEED``): the training seed's first images, for the class means and covariances;
* held-out (``HELD_SEED``): scales and threshold of the guard, and the calibration decision;
* test (``TEST_SEED``): the reported in-distribution refusal rate, ECE before/after and the
  sensitivity by lesion size;
* out-of-distribution (``models.training.ood``): detection AUROC and refusal rate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from models.inference.guard import (
    FALSE_REFUSAL_LIMIT,
    FALSE_REFUSAL_TARGET,
    GuardStats,
    fit_guard,
    guard_path,
    image_statistics,
)
from models.inference.preprocess import to_tensor
from models.inference.registry import LoadedModel, load_model
from models.inference.tasks import TASKS
from models.training import evaluation, ood
from models.training import synthetic as phantoms

FIT_SEED, HELD_SEED, TEST_SEED = 1234, 770_001, 770_002
N_FIT, N_HELD, N_TEST = 1200, 2000, 600
SMALL_LESION_MM = 10.0


def phantoms_for(task_name: str, n: int, seed: int) -> list[phantoms.Phantom]:
    if task_name == "mammography":
        return phantoms.sample_mammograms(n, seed)
    return phantoms.sample_brain(n, seed)


def _run(model: LoadedModel, images: list[np.ndarray], batch: int = 64) -> dict[str, np.ndarray]:
    """Logits, penultimate features and image statistics of images in modality units."""
    logits, feats, stats = [], [], []
    for i in range(0, len(images), batch):
        x = to_tensor(images[i : i + batch])
        lo, _, f = model.infer_with_features(x)
        logits.append(lo.float().numpy())
        feats.append(f.float().numpy())
        stats.append(image_statistics(x))
    return {
        "logits": np.concatenate(logits),
        "features": np.concatenate(feats).astype(np.float64),
        "stats": np.concatenate(stats),
    }


def phantom_run(model: LoadedModel, n: int, seed: int) -> tuple[dict[str, np.ndarray], list]:
    items = phantoms_for(model.name, n, seed)
    out = _run(
        model, [p.pixels.astype(np.float32) * p.rescale_slope + p.rescale_intercept for p in items]
    )
    out["labels"] = np.array([model.labels.index(p.label) for p in items])
    return out, items


def softmax(logits: np.ndarray, t: float) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits) / t, dim=1).numpy()


def _rate(values: np.ndarray) -> float:
    return round(float(np.mean(values)), 4)


def ood_report(model: LoadedModel, guard: GuardStats, in_dist: dict[str, np.ndarray]) -> dict:
    """AUROC of the guard score (out-of-distribution vs held-out phantoms) and refusal rates, by kind."""
    with tempfile.TemporaryDirectory(prefix="oncolens-ood-") as folder:
        read = ood.read_back(ood.ood_images(model.name), model.name, Path(folder))
    run = _run(model, [pixels for _, pixels in read])
    checks = guard.check(run["features"], run["stats"], model.task.title)
    score_out = np.array([c.score for c in checks])
    refused_out = np.array([not c.in_distribution for c in checks])
    f_in, s_in = guard.scores(in_dist["features"], in_dist["stats"])
    score_in = np.maximum(f_in, s_in)
    y = np.r_[np.zeros(len(score_in)), np.ones(len(score_out))]
    kinds = {}
    for kind in ood.KINDS:
        sel = np.array([img.kind == kind for img, _ in read])
        if sel.any():
            kinds[kind] = {
                "n": int(sel.sum()),
                "refusal_rate": _rate(refused_out[sel]),
                "let_through": [
                    img.name
                    for (img, _), r in zip(read, refused_out, strict=True)
                    if img.kind == kind and not r
                ],
            }
    return {
        "n_out_of_distribution": len(score_out),
        "n_in_distribution": len(score_in),
        "auroc": round(float(roc_auc_score(y, np.r_[score_in, score_out])), 4),
        "refusal_rate_out_of_distribution": _rate(refused_out),
        "refusal_rate_in_distribution": _rate(score_in > guard.threshold),
        "lowest_out_of_distribution_score": round(float(score_out.min()), 3),
        "highest_in_distribution_score": round(float(score_in.max()), 3),
        "by_kind": kinds,
    }


def small_lesion_report(
    model: LoadedModel, test: dict[str, np.ndarray], items: list, probs: np.ndarray
) -> dict:
    """Sensitivity (a lesion class predicted) for lesions under and over ``SMALL_LESION_MM``."""
    lesion_idx = [model.labels.index(lab) for lab in model.task.lesion_labels]
    found = np.isin(probs.argmax(axis=1), lesion_idx).astype(float)
    diam = np.array([p.lesion_diameter_mm or 0.0 for p in items])
    has = diam > 0
    out = {}
    for key, sel in (
        (f"under_{SMALL_LESION_MM:g}_mm", has & (diam < SMALL_LESION_MM)),
        (f"{SMALL_LESION_MM:g}_mm_or_more", has & (diam >= SMALL_LESION_MM)),
    ):
        if sel.sum() >= 5:
            est = evaluation.bootstrap(np.mean, found[sel])
            out[key] = {"n": int(sel.sum()), **est.as_dict()}
    return out


def fit_and_report(model: LoadedModel) -> tuple[GuardStats, dict, dict, dict]:
    """(guard, card input_guard section without file hash, calibration section, weak spots)."""
    fit, _ = phantom_run(model, N_FIT, FIT_SEED)
    held, _ = phantom_run(model, N_HELD, HELD_SEED)
    test, test_items = phantom_run(model, N_TEST, TEST_SEED)
    guard = fit_guard(
        fit["features"],
        fit["labels"],
        fit["stats"],
        held["features"],
        held["stats"],
        fitted_on={
            "fit": {"seed": FIT_SEED, "n": N_FIT},
            "threshold": {"seed": HELD_SEED, "n": N_HELD},
            "false_refusal_target": FALSE_REFUSAL_TARGET,
        },
    )
    report = ood_report(model, guard, test)
    t = float((model.card.get("calibration") or {}).get("temperature", 1.0))
    ece = {
        split: {
            "before": round(
                evaluation.expected_calibration_error(softmax(d["logits"], 1.0), d["labels"]), 4
            ),
            "after": round(
                evaluation.expected_calibration_error(softmax(d["logits"], t), d["labels"]), 4
            ),
        }
        for split, d in (("held_out", held), ("test", test))
    }
    # both sets are held out from training and from the temperature's own fit; one 600-image
    # ECE is noisy (10 bins), so scaling is kept only where both agree that it helps
    applied = all(e["after"] < e["before"] for e in ece.values())
    calibration = {
        "method": "temperature scaling on the validation split",
        "temperature": t,
        "applied": applied,
        "rule": "applied only where it lowers the expected calibration error on both held-out "
        f"phantom sets (seed {HELD_SEED}, n {N_HELD}; seed {TEST_SEED}, n {N_TEST})",
        "ece_held_out": ece["held_out"],
        "ece_test": ece["test"],
    }
    probs = softmax(test["logits"], t if applied else 1.0)
    weak = {
        "small_lesions": {
            "threshold_mm": SMALL_LESION_MM,
            "sensitivity": small_lesion_report(model, test, test_items, probs),
            "data": f"test phantoms (seed {TEST_SEED}, n {N_TEST})",
            "applies_to": "every read without a lesion outline, and reads whose outline is under "
            f"{SMALL_LESION_MM:g} mm",
        }
    }
    section = {
        "file": guard_path(model.weights_path).name,
        "method": "Mahalanobis distance of the penultimate features (nearest class mean, shared "
        "Ledoit-Wolf covariance) and of ten image statistics, each scaled by its 99.9th percentile on "
        "held-out phantoms; the score is the larger; threshold at the largest held-out score",
        "threshold": round(guard.threshold, 4),
        "false_refusal_target": FALSE_REFUSAL_TARGET,
        "false_refusal_limit": FALSE_REFUSAL_LIMIT,
        "fit": {"seed": FIT_SEED, "n": N_FIT},
        "threshold_set_on": {"seed": HELD_SEED, "n": N_HELD},
        "test": {"seed": TEST_SEED, "n": N_TEST},
        "out_of_distribution": report,
        "command": f"python -m models.training.guard --task {model.name}",
    }
    return guard, section, calibration, weak


def guard_bytes(guard: GuardStats) -> bytes:
    return (json.dumps(guard.to_json(), sort_keys=True) + "\n").encode()


def write(model: LoadedModel, card_path: Path) -> dict:
    guard, section, calibration, weak = fit_and_report(model)
    raw = guard_bytes(guard)
    path = guard_path(model.weights_path)
    path.write_bytes(raw)
    card = json.loads(card_path.read_text())
    card["input_guard"] = {**section, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    card["calibration"] = calibration
    card["known_weak_spots"] = weak
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument(
        "--check", action="store_true", help="refit in memory and compare with the card"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = load_model(args.task, device="cpu", require_guard=False)
    if args.check:
        guard, section, calibration, _ = fit_and_report(model)
        card = model.card
        same = (
            card.get("input_guard", {}).get("sha256")
            == hashlib.sha256(guard_bytes(guard)).hexdigest()
        )
        print(
            json.dumps(
                {"guard_matches_card": same, "input_guard": section, "calibration": calibration},
                indent=2,
            )
        )
        return 0 if same else 1
    card = write(model, model.weights_path.with_suffix(".json"))
    print(
        json.dumps(
            {k: card[k] for k in ("input_guard", "calibration", "known_weak_spots")}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
