"""Registered imaging models: weights plus model card, verified before use.

Why verify: the weights the app runs must be exactly those whose metrics the
card reports. The card carries the sha256 of its weights; a mismatch (a
corrupted download, a retrained file without a new card) refuses to load.
Weights load with ``torch.load(weights_only=True)``: no pickled code runs.

On CPU the read runs on ONNX Runtime (``models.inference.onnx_runner``) and, once the graph of
the verified weights is cached, a model loads without importing PyTorch at all: the weights'
sha256 is still checked against the card, the cached graph is found by that sha256, and the
PyTorch network is built only when something asks for ``network`` (explanations, training).
Why: importing torch is 3.4 CPU-seconds, most of ``oncolens predict``'s start (issue 23).

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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.inference import onnx_runner
from models.inference.guard import GuardStats, GuardUnavailableError, image_statistics, load_guard
from models.inference.preprocess import INPUT_SIZE
from models.inference.tasks import TASKS, ModelUnavailableError, TaskSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

    from models.inference.network import LesionNet
    from models.inference.onnx_runner import OnnxNetwork

BUNDLED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@dataclass(frozen=True)
class LoadedModel:
    task: TaskSpec
    card: dict
    net: (
        LesionNet | None
    )  # None until ``network`` is first asked for (a model loaded without torch)
    device_name: str  # "cpu", "cuda"
    weights_path: Path
    runtime_note: str | None = None  # why the read runs in PyTorch, when it does
    guard: GuardStats | None = None  # None only for networks built outside the registry (tests)
    fast: OnnxNetwork | None = None  # ONNX Runtime's forward pass, or None: PyTorch runs it
    temperature: float = 1.0  # what the class logits are divided by (1: calibration not applied)
    _lazy: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def network(self) -> LesionNet:
        """The PyTorch network (gradients: explanations, training). Built on first use where the
        model was loaded without it: PyTorch is imported then, and only then."""
        if self.net is not None:
            return self.net
        if "network" not in self._lazy:
            network = _build_network(self.task, self.weights_path, self.device, self.card)
            network.onnx_forward = self.fast  # occlusion (forward only) finds it on the network
            self._lazy["network"] = network
        return self._lazy["network"]

    @property
    def device(self) -> torch.device:
        import torch  # lazy: only PyTorch callers ask for the device; the read passes arrays

        return torch.device(self.device_name)

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self.fast is not None else "torch"

    def infer(self, x: Any) -> tuple[Any, Any]:
        """(class logits before temperature, mask logits) of a batch, no gradients: the read's forward
        pass. NumPy arrays in, arrays out (the read); tensors in, tensors out."""
        logits, mask_logits, _ = self.infer_with_features(x)
        return logits, mask_logits

    def infer_with_features(self, x: Any) -> tuple[Any, Any, Any]:
        """``infer`` plus the penultimate features the input guard measures, from the same pass."""
        if self.fast is not None:
            return self.fast.with_features(x)
        import torch  # lazy: the PyTorch forward pass (GPU, ONCOLENS_RUNTIME=torch, no ONNX Runtime)

        tensor = isinstance(x, torch.Tensor)
        with torch.inference_mode():
            out = self.network.forward_with_features(
                (x if tensor else torch.from_numpy(x)).to(self.device)
            )
        if tensor:
            return out
        logits, mask_logits, features = (o.cpu().numpy() for o in out)
        return logits, mask_logits, features

    def check_inputs(self, x: Any, features: Any, stats: np.ndarray | None = None) -> list:
        """The input guard's ``InputCheck`` for each image of a batch (``x`` the network input).

        ``stats``: ``image_statistics(x)`` when the caller measured them already. Why a caller
        would: measured before the forward pass, while ``x`` is still in the core's caches, they
        cost about half what they cost after it (``models.inference.read.read_image`` does so).
        """
        if self.guard is None:
            raise GuardUnavailableError(f"{self.task.title} has no input guard")
        return self.guard.check(
            features.detach().cpu().numpy() if hasattr(features, "detach") else features,
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


def default_device() -> str:
    """ "cuda" where PyTorch sees a GPU, else "cpu". Asks PyTorch only where it is installed with
    CUDA support: a CPU-only machine answers without importing it. ``ONCOLENS_DEVICE=cpu`` (or
    ``cuda``) answers without asking: a CUDA build of PyTorch on a machine without a GPU (the
    default Linux wheel) otherwise imports PyTorch (about 3 s of CPU) only to hear "cpu"."""
    forced = os.environ.get("ONCOLENS_DEVICE", "").strip().lower()
    if forced in ("cpu", "cuda"):
        return forced
    import importlib.util  # lazy: only here

    if importlib.util.find_spec("torch") is None:
        return "cpu"
    import importlib.metadata  # lazy: as above

    if "+cpu" in importlib.metadata.version("torch") and "torch" not in sys.modules:
        return "cpu"  # a CPU build of PyTorch: no GPU to ask about
    import torch  # lazy: a build that may see a GPU

    return "cuda" if torch.cuda.is_available() else "cpu"


def _build_network(task: TaskSpec, weights: Path, device: Any, card: dict) -> LesionNet:
    """The PyTorch network from verified weights (``load_model`` checked their sha256); its
    temperature reset to 1 where the card does not apply calibration (``fitted_temperature``
    keeps the fitted one)."""
    import torch  # lazy: only explanations, training and the PyTorch forward pass need the network

    from models.inference.network import LesionNet  # lazy: as above

    try:
        state = torch.load(weights, map_location=device, weights_only=True)
        network = LesionNet(len(task.labels))
        network.load_state_dict(state)
        network.fitted_temperature = float(state["temperature"].reshape(-1)[0])
    except Exception as exc:  # a card that matches but weights for another architecture
        raise ModelUnavailableError(
            f"weights {weights} cannot be loaded into {task.title}: {exc}"
        ) from exc
    if not (card.get("calibration") or {}).get("applied", False):
        network.temperature.fill_(1.0)  # calibration made held-out ECE worse: raw softmax
    # channels_last: about a third faster for these small convolutions on CPU (bench/bench_inference.py)
    network.to(device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]  # torch stubs omit Module.to(memory_format=)
    return network


def _guard(weights: Path, card: dict, required: bool) -> GuardStats | None:
    """The model's verified input guard; without one, ``ModelUnavailableError`` where required."""
    try:
        return load_guard(weights, card)
    except (GuardUnavailableError, OSError) as exc:
        if required:
            raise ModelUnavailableError(str(exc)) from exc
    return None


