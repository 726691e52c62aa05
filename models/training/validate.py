"""``oncolens validate imaging``: a loaded model's figures on a fresh phantom set, and its input guard.

Why fresh: the card's figures come from the training run's own held-out seed;
a different seed checks that they were not a lucky draw, and that the weights
on disk (verified by sha256 when loaded) still perform as the card says.

Per model it reports what issue 18 asks to be checked from the CLI: the guard's detection
AUROC (out-of-distribution test set against these fresh phantoms), its refusal rate on each,
and the expected calibration error before and after temperature scaling with whether scaling
is applied (only where it improved held-out ECE, ``calibration.applied`` in the card).
"""

from __future__ import annotations

import numpy as np

from models.inference.registry import LoadedModel
from models.training import evaluation
from models.training import guard as guard_fit
from models.training.train import evaluate


def validate_imaging(model: LoadedModel, n: int = 400, seed: int = 20_261_125) -> dict:
    """AUC (positive label vs rest) with bootstrap 95 % CI, calibration, lesion Dice, input guard."""
    if n < 20:
        raise ValueError("at least 20 phantoms are needed for a meaningful AUC")
    metrics = evaluate(model.network, model.task, n, seed)
    card_metrics = model.card.get("metrics", {})
    key = f"auc_{model.task.positive_label}_vs_rest"
    fresh, _ = guard_fit.phantom_run(model, n, seed)
    t = float((model.card.get("calibration") or {}).get("temperature", 1.0))
    ece_before = evaluation.expected_calibration_error(
        guard_fit.softmax(fresh["logits"], 1.0), fresh["labels"]
    )
    ece_after = evaluation.expected_calibration_error(
        guard_fit.softmax(fresh["logits"], t), fresh["labels"]
    )
    guard = None
    if model.guard is not None:
        report = guard_fit.ood_report(model, model.guard, fresh)
        guard = {
            "auroc": report["auroc"],
            "refusal_rate_out_of_distribution": report["refusal_rate_out_of_distribution"],
            "refusal_rate_in_distribution": report["refusal_rate_in_distribution"],
            "threshold": round(model.guard.threshold, 4),
            "n_out_of_distribution": report["n_out_of_distribution"],
            "n_in_distribution": report["n_in_distribution"],
            "by_kind": {k: v["refusal_rate"] for k, v in report["by_kind"].items()},
            "let_through": sorted(
                name for v in report["by_kind"].values() for name in v["let_through"]
            ),
            "card_auroc": (model.card.get("input_guard") or {})
            .get("out_of_distribution", {})
            .get("auroc"),
        }
    return {
        "model": model.name,
        "model_version": model.version,
        "weights_sha256": model.card.get("weights", {}).get("sha256"),
        "n": n,
        "seed": seed,
        "positive_label": model.task.positive_label,
        "auc": metrics[key],
        "accuracy": metrics["accuracy"],
        # the probabilities the reads give: calibrated only where calibration is applied
        "ece": round(ece_after if model.calibrated else ece_before, 4),
        "ece_before_calibration": round(float(ece_before), 4),
        "ece_after_calibration": round(float(ece_after), 4),
        "calibration_applied": model.calibrated,
        "temperature": t,
        "lesion_dice": metrics["lesion_dice"],
        "guard": guard,
        "card_auc": card_metrics.get(key),
        "card_lesion_dice": card_metrics.get("lesion_dice"),
        "fresh_sensitivity_small_lesions": _small(model, fresh, seed, n),
    }


def _small(model: LoadedModel, fresh: dict[str, np.ndarray], seed: int, n: int) -> dict:
    items = guard_fit.phantoms_for(model.name, n, seed)
    probs = guard_fit.softmax(fresh["logits"], model.network.temperature.item())
    return guard_fit.small_lesion_report(model, fresh, items, probs)
