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

The read itself never imports PyTorch (3.4 CPU-seconds of every ``oncolens predict``'s start,
issue 23): once the graph of a verified weights file is cached, ``cached_graph`` finds it by the
weights' sha256 and the installed torch version (read from the package metadata, not by importing
torch), and the network's temperature comes from a small JSON beside the graph, written at export.
PyTorch loads only to export a graph, for gradients (saliency, training), or where
ONNX Runtime is not used.

``ONCOLENS_RUNTIME=torch`` turns it off; without ``onnxruntime``/``onnx``
installed, or if the export fails, the read falls back to PyTorch and says so
in ``runtime_note``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

_threads: int | None = None  # set_threads: one per worker process of a batch read


def set_threads(n: int | None) -> None:
    """Threads of every ONNX Runtime session created after this call (None: the default)."""
    global _threads
    _threads = n


def default_threads() -> int:
    """PyTorch's own count where it is loaded (the two runtimes then agree), else the cores this
    process may use."""
    if _threads is not None:
        return _threads
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity call
        return max(1, os.cpu_count() or 1)


def cache_dir() -> Path:
    return Path(os.environ.get("ONCOLENS_CACHE") or Path.home() / ".cache" / "oncolens") / "onnx"


def wanted() -> bool:
    return os.environ.get("ONCOLENS_RUNTIME", "onnx").lower() != "torch"


def graph_path(weights_sha256: str) -> Path:
    """Where the graph of these weights is cached, for the installed torch version (from the
    package metadata: reading it does not import torch)."""
    try:
        version = importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    # "-f": the graph with the guard's features as a third output (older two-output graphs are ignored)
    return cache_dir() / f"{weights_sha256[:16]}-torch{version}-f.onnx"


def _meta_path(graph: Path) -> Path:
    return graph.with_suffix(".json")


def export(network: nn.Module, path: Path, size: int) -> None:
    """Write ``network``'s (logits, mask_logits, features) graph with a free batch dimension; atomic."""
    import torch  # lazy: exporting is the one step of the ONNX path that needs PyTorch

    class _WithFeatures(torch.nn.Module):
        """The network's ``forward_with_features`` as a module's forward, so the graph exports all
        three outputs (the input guard reads the features from the same pass)."""

        def __init__(self, network: nn.Module) -> None:
            super().__init__()
            self.network = network

        def forward(self, x: torch.Tensor) -> Any:
            return self.network.forward_with_features(x)  # type: ignore[operator]  # LesionNet's method

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


def write_meta(graph: Path, temperature: float) -> None:
    """The weights' fitted temperature (float32, exactly; applied or not as the card says),
    beside its graph, so that a model loads from the cache without PyTorch."""
    meta = _meta_path(graph)
    part = meta.with_suffix(".json.part")
    part.write_text(json.dumps({"temperature": temperature}))
    part.replace(meta)


def cached_graph(weights_sha256: str) -> tuple[Path, float] | None:
    """(graph, the weights' fitted temperature) when both are cached, else None (export first)."""
    path = graph_path(weights_sha256)
    try:
        temperature = float(json.loads(_meta_path(path).read_text())["temperature"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (path, temperature) if path.exists() else None


class OnnxNetwork:
    """Callable like the network's ``forward`` on CPU batches (N, 1, S, S) -> (logits, mask_logits);
    ``with_features`` adds the penultimate features (the input guard's). NumPy arrays in give
    arrays out (the read); tensors in give tensors out (explanations)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        # lazy: onnxruntime is imported only when this is used (start-up time)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: Any) -> tuple[Any, Any]:
        logits, mask_logits, _ = self.with_features(x)
        return logits, mask_logits

    def with_features(self, x: Any) -> tuple[Any, Any, Any]:
        tensor = hasattr(x, "detach")
        batch = np.ascontiguousarray(x.detach().cpu().numpy() if tensor else x, dtype=np.float32)
        logits, mask_logits, features = self.session.run(None, {"x": batch})
        if not tensor:
            return logits, mask_logits, features
        import torch  # lazy: only a caller that passed a tensor (it has PyTorch loaded already)

        return torch.from_numpy(logits), torch.from_numpy(mask_logits), torch.from_numpy(features)


def onnx_network(
    network: nn.Module, weights_sha256: str, size: int, temperature: float | None = None
) -> tuple[OnnxNetwork | None, str | None]:
    """(runner, None) or (None, why PyTorch runs instead). ``temperature``: the weights' fitted
    temperature, kept beside the graph (``cached_graph``)."""
    if not wanted():
        return None, "ONCOLENS_RUNTIME=torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed"
    path = graph_path(weights_sha256)
    try:
        if not path.exists():
            export(network, path, size)
        if temperature is not None and cached_graph(weights_sha256) is None:
            write_meta(path, temperature)
        try:
            return OnnxNetwork(path), None
        except Exception:  # a damaged cache file: export it again, once
            export(network, path, size)
            return OnnxNetwork(path), None
    except (
        Exception
    ) as exc:  # an exporter or runtime problem must not stop the read: PyTorch can do it
        return None, f"ONNX export/load failed ({type(exc).__name__}: {exc}); running in PyTorch"
