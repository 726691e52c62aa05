"""``oncolens validate imaging``: a loaded model's figures on a fresh phantom set.

Why fresh: the card's figures come from the training run's own held-out seed;
a different seed checks that they were not a lucky draw, and that the weights
on disk (verified by sha256 when loaded) still perform as the card says.
"""

from __future__ import annotations

from models.inference.registry import LoadedModel
from models.training.train import evaluate


def validate_imaging(model: LoadedModel, n: int = 400, seed: int = 20_261_125) -> dict:
    """AUC (positive label vs rest) with bootstrap 95 % CI, calibration error and lesion Dice."""
    if n < 20:
        raise ValueError("at least 20 phantoms are needed for a meaningful AUC")
    metrics = evaluate(model.network, model.task, n, seed)
    card_metrics = model.card.get("metrics", {})
    key = f"auc_{model.task.positive_label}_vs_rest"
    return {
        "model": model.name,
        "model_version": model.version,
        "weights_sha256": model.card.get("weights", {}).get("sha256"),
        "n": n,
        "seed": seed,
        "positive_label": model.task.positive_label,
        "auc": metrics[key],
        "accuracy": metrics["accuracy"],
        "ece": metrics["ece_after_calibration"],
        "ece_before_calibration": metrics["ece_before_calibration"],
        "lesion_dice": metrics["lesion_dice"],
        "card_auc": card_metrics.get(key),
        "card_lesion_dice": card_metrics.get("lesion_dice"),
    }
