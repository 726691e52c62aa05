"""models.saliency.methods: known-answer maps on a model whose evidence is known, the real brain model, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from models.inference.preprocess import to_tensor
from models.inference.registry import load_model
from models.saliency import methods as saliency
from models.training import synthetic as phantoms

pytestmark = pytest.mark.filterwarnings("ignore")
SQUARE = (slice(40, 60), slice(70, 90))  # where the toy model looks, at the 128-pixel input


class SquareModel(nn.Module):
    """Class 1's logit is the mean of the input inside SQUARE; class 0's is its negative. Linear, so IG is exact."""

    def __init__(self) -> None:
        super().__init__()
        self.last_conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.last_conv.weight)
        w = torch.zeros(1, 1, 128, 128)
        w[(..., *SQUARE)] = 1 / 400
        self.register_buffer("w", w)

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        s = (self.last_conv(x) * self.w).sum(dim=(1, 2, 3))
        return torch.stack([-s, s], dim=1)


class TurningModel(SquareModel):
    """Class 1's logit turns sharply once the mean inside SQUARE passes ``at``: ``height *
    tanh(sharpness * (s - at))`` of that mean ``s``. Along the straight path from a black baseline
    ``s`` grows linearly, so IG is known by hand: the square's pixels share the output change
    in proportion to their value, ``x * w * (f(s_x) - f(0)) / s_x``."""

    def __init__(self, at: float, sharpness: float = 200.0, height: float = 4.0) -> None:
        super().__init__()
        self.at, self.sharpness, self.height = at, sharpness, height

    def turn(self, s: torch.Tensor) -> torch.Tensor:
        return self.height * torch.tanh(self.sharpness * (s - self.at))

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        f = self.turn((self.last_conv(x) * self.w).sum(dim=(1, 2, 3)))
        return torch.stack([-f, f], dim=1)


@pytest.fixture(scope="module")
def toy_image() -> np.ndarray:
    """A non-square image (200 x 300) with a bright spot inside the square's footprint."""
    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 0.6, (200, 300)).astype(np.float32)
    img[75:80, 180:186] = (
        1.0  # rows 40-60 and cols 70-90 of 128 are rows 62-94 and cols 164-211 here
    )
    return img


@pytest.fixture(scope="module")
def brain():
    return load_model("brain_mri", device="cpu")


@pytest.fixture(scope="module")
def tumour():
    return phantoms.brain_mri(np.random.default_rng(13), True, lesion_diameter_mm=30.0)


def test_integrated_gradients_is_exact_on_a_linear_model(toy_image):
    model = SquareModel()
    x = to_tensor(toy_image)
    exp = saliency.explain(
        model,
        x,
        1,
        "integrated_gradients",
        image_shape=toy_image.shape,
        spacing_mm=(0.5, 0.5),
        params=saliency.SaliencyParams(baseline="black"),
        labels=("no", "yes"),
    )
    assert exp.attribution.shape == (200, 300)
    assert exp.input_attribution.shape == (128, 128)
    expected = (x * model.w)[0, 0].numpy()
    np.testing.assert_allclose(exp.input_attribution, expected, atol=1e-6)
    assert exp.convergence_delta == pytest.approx(0.0, abs=1e-5)  # completeness holds exactly
    r, c = exp.peak_rc
    assert 62 <= r < 94 and 164 <= c < 211 and toy_image[r, c] == 1.0
    assert (
        exp.target_label == "yes"
        and exp.params["baseline"] == "black"
        and exp.relative_delta < 1e-4
    )
    assert np.abs(exp.input_attribution[:40]).max() == 0  # nothing outside the square


def test_a_path_that_turns_sharply_is_refined_where_it_turns(toy_image):
    """The old rule recomputed the whole path with twice the steps; the panel rule halves the
    panel whose own completeness gap is largest: the steps go to the turn, and the map converges
    to IG computed by hand (issue 23)."""
    x = to_tensor(toy_image)
    s_x = float((x * SquareModel().w).sum())
    model = TurningModel(at=0.37 * s_x)  # the turn between GL nodes of the first panels
    black = saliency.SaliencyParams(baseline="black")
    first, first_delta = saliency.attribute(model, x, 1, "integrated_gradients", black)
    change = float(model.class_logits(x)[0, 1] - model.class_logits(torch.zeros_like(x))[0, 1])
    assert abs(float(first_delta[0])) > 0.05 * abs(change)  # 32 evaluations miss the turn
    exp = saliency.explain(
        model, x, 1, "integrated_gradients", image_shape=toy_image.shape, params=black
    )
    assert exp.relative_delta <= saliency.IG_MAX_RELATIVE_DELTA
    assert not [n for n in exp.notes if "approximate" in n]
    assert 32 < exp.params["evaluations"] <= saliency.IG_MAX_STEPS
    exact = (x * model.w)[0, 0].numpy() * change / s_x
    inside = exact != 0
    # the map is exact IG times (sum of map / output change): within the completeness gap
    np.testing.assert_allclose(
        exp.input_attribution[inside], exact[inside], rtol=saliency.IG_MAX_RELATIVE_DELTA
    )
    assert np.abs(exp.input_attribution[~inside]).max() == 0


