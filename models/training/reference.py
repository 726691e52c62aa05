"""The drift reference of an imaging model: its input guard's score and the ten image statistics on
held-out phantoms, written beside the weights as ``NAME.reference.json``.

Why a file: drift monitoring (``analytics.governance.lifecycle.drift``) compares what a deployed
model sees, window by window, with what it was validated on; two-sample tests need that sample,
not only its mean. The phantoms are the guard's test set (``models.training.guard.TEST_SEED``),
never used to fit the model, the guard or its threshold. Run
``python -m models.training.reference --task NAME`` after training or refitting the guard; the
file records the weights' sha256 it was computed with, and ``load_reference`` refuses a file
computed with other weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.inference.guard import STAT_NAMES
from models.inference.registry import LoadedModel, find_model_files, load_model
from models.training.guard import N_TEST, TEST_SEED, phantom_run


class ReferenceUnavailableError(Exception):
    """No drift reference for the model, or one computed with other weights."""


def reference_path(name: str) -> Path:
    weights, _ = find_model_files(name)
    return weights.with_name(f"{name}.reference.json")


def compute_reference(model: LoadedModel, n: int = N_TEST, seed: int = TEST_SEED) -> dict:
    """Guard scores and image statistics of ``n`` held-out phantoms (seeded)."""
    out, _ = phantom_run(model, n, seed)
    assert model.guard is not None  # load_model requires it
    f, s = model.guard.scores(out["features"], out["stats"])
    values = {"score": np.round(np.maximum(f, s), 5).tolist()}
    for k, name in enumerate(STAT_NAMES):
        values[name] = np.round(out["stats"][:, k], 6).tolist()
    return {
        "model": model.name,
        "weights_sha256": (model.card.get("weights") or {}).get("sha256"),
        "what": f"held-out phantoms (the input guard's test set: seed {seed}, n {n})",
        "seed": seed,
        "n": n,
        "command": f"python -m models.training.reference --task {model.name}",
        "values": values,
    }


def load_reference(name: str, card: dict) -> dict:
    """The reference beside the weights, checked against the card's weights sha256."""
    path = reference_path(name)
    if not path.exists():
        raise ReferenceUnavailableError(
            f"no drift reference for {name}: run `python -m models.training.reference --task {name}`"
        )
    data = json.loads(path.read_text())
    if data.get("weights_sha256") != (card.get("weights") or {}).get("sha256"):
        raise ReferenceUnavailableError(
            f"the drift reference of {name} was computed with other weights; recompute it"
        )
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    args = parser.parse_args(argv)
    model = load_model(args.task, "cpu")
    data = compute_reference(model)
    path = reference_path(args.task)
    path.write_text(json.dumps(data) + "\n")
    print(f"wrote {path} ({data['n']} phantoms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
