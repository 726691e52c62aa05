"""Per-case predictions of an imaging model on fresh phantoms, with the attributes a subgroup audit needs.

Why phantoms and which attributes: the imaging models are trained and tested
on synthetic phantoms (docs/imaging.md), which carry no age, sex, ethnicity,
site or vendor. What a phantom does record, and what plausibly changes how hard
a read is, is audited instead, and the page says so:

- mammography: BI-RADS breast density (a-d; dense tissue masks masses, the
  best-known performance gap of real mammography AI), laterality, and the
  lesion's size band;
- brain MRI: the lesion's size band (the only recorded attribute).

A size band exists only for images with a lesion, so per band only the true
positive rate is defined (images without a lesion form the "none" group, where
only the false positive rate is). The decision is what the Imaging page shows:
the most likely class is the positive one (argmax of the calibrated
probabilities). Like ``oncolens validate imaging``, the set is generated fresh
from a seed never used in training or calibration.

Returns a plain table; the metrics and gaps are ``analytics.governance.subgroup_audit``'s
(the dashboard and CLI join the two).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from models.inference.preprocess import to_tensor
from models.inference.registry import LoadedModel
from models.training.train import predict_logits

DEFAULT_N = 400
SIZE_BANDS_MM = (10.0, 20.0)  # <10, 10-20, >20 mm


def size_band(diameter_mm: float | None) -> str:
    if diameter_mm is None or diameter_mm <= 0:
        return "none"
    lo, hi = SIZE_BANDS_MM
    return (
        f"<{lo:g} mm"
        if diameter_mm < lo
        else (f"{lo:g}-{hi:g} mm" if diameter_mm <= hi else f">{hi:g} mm")
    )


def attributes_for(task_name: str) -> list[str]:
    """The attributes audited for a task (what its phantoms record)."""
    return (
        ["breast_density", "laterality", "lesion_size"]
        if task_name == "mammography"
        else ["lesion_size"]
    )


def imaging_audit_frame(
    model: LoadedModel, n: int = DEFAULT_N, seed: int = 20_261_125
) -> pd.DataFrame:
    """One row per fresh phantom: outcome (positive label), score (its calibrated probability), decision
    (most likely class is the positive one), and the task's attributes."""
    # lazy: at the top, importing models.training.subgroup_cases took 5891 ms instead of 2534 ms
    from models.training import synthetic as phantoms

    if n < 20:
        raise ValueError("at least 20 phantoms are needed for a subgroup audit")
    task = model.task
    items = (
        phantoms.sample_mammograms(n, seed)
        if task.name == "mammography"
        else phantoms.sample_brain(n, seed)
    )
    images = [p.pixels.astype(np.float32) * p.rescale_slope + p.rescale_intercept for p in items]
    logits, _ = predict_logits(model.network, to_tensor(images))
    probs = torch.softmax(logits / model.network.temperature, 1).numpy()
    pos = task.labels.index(task.positive_label)
    labels = np.array([task.labels.index(p.label) for p in items])
    frame = pd.DataFrame(
        {
            "outcome": (labels == pos).astype(int),
            "score": probs[:, pos].astype(float),
            "decision": (probs.argmax(1) == pos).astype(int),
            "true_label": [p.label for p in items],
            "lesion_size": [size_band(p.lesion_diameter_mm) for p in items],
        }
    )
    if task.name == "mammography":
        frame["breast_density"] = [p.breast_density for p in items]
        frame["laterality"] = [p.laterality for p in items]
    return frame