def test_the_panels_tile_the_path_and_each_is_captums_integrated_gradients(brain, tumour):
    """Unrefined, 32 evaluations are 4 panels of 8 Gauss-Legendre nodes: the sum of Captum's IG
    over each quarter of the path, on the plain network (an independent reference)."""
    x = to_tensor(tumour.pixels.astype(np.float32))
    attr, delta = saliency.attribute(brain.network, x, 1, "integrated_gradients")
    baseline = saliency.make_baseline(x, "mean")
    ig = IntegratedGradients(brain.network.class_logits)
    ref, gaps = torch.zeros_like(x), 0.0
    for a, b in ((0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)):
        start, end = baseline + a * (x - baseline), baseline + b * (x - baseline)
        part, gap = ig.attribute(
            end, baselines=start, target=1, n_steps=8, return_convergence_delta=True
        )
        ref, gaps = ref + part, gaps + float(gap[0])
    assert (attr - ref).abs().max() <= 1e-3 * ref.abs().max()  # the folded weights' rounding
    assert float(delta[0]) == pytest.approx(gaps, abs=1e-3 * abs(float(ref.sum())))
    with torch.no_grad():
        change = brain.network.class_logits(x)[0, 1] - brain.network.class_logits(baseline)[0, 1]
    assert float(attr.sum() - delta[0]) == pytest.approx(float(change), rel=1e-3)  # completeness


def test_the_explained_class_changes_the_sign(toy_image):
    model = SquareModel()
    x = to_tensor(toy_image)
    yes = saliency.explain(model, x, 1, "integrated_gradients", image_shape=toy_image.shape)
    no = saliency.explain(model, x, 0, "integrated_gradients", image_shape=toy_image.shape)
    np.testing.assert_allclose(no.input_attribution, -yes.input_attribution, atol=1e-6)


def test_occlusion_windows_are_in_mm_and_stay_near_the_evidence(toy_image):
    model = SquareModel()
    x = to_tensor(toy_image)
    # 200 x 300 pixels at 0.64 mm: 1.0 x 1.5 mm per input pixel; 8 mm window = 8 x 5 input pixels
    exp = saliency.explain(
        model,
        x,
        1,
        "occlusion",
        image_shape=toy_image.shape,
        spacing_mm=(0.64, 0.64),
        params=saliency.SaliencyParams(window_mm=8, stride_mm=4),
    )
    assert exp.params["window_px"] == [8, 5] and exp.params["stride_px"] == [4, 3]
    a = exp.input_attribution
    assert (
        np.abs(a[:30]).max() == 0 and np.abs(a[70:]).max() == 0
    )  # beyond one window of the square: nothing
    assert a[SQUARE].mean() > 0
    no_spacing = saliency.explain(model, x, 1, "occlusion", image_shape=toy_image.shape)
    assert no_spacing.notes and "no pixel spacing" in no_spacing.notes[0]


def test_baselines():
    x = torch.rand(1, 1, 64, 64)
    assert saliency.make_baseline(x, "black").abs().max() == 0
    assert torch.allclose(saliency.make_baseline(x, "mean"), x.mean().expand_as(x))
    blurred = saliency.make_baseline(x, "blurred", (4.0, 4.0))
    assert blurred.shape == x.shape and blurred.std() < x.std() / 3
    assert blurred.mean() == pytest.approx(float(x.mean()), abs=0.02)


def test_bad_method_target_and_parameters_are_refused(brain, toy_image):
    x = to_tensor(toy_image)
    with pytest.raises(saliency.UnknownMethodError, match="unknown saliency method 'lime'"):
        saliency.explain(brain.network, x, 0, "lime")
    with pytest.raises(saliency.TargetOutOfRangeError, match="out of range"):
        saliency.explain(brain.network, x, 2, "gradcam", labels=brain.labels)
    with pytest.raises(saliency.TargetOutOfRangeError):
        saliency.resolve_target(brain.labels, 5, 0)
    with pytest.raises(saliency.TargetOutOfRangeError, match="unknown target class 'benign'"):
        saliency.resolve_target(brain.labels, "benign", 0)
    assert saliency.resolve_target(brain.labels, "tumour", 0) == 1
    assert saliency.resolve_target(brain.labels, "0", 1) == 0
    assert saliency.resolve_target(brain.labels, None, 1) == 1
    with pytest.raises(saliency.SaliencyError, match="baseline"):
        saliency.SaliencyParams(baseline="white")
    with pytest.raises(saliency.SaliencyError):
        saliency.SaliencyParams(n_steps=1)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_the_brain_model_points_at_the_tumour(brain, tumour, method):
    x = to_tensor(tumour.pixels.astype(np.float32))
    exp = saliency.explain(
        brain.network,
        x,
        1,
        method,
        image_shape=tumour.pixels.shape,
        spacing_mm=tumour.spacing_mm,
        labels=brain.labels,
    )
    assert exp.attribution.shape == tumour.pixels.shape
    assert exp.peak_rc == saliency.peak(exp.attribution)
    from scipy import ndimage

    near = ndimage.binary_dilation(tumour.mask, iterations=6)  # 5 mm
    assert near[exp.peak_rc], f"{method} peak {exp.peak_rc} is not on the 30 mm tumour"
    if method == "gradcam":
        assert exp.convergence_delta is None and exp.attribution.min() >= 0
    else:
        assert exp.convergence_delta is not None


