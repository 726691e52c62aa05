"""Registered imaging models: weights plus model card, verified before use.

Why verify: the weights the app runs must be exactly those whose metrics the
card reports. The card carries the sha256 of its weights; a mismatch (a
corrupted download, a retrained file without a new card) refuses to load.
Weights load with ``torch.load(weights_only=True)``: no pickled code runs.

The input guard's statistics (``NAME.guard.json``, ``models.inference.guard``) are verified
the same way against the card's ``input_guard.sha256``; a model without a verified guard does
not load (fail closed: no read without the check of its input). Temperature scaling is applied
only where the card says it improved held-out calibration (``calibration.applied``); otherwise
the network's temperature is reset to 1 and nothing calls its output "calibrated".

A hospital registers its own validated model by putting ``NAME.pt`` and
``NAME.json`` (same card format) in a folder named by ``$ONCOLENS_MODELS``;
those override the bundled demo weights of the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from models.inference.guard import GuardStats, GuardUnavailableError, image_statistics, load_guard
from models.inference.network import INPUT_SIZE, LesionNet
from models.inference.tasks import TASKS, ModelUnavailableError, TaskSpec

if TYPE_CHECKING:
    import numpy as np

    from models.inference.onnx_runner import OnnxNetwork

BUNDLED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@dataclass(frozen=True)
class LoadedModel:
    task: TaskSpec
    card: dict
    network: LesionNet
    device: torch.device
    weights_path: Path
    runtime_note: str | None = None  # why the read runs in PyTorch, when it does
    guard: GuardStats | None = None  # None only for networks built outside the registry (tests)

    @property
    def fast(self):
        """The ONNX Runtime forward pass (``models.inference.onnx_runner.OnnxNetwork``) the registry attached to the
        network, or None: kept on the network so forward-only explanations (occlusion) find it too."""
        return getattr(self.network, "onnx_forward", None)

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self.fast is not None else "torch"

    def infer(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits before temperature, mask logits) of a batch, no gradients: the read's forward pass."""
        if self.fast is not None:
            return self.fast(x)
        with torch.inference_mode():
            return self.network(x.to(self.device))

    def infer_with_features(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``infer`` plus the penultimate features the input guard measures, from the same pass."""
        if self.fast is not None:
            return self.fast.with_features(x)
        with torch.inference_mode():
            return self.network.forward_with_features(x.to(self.device))

    def check_inputs(
        self, x: torch.Tensor, features: torch.Tensor, stats: np.ndarray | None = None
    ) -> list:
        """The input guard's ``InputCheck`` for each image of a batch (``x`` the network input).

        ``stats``: ``image_statistics(x)`` when the caller measured them already. Why a caller
        would: measured before the forward pass, while ``x`` is still in the core's caches, they
        cost about half what they cost after it (``models.inference.read.read_image`` does so).
        """
        if self.guard is None:
            raise GuardUnavailableError(f"{self.task.title} has no input guard")
        return self.guard.check(
            features.detach().cpu().numpy(),
            image_statistics(x) if stats is None else stats,
            self.task.title,
        )

    @property
    def calibrated(self) -> bool:
        """Whether temperature scaling is applied (only where it improved held-out calibration)."""
        return bool((self.card.get("calibration") or {}).get("applied", False))

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights (verified against the card at load): what a sign-off binds to."""
        sha = (self.card.get("weights") or {}).get("sha256")
        return str(sha) if sha else None

    @property
    def version(self) -> str:
        return str(self.card.get("version", self.task.version))

    @property
    def labels(self) -> tuple[str, ...]:
        return self.task.labels


def model_dirs() -> list[Path]:
    extra = os.environ.get("ONCOLENS_MODELS")
    return ([Path(extra)] if extra else []) + [BUNDLED_WEIGHTS]


def find_model_files(name: str) -> tuple[Path, Path]:
    for folder in model_dirs():
        weights, card = folder / f"{name}.pt", folder / f"{name}.json"
        if weights.exists() and card.exists():
            return weights, card
    raise ModelUnavailableError(
        f"model '{name}' is not installed (looked for {name}.pt and {name}.json in "
        f"{', '.join(str(d) for d in model_dirs())}); train it with `python -m models.training.train --task {name}`"
    )


def load_card(name: str) -> dict:
    _, card = find_model_files(name)
    return json.loads(card.read_text())


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(
    name: str, device: torch.device | str | None = None, *, require_guard: bool = True
) -> LoadedModel:
    """The verified model. ``require_guard=False`` only for ``models.training.guard``, which
    fits the guard of a model that has none yet; every read needs it."""
    if name not in TASKS:
        raise ModelUnavailableError(f"unknown model '{name}'; known: {', '.join(sorted(TASKS))}")
    task = TASKS[name]
    weights, card_path = find_model_files(name)
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelUnavailableError(f"model card {card_path} cannot be read: {exc}") from exc
    expected = card.get("weights", {}).get("sha256")
    actual = hashlib.sha256(weights.read_bytes()).hexdigest()
    if expected != actual:
        raise ModelUnavailableError(
            f"weights {weights} do not match their model card (sha256 {actual[:12]}... "
            f"vs card {str(expected)[:12]}...); refusing to use unverified weights"
        )
    device = torch.device(device) if device is not None else default_device()
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
        network = LesionNet(len(task.labels))
        network.load_state_dict(state)
    except Exception as exc:  # a card that matches but weights for another architecture
        raise ModelUnavailableError(
            f"weights {weights} cannot be loaded into {task.title}: {exc}"
        ) from exc
    guard: GuardStats | None = None
    try:
        guard = load_guard(weights, card)
    except (GuardUnavailableError, OSError) as exc:
        if require_guard:
            raise ModelUnavailableError(str(exc)) from exc
    if not (card.get("calibration") or {}).get("applied", False):
        network.temperature.fill_(1.0)  # calibration made held-out ECE worse: raw softmax
    # channels_last: about a third faster for these small convolutions on CPU (bench/bench_inference.py)
    network.to(device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]  # torch stubs omit Module.to(memory_format=)
    fast: OnnxNetwork | None = None
    note: str | None = "GPU: PyTorch"
    if device.type == "cpu":
        # lazy: onnxruntime loads only where the ONNX forward pass is used
        from models.inference.onnx_runner import onnx_network

        fast, note = onnx_network(network, actual, INPUT_SIZE)
    network.onnx_forward = fast  # None: PyTorch runs every forward pass
    return LoadedModel(task, card, network, device, weights, note, guard)


def available_models() -> list[str]:
    found = []
    for name in TASKS:
        try:
            find_model_files(name)
            found.append(name)
        except ModelUnavailableError:
            pass
    return found
