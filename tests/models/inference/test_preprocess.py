"""The read's preprocessing and post-processing in NumPy agree with the PyTorch operations they
replace (issue 23: the read no longer imports PyTorch): the network input bit for bit, the outline
and the probabilities to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.inference.preprocess import (
    area_resize,
    mask_to_image,
    normalise,
    percentiles,
    to_input,
    to_tensor,
)
from models.inference.read import softmax


@pytest.mark.parametrize(
    "shape",
    [(256, 256), (512, 512), (128, 128), (200, 300), (129, 128), (1000, 700), (64, 90), (333, 257)],
)
def test_area_resize_is_pytorchs_area_interpolation_bit_for_bit(shape):
    image = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32) * 3 - 1
    ref = F.interpolate(torch.from_numpy(image)[None, None], size=(128, 128), mode="area")
    got = area_resize(image, 128)
    assert got.dtype == np.float32 and got.shape == (128, 128)
    assert np.array_equal(got, ref[0, 0].numpy())  # the very same network input, not nearly


def test_to_input_stacks_normalised_images_and_to_tensor_is_the_same_values():
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 4096, (256, 256)).astype(np.uint16), np.full((200, 150), 7.0)]
    x = to_input(images)
    assert x.shape == (2, 1, 128, 128) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and not x[1].any()  # a constant image is zeros
    assert np.array_equal(to_tensor(images).numpy(), x)


@pytest.mark.parametrize("shape", [(256, 256), (512, 384), (200, 300), (64, 64), (333, 257)])
def test_the_outline_agrees_with_pytorchs_sigmoid_and_bilinear_resize(shape):
    logits = (np.random.default_rng(shape[0]).standard_normal((1, 1, 64, 64)) * 4).astype(
        np.float32
    )
    prob = torch.sigmoid(torch.from_numpy(logits))
    ref = F.interpolate(prob, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    got = mask_to_image(logits, shape)
    assert got.shape == shape and got.dtype == bool
    # float32 rounding (PyTorch's vectorised exp and fused multiply-adds) may put a pixel within
    # about 1e-6 of the threshold on the other side; nowhere else may they differ
    differ = got != (ref >= 0.5)
    assert np.all(np.abs(ref[differ] - 0.5) < 1e-5)
    assert differ.sum() <= 2
    assert np.array_equal(mask_to_image(torch.from_numpy(logits), shape), got)  # a tensor too


def test_softmax_agrees_with_pytorchs_to_float32_rounding():
    logits = (np.random.default_rng(5).standard_normal((2000, 3)) * 5).astype(np.float32)
    got = softmax(logits, 0.8)
    ref = torch.softmax(torch.from_numpy(logits) / 0.8, dim=1).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-7, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def _images():
    rng = np.random.default_rng(8)
    yield rng.integers(0, 4096, (256, 256)).astype(np.float32)  # a 12-bit detector
    yield rng.integers(-1024, 3000, (97, 131)).astype(np.float32)  # Hounsfield units
    yield rng.integers(0, 65535, (64, 300)).astype(np.float32)  # 16 bits
    yield rng.integers(0, 2, (50, 50)).astype(np.float32)
    yield rng.random((120, 80), dtype=np.float32) * 100  # fractional: NumPy's own path
    yield np.full((30, 40), 7.0, np.float32)
    with_nan = rng.integers(0, 500, (40, 40)).astype(np.float32)
    with_nan[3, 4] = np.nan
    yield with_nan
    yield np.array([[5.0]], np.float32)


@pytest.mark.parametrize("q", [(1.0, 99.5), (0.0, 100.0), (50.0, 25.0), (33.3, 66.7)])
def test_percentiles_are_numpys_bit_for_bit(q):
    for image in _images():
        ref, got = np.percentile(image, q), percentiles(image, q)
        assert got.dtype == ref.dtype and np.array_equal(got, ref, equal_nan=True), image.shape


def test_normalise_gives_the_previous_formulas_values():
    for image in _images():
        p = image.astype(np.float32)
        lo, hi = np.percentile(p, [1.0, 99.5])
        if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-6:
            ref = np.zeros_like(p)
        else:
            ref = np.clip((p - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
        assert np.array_equal(normalise(image), ref), image.shape


def test_oncolens_device_answers_without_asking_pytorch(monkeypatch) -> None:
    """A CUDA build of PyTorch on a machine without a GPU: the operator says "cpu" once, and the
    torch-free read stays torch-free (the question itself would import PyTorch)."""
    from models.inference.registry import default_device

    monkeypatch.setenv("ONCOLENS_DEVICE", " CPU ")
    assert default_device() == "cpu"
    monkeypatch.setenv("ONCOLENS_DEVICE", "cuda")
    assert default_device() == "cuda"
    monkeypatch.setenv("ONCOLENS_DEVICE", "tpu")  # not a device OncoLens knows: asked as before
    assert default_device() in ("cpu", "cuda")