def test_batching_integrated_gradients_changes_the_time_not_the_map(brain, tumour):
    x = to_tensor(tumour.pixels.astype(np.float32))
    batched = saliency.attribute(
        brain.network,
        x,
        1,
        "integrated_gradients",
        saliency.SaliencyParams(n_steps=16, internal_batch_size=16),
    )[0]
    one_by_one = saliency.attribute(
        brain.network,
        x,
        1,
        "integrated_gradients",
        saliency.SaliencyParams(n_steps=16, internal_batch_size=1),
    )[0]
    # Same map up to float32 summation order: batch size changes which convolution kernels run
    # (and so the order of each sum), not what is summed. A float32 sum of n terms carries a
    # relative error of about n * 2**-24 of the summed magnitudes; over the network's layers
    # (n in the thousands) that is ~1e-4 of the map's scale, so allow 1e-3 of its largest value.
    # A real batching bug (a step dropped or counted twice) moves the map by ~1/16 of its scale.
    scale = float(batched.abs().max())
    assert scale > 0
    torch.testing.assert_close(batched, one_by_one, atol=1e-3 * scale, rtol=0)


def test_the_folded_network_gives_the_same_maps_and_follows_weight_changes(tumour):
    net = load_model(
        "brain_mri", device="cpu"
    ).network  # its own copy: this test changes weights in place
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = saliency.gradient_network(net)
    assert fused is not net and not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert saliency.gradient_network(net) is fused  # cached
    x = to_tensor(tumour.pixels.astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(fused.class_logits(x), net.class_logits(x), atol=1e-4, rtol=1e-4)
    params = saliency.SaliencyParams(n_steps=8)
    attr = saliency.attribute(net, x, 1, "integrated_gradients", params)[0]
    baseline = saliency.make_baseline(x, "mean")
    ref = IntegratedGradients(net.class_logits).attribute(
        x, baselines=baseline, target=1, n_steps=8
    )
    assert (
        attr - ref
    ).abs().max() <= 1e-3 * ref.abs().max()  # float rounding of the folded weights only
    assert all(
        torch.equal(v, before[k]) for k, v in net.state_dict().items()
    )  # the original is untouched
    with torch.no_grad():
        net.enc1[0].weight.mul_(0.5)  # an in-place weight change ...
    refolded = saliency.gradient_network(net)
    assert refolded is not fused  # ... is never served stale
    with torch.no_grad():
        torch.testing.assert_close(
            refolded.class_logits(x), net.class_logits(x), atol=1e-4, rtol=1e-4
        )


def test_smoothgrad_is_seeded(brain, tumour):
    x = to_tensor(tumour.pixels.astype(np.float32))
    params = saliency.SaliencyParams(nt_n_steps=4, nt_samples=3, seed=3)
    a = saliency.attribute(brain.network, x, 1, "smoothgrad", params)[0]
    b = saliency.attribute(brain.network, x, 1, "smoothgrad", params)[0]
    c = saliency.attribute(
        brain.network,
        x,
        1,
        "smoothgrad",
        saliency.SaliencyParams(nt_n_steps=4, nt_samples=3, seed=4),
    )[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_params_for_method_key_only_what_changes_the_map():
    p = saliency.SaliencyParams()
    assert saliency.SaliencyParams(internal_batch_size=1).for_method(
        "integrated_gradients"
    ) == p.for_method("integrated_gradients")  # batching changes the time, not the map
    assert saliency.SaliencyParams(window_mm=30).for_method("integrated_gradients") == p.for_method(
        "integrated_gradients"
    )
    assert p.for_method("gradcam") == {}
    assert "blur_sigma_mm" not in p.for_method("integrated_gradients")
    assert "blur_sigma_mm" in saliency.SaliencyParams(baseline="blurred").for_method(
        "integrated_gradients"
    )
    assert saliency.sanity_status({}, "gradcam") == "not measured"
    card = {"saliency": {"methods": {"gradcam": {"sanity": {"passed": False}}}}}
    assert saliency.sanity_status(card, "gradcam") == "failed"