def load_model(name: str, device: Any = None, *, require_guard: bool = True) -> LoadedModel:
    """The verified model. ``require_guard=False`` only for ``models.training.guard``, which
    fits the guard of a model that has none yet; every read needs it. On CPU with the graph of
    these weights cached, PyTorch is not imported (``LoadedModel.network`` builds it on demand)."""
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
    device_name = str(device) if device is not None else default_device()
    applied = bool((card.get("calibration") or {}).get("applied", False))
    cached = (
        onnx_runner.cached_graph(actual) if device_name == "cpu" and onnx_runner.wanted() else None
    )
    if cached is not None:
        try:
            fast = onnx_runner.OnnxNetwork(cached[0])
        # no ONNX Runtime, a damaged graph: the PyTorch way below, which exports it again
        except Exception:  # noqa: BLE001
            pass
        else:
            guard = _guard(weights, card, require_guard)
            temperature = cached[1] if applied else 1.0
            return LoadedModel(
                task, card, None, device_name, weights, None, guard, fast, temperature
            )
    network = _build_network(task, weights, device_name, card)
    guard = _guard(weights, card, require_guard)  # after the weights: their error comes first
    runner: OnnxNetwork | None = None
    note: str | None = "GPU: PyTorch"
    if device_name == "cpu":
        runner, note = onnx_runner.onnx_network(
            network, actual, INPUT_SIZE, network.fitted_temperature
        )
    network.onnx_forward = runner  # None: PyTorch runs every forward pass
    temperature = float(network.temperature.reshape(-1)[0])
    return LoadedModel(task, card, network, device_name, weights, note, guard, runner, temperature)


def available_models() -> list[str]:
    found = []
    for name in TASKS:
        try:
            find_model_files(name)
            found.append(name)
        except ModelUnavailableError:
            pass
    return found
