"""The ONNX Runtime forward pass gives the PyTorch network's outputs, and PyTorch takes over when it cannot run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.inference import onnx_runner
from models.inference.preprocess import to_tensor
from models.inference.registry import load_model
from models.training import synthetic as phantoms


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONCOLENS_CACHE", str(tmp_path))
    monkeypatch.delenv("ONCOLENS_RUNTIME", raising=False)


def _same_network_output(got: torch.Tensor, ref: torch.Tensor) -> bool:
    """Equal up to the float32 rounding of two kernel libraries summing in their own order.

    ONNX Runtime (MLAS) and PyTorch (oneDNN) pick their convolution kernels per CPU (AVX2,
    AVX-512, ...), so each backend sums the same products in another order. A float32 sum of n
    products is off by ~sqrt(n) x 2**-24 of its magnitude (independent rounding errors); the
    widest convolution sums 864 (3 x 3 x 96 channels) and about 13 run in sequence:
    sqrt(864) x 13 x 2**-24 = 2.3e-5 of the output's scale. Allowed: 1e-4 of the largest output
    (measured: ~1e-6 of it). A wrong export (a layer left out, batch norm in training mode, other
    weights) moves the outputs by much of their scale.
    """
    scale = float(ref.abs().max())
    return scale > 0 and torch.allclose(got, ref, atol=1e-4 * scale, rtol=0)


@pytest.mark.parametrize("name", ["mammography", "brain_mri"])
def test_onnx_outputs_match_pytorch(name):
    model = load_model(name, device="cpu")
    assert model.runtime == "onnxruntime", model.runtime_note
    items = (
        phantoms.sample_mammograms(6, 3) if name == "mammography" else phantoms.sample_brain(6, 3)
    )
    x = to_tensor([p.pixels.astype(np.float32) for p in items])
    logits, mask_logits = model.infer(x)
    with torch.inference_mode():
        ref_logits, ref_mask = model.network(x)
    assert logits.shape == ref_logits.shape and mask_logits.shape == ref_mask.shape
    assert _same_network_output(logits, ref_logits)
    assert _same_network_output(mask_logits, ref_mask)


def test_export_is_cached_by_weights_and_a_damaged_file_is_rebuilt(tmp_path):
    load_model("brain_mri", device="cpu")
    files = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(files) == 1
    files[0].write_bytes(b"not an onnx graph")
    model = load_model("brain_mri", device="cpu")
    assert model.runtime == "onnxruntime" and files[0].stat().st_size > 10_000


def test_pytorch_runs_when_asked_and_gives_the_same_read(monkeypatch):
    fast = load_model("brain_mri", device="cpu")
    monkeypatch.setenv("ONCOLENS_RUNTIME", "torch")
    slow = load_model("brain_mri", device="cpu")
    assert slow.runtime == "torch" and slow.runtime_note == "ONCOLENS_RUNTIME=torch"
    x = to_tensor(phantoms.sample_brain(2, 5)[0].pixels.astype(np.float32))
    assert _same_network_output(fast.infer(x)[0], slow.infer(x)[0])


def test_a_failing_export_falls_back_to_pytorch(monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(onnx_runner, "export", broken)
    model = load_model("mammography", device="cpu")
    assert model.runtime == "torch" and "exporter unavailable" in model.runtime_note


_READ_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from models.inference.loader import ModelLoader
from models.inference.read import predict_file

load = ModelLoader()
read = predict_file(Path(sys.argv[1]), load)
before = "torch" in sys.modules
model = load("brain_mri")
network = model.network  # built on demand: PyTorch is imported now, and only now
print(json.dumps({
    "torch_before_network": before,
    "torch_after_network": "torch" in sys.modules,
    "onnx_on_network": network.onnx_forward is model.fast,
    "temperature": model.temperature,
    "read": {k: v for k, v in read.items() if k not in ("latency_ms", "inference_ms")},
}))
"""


def test_a_cached_graph_reads_without_importing_pytorch(tmp_path, phantom_files):
    """Issue 23: once the verified weights' graph is cached, a read (load, preprocessing, forward
    pass, guard, outline, RECIST, radiomics) never imports PyTorch; asking for the network still
    gives it, with the ONNX forward pass attached; and the read is the one a model loaded with
    PyTorch gives."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from models.inference.loader import ModelLoader
    from models.inference.read import predict_file

    path = phantom_files["tumour"]  # a brain MR slice with a 30 mm tumour (tests/models/conftest)
    load = ModelLoader(lambda name: load_model(name, device="cpu"))
    loaded = load("brain_mri")  # exports the graph and its temperature
    assert loaded.net is not None  # this one was built with PyTorch (nothing was cached)
    ref = {
        k: v for k, v in predict_file(path, load).items() if k not in ("latency_ms", "inference_ms")
    }
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", _READ_IN_A_FRESH_PROCESS, str(path)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "ONCOLENS_CACHE": str(tmp_path)},
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch_before_network"] is False
    assert got["torch_after_network"] is True and got["onnx_on_network"] is True
    assert got["temperature"] == float(loaded.network.temperature.reshape(-1)[0])
    assert ref["lesion"] is not None and got["read"] == ref


def test_a_graph_cached_without_its_temperature_loads_through_pytorch_once(tmp_path):
    load_model("mammography", device="cpu")
    (meta,) = (tmp_path / "onnx").glob("*.json")
    meta.unlink()  # a graph exported before the temperature was kept beside it
    first = load_model("mammography", device="cpu")
    assert first.net is not None and first.runtime == "onnxruntime"  # PyTorch, then it is kept
    again = load_model("mammography", device="cpu")
    assert again.net is None and again.runtime == "onnxruntime"  # from the cache, no PyTorch
    assert again.temperature == first.temperature
