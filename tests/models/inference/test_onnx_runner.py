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
    assert torch.allclose(logits, ref_logits, atol=1e-4)
    assert torch.allclose(mask_logits, ref_mask, atol=1e-4)


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
    assert torch.allclose(fast.infer(x)[0], slow.infer(x)[0], atol=1e-4)


def test_a_failing_export_falls_back_to_pytorch(monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(onnx_runner, "export", broken)
    model = load_model("mammography", device="cpu")
    assert model.runtime == "torch" and "exporter unavailable" in model.runtime_note
