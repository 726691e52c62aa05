"""The AI read's forward pass in ONNX Runtime, exported from the verified PyTorch weights.

Why: on two CPU cores ONNX Runtime runs this small network about 1.7 times
faster than eager PyTorch (one image ~5 ms against ~10 ms; a batch of 16,
~250 against ~140 images/s; bench/bench_inference.py), which is what brings the
batch read over 100 images/s. The outputs agree with PyTorch to float
rounding (tests/models/inference/test_onnx_runner.py).

What stays in PyTorch: saliency (Captum needs gradients) and training. The
ONNX file is derived, never shipped: it is exported from the weights the
registry has already checked against the model card's sha256, and cached
under ``$ONCOLENS_CACHE`` (default ``~/.cache/oncolens``) by that sha256 and
the torch version, so a retrained model can never run a stale graph.

``ONCOLENS_RUNTIME=torch`` turns it off; without ``onnxruntime``/``onnx``
installed, or if the export fails, the read falls back to PyTorch and says so
in ``runtime_note``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


def cache_dir() -> Path:
    return Path(os.environ.get("ONCOLENS_CACHE") or Path.home() / ".cache" / "oncolens") / "onnx"


def wanted() -> bool:
    return os.environ.get("ONCOLENS_RUNTIME", "onnx").lower() != "torch"


class _WithFeatures(nn.Module):
    """The network's ``forward_with_features`` as a module's forward, so the graph exports all three
    outputs (the input guard reads the features from the same pass)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.network.forward_with_features(x)  # type: ignore[operator]  # LesionNet's method


def export(network: nn.Module, path: Path, size: int) -> None:
    """Write ``network``'s (logits, mask_logits, features) graph with a free batch dimension; atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.part", delete=False) as tmp:
        part = Path(tmp.name)
    was_training = network.training
    try:
        network.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _WithFeatures(network),
                (torch.zeros(1, 1, size, size),),
                str(part),
                input_names=["x"],
                output_names=["logits", "mask_logits", "features"],
                dynamic_axes={"x": {0: "n"}},
                dynamo=False,
            )
        part.replace(path)
    finally:
        network.train(was_training)
        part.unlink(missing_ok=True)


class OnnxNetwork:
    """Callable like the network's ``forward`` on CPU tensors: (N, 1, S, S) -> (logits, mask_logits);
    ``with_features`` adds the penultimate features (the input guard's)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        # lazy: onnxruntime is imported only when this is used (start-up time)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, mask_logits, _ = self.with_features(x)
        return logits, mask_logits

    def with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        logits, mask_logits, features = self.session.run(None, {"x": batch})
        return torch.from_numpy(logits), torch.from_numpy(mask_logits), torch.from_numpy(features)


def onnx_network(
    network: nn.Module, weights_sha256: str, size: int
) -> tuple[OnnxNetwork | None, str | None]:
    """(runner, None) or (None, why PyTorch runs instead)."""
    if not wanted():
        return None, "ONCOLENS_RUNTIME=torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed"
    # "-f": the graph with the guard's features as a third output (older two-output graphs are ignored)
    path = cache_dir() / f"{weights_sha256[:16]}-torch{torch.__version__.split('+')[0]}-f.onnx"
    try:
        if not path.exists():
            export(network, path, size)
        try:
            return OnnxNetwork(path), None
        except Exception:  # a damaged cache file: export it again, once
            export(network, path, size)
            return OnnxNetwork(path), None
    except (
        Exception
    ) as exc:  # an exporter or runtime problem must not stop the read: PyTorch can do it
        return None, f"ONNX export/load failed ({type(exc).__name__}: {exc}); running in PyTorch"
