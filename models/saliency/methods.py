"""Saliency maps of an AI read with Captum: where in the image the model found its evidence.

One signature for every method: ``explain(network, x, target, method, ...)``
takes the network input of one image (``to_tensor``: (1, 1, S, S)), the class
to explain and the method, and returns an ``Explanation`` whose map has the
*image's* rows x columns, with its metadata (latency, convergence delta, the
parameters used, the peak's position). ``explain_image`` and ``explain_file``
wrap it for the page and ``oncolens explain``, so both show the same map.

Methods (all attribute the calibrated class logits, ``LesionNet.class_logits``):

- ``integrated_gradients``: path integral of gradients from a baseline image
  (black, blurred or the image's mean) to the image (Sundararajan et al. 2017);
  Gauss-Legendre steps computed in batches of ``internal_batch_size``; the
  convergence delta (completeness error, logit units) is reported.
- ``gradcam``: LayerGradCam on ``last_conv`` (16 x 16 at the 128-pixel input),
  ReLU'd and upsampled bilinearly to the image.
- ``occlusion``: the drop of the class logit when a window is replaced by the
  image mean; window and stride are given in mm and converted to input pixels
  with the pixel spacing (a fixed size in pixels when the file has none).
- ``smoothgrad``: NoiseTunnel SmoothGrad over integrated gradients.

Why attribute at the network input (128 x 128) and upsample, rather than
through the resize from the full image: the network sees nothing finer than
its input, so a finer map would only spread the same information, and the
cost stays the same for a 256-pixel phantom and a 4000-pixel mammogram.
"""

from __future__ import annotations

import copy
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

METHODS = ("integrated_gradients", "gradcam", "occlusion", "smoothgrad")
CLI_METHODS = ("integrated_gradients", "gradcam", "occlusion")  # the `oncolens explain` contract
METHOD_TITLES = {
    "integrated_gradients": "Integrated gradients",
    "gradcam": "Grad-CAM",
    "occlusion": "Occlusion",
    "smoothgrad": "SmoothGrad (integrated gradients)",
}
BASELINES = ("black", "blurred", "mean")
FALLBACK_INPUT_SPACING_MM = 1.6  # assumed per input pixel when a file has no pixel spacing


class SaliencyError(ValueError):
    """An explanation cannot be computed as asked; the message says why."""


class UnknownMethodError(SaliencyError):
    pass


class TargetOutOfRangeError(SaliencyError):
    pass


@dataclass(frozen=True)
class SaliencyParams:
    """Every knob of every method. ``for_method`` keeps those that change a method's map.

    Defaults were chosen on the held-out phantoms (docs/saliency.md): 32
    Gauss-Legendre steps keep the IG convergence delta small against the logit
    change; 16 steps per pass fit the CPU caches better than 32 at once, which
    with the folded network (``gradient_network``) keeps IG within the 500 ms
    budget. ``internal_batch_size`` changes the time, never the map, so it is
    not part of ``for_method`` (nor of cache keys or the card's parameters).
    """

    baseline: str = "mean"  # IG / SmoothGrad: black | blurred | mean
    n_steps: int = 32  # IG steps
    internal_batch_size: int | None = 16  # IG steps per pass (None: all at once; 1: unbatched)
    blur_sigma_mm: float = 10.0  # the blurred baseline's Gaussian sigma
    window_mm: float = 16.0  # occlusion window side
    stride_mm: float = 8.0  # occlusion stride
    nt_samples: int = 8  # SmoothGrad noisy copies
    nt_n_steps: int = 8  # IG steps per noisy copy
    nt_stdev: float = 0.1  # SmoothGrad noise sd (image scaled to [0, 1])
    seed: int = 0  # SmoothGrad noise

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise SaliencyError(
                f"unknown baseline '{self.baseline}'; choose one of {', '.join(BASELINES)}"
            )
        if self.n_steps < 2 or self.nt_n_steps < 2 or self.nt_samples < 1:
            raise SaliencyError(
                "n_steps and nt_n_steps must be at least 2 and nt_samples at least 1"
            )
        if self.internal_batch_size is not None and self.internal_batch_size < 1:
            raise SaliencyError(
                "internal_batch_size must be at least 1 (or None for all steps at once)"
            )
        if (
            self.window_mm <= 0
            or self.stride_mm <= 0
            or self.blur_sigma_mm <= 0
            or self.nt_stdev <= 0
        ):
            raise SaliencyError("window, stride, blur sigma and noise sd must be positive")

    def for_method(self, method: str) -> dict:
        keys = {
            "integrated_gradients": ("baseline", "n_steps", "blur_sigma_mm"),
            "smoothgrad": (
                "baseline",
                "nt_n_steps",
                "blur_sigma_mm",
                "nt_samples",
                "nt_stdev",
                "seed",
            ),
            "occlusion": ("window_mm", "stride_mm"),
            "gradcam": (),
        }[check_method(method)]
        out = {k: v for k, v in asdict(self).items() if k in keys}
        if "baseline" in out and out["baseline"] != "blurred":
            out.pop("blur_sigma_mm")
        if method == "integrated_gradients":
            out["rule"] = IG_RULE  # how the path is integrated: another rule's figures are stale
        return out


@dataclass(frozen=True, eq=False)
class Explanation:
    method: str
    target: int
    target_label: str | None
    attribution: np.ndarray  # float32 (rows, cols): the map at the image's resolution
    input_attribution: np.ndarray  # float32 (S, S): the map at the network input, for the metrics
    peak_rc: tuple[int, int]  # [row, col] of the attribution maximum at image resolution
    latency_ms: float
    convergence_delta: (
        float | None
    )  # IG / SmoothGrad: |sum(attr) - (f(x) - f(baseline))|, logit units
    relative_delta: float | None  # IG: convergence_delta / |f(x) - f(baseline)|
    params: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def check_method(method: str) -> str:
    if method not in METHODS:
        raise UnknownMethodError(
            f"unknown saliency method '{method}'; choose one of {', '.join(METHODS)}"
        )
    return method


def resolve_target(
    labels: tuple[str, ...] | list[str], target: int | str | None, predicted: int
) -> int:
    """Class index to explain: ``None`` -> the predicted class; an index or a label name otherwise."""
    if target is None:
        return int(predicted)
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in labels:
            raise TargetOutOfRangeError(
                f"unknown target class '{target}'; classes: {', '.join(labels)}"
            )
        return list(labels).index(target)
    index = int(target)
    if not 0 <= index < len(labels):
        raise TargetOutOfRangeError(
            f"target class {index} is out of range: this model has {len(labels)} classes "
            f"(0-{len(labels) - 1}: {', '.join(labels)})"
        )
    return index


def input_spacing_mm(
    image_shape: tuple[int, int] | None, spacing_mm: tuple[float, float] | None, size: int
) -> tuple[float, float] | None:
    """mm per network-input pixel (rows, cols); None without a known spacing."""
    if spacing_mm is None or image_shape is None:
        return None
    return (spacing_mm[0] * image_shape[0] / size, spacing_mm[1] * image_shape[1] / size)


def _mm_to_px(mm: float, per_px: tuple[float, float] | None, size: int) -> tuple[int, int]:
    per_row, per_col = per_px or (FALLBACK_INPUT_SPACING_MM, FALLBACK_INPUT_SPACING_MM)
    return (
        int(np.clip(round(mm / per_row), 1, size)),
        int(np.clip(round(mm / per_col), 1, size)),
    )


def gaussian_blur(x: torch.Tensor, sigma_px: tuple[float, float]) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) with reflect padding."""
    out = x
    for dim, sigma in ((2, sigma_px[0]), (3, sigma_px[1])):
        radius = max(1, min(int(3 * sigma), x.shape[dim] - 1))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype)
        k = torch.exp(-0.5 * (t / max(sigma, 1e-3)) ** 2)
        k = (k / k.sum()).view(1, 1, -1, 1) if dim == 2 else (k / k.sum()).view(1, 1, 1, -1)
        pad = (0, 0, radius, radius) if dim == 2 else (radius, radius, 0, 0)
        out = F.conv2d(F.pad(out, pad, mode="reflect"), k)
    return out


def make_baseline(
    x: torch.Tensor, kind: str, sigma_px: tuple[float, float] = (6.0, 6.0)
) -> torch.Tensor:
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x).clone()
    if kind == "blurred":
        return gaussian_blur(x, sigma_px)
    raise SaliencyError(f"unknown baseline '{kind}'; choose one of {', '.join(BASELINES)}")


def _forward(network: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    # LesionNet's calibrated class logits; a network without them returns its logits from forward
    class_logits: Callable[[torch.Tensor], torch.Tensor] | None = getattr(
        network, "class_logits", None
    )
    return class_logits if class_logits is not None else network


def _fuse_block(block: nn.Module) -> nn.Module:
    """A copy of ``block`` with every Conv2d -> BatchNorm2d pair folded into one convolution (eval mode)."""
    # lazy: torch is imported only when this is used (start-up time)
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if not isinstance(block, nn.Sequential):
        return copy.deepcopy(block)
    layers: list[nn.Module] = []
    items = list(block)
    i = 0
    while i < len(items):
        layer = items[i]
        following = items[i + 1] if i + 1 < len(items) else None
        if isinstance(layer, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
            layers.append(fuse_conv_bn_eval(layer, following))
            i += 2
        else:
            layers.append(copy.deepcopy(layer))
            i += 1
    return nn.Sequential(*layers)


_GRADIENT_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gradient_network(network: nn.Module) -> nn.Module:
    """The network the gradient methods differentiate: batch norm folded into the convolutions, channels-last.

    Why: integrated gradients is 16-32 forward + backward passes, and on 2 CPU
    cores a folded, channels-last copy runs them about 30 % faster (bench/
    bench_saliency.py) with the same numbers to float rounding (eval mode:
    batch norm is an affine map, ``tests/models/saliency/test_methods.py`` checks).
    The copy is cached per network and rebuilt when any weight changed in
    place (tensor version counters), so an explanation never uses stale weights.
    Networks in training mode, or without child blocks to fold, are used as they are.
    """
    if network.training or not any(isinstance(m, nn.BatchNorm2d) for m in network.modules()):
        return network
    versions = tuple(t._version for t in (*network.parameters(), *network.buffers()))
    cached = _GRADIENT_COPIES.get(network)
    if cached is not None and cached[0] == versions:
        return cached[1]
    fused = copy.copy(
        network
    )  # shallow: keeps the class, its methods and plain attributes (not the ONNX session's state)
    fused._modules = {
        name: None if child is None else _fuse_block(child)
        for name, child in network._modules.items()
    }
    fused._parameters = {
        name: None if p is None else nn.Parameter(p.detach().clone(), requires_grad=False)
        for name, p in network._parameters.items()
    }  # never the original's
    fused._buffers = {
        name: None if b is None else b.clone() for name, b in network._buffers.items()
    }
    fused.eval()
    fused.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch stubs omit Module.to(memory_format=)
    for p in fused.parameters():
        p.requires_grad_(False)
    _GRADIENT_COPIES[network] = (versions, fused)
    return fused


def _forward_only(network: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Calibrated class logits for methods that need no gradients (occlusion): ONNX Runtime when the
    registry attached it to this network (``models.inference.registry.load_model``), about twice as fast; PyTorch
    otherwise (e.g. the sanity check's re-initialised copy). Same numbers to 1e-4."""
    fast = getattr(network, "onnx_forward", None)
    if fast is None:
        return _forward(network)
    return lambda x: fast(x)[0] / network.temperature


IG_MAX_RELATIVE_DELTA = 0.05  # |delta| / |f(x) - f(baseline)| above which IG is refined
IG_MAX_STEPS = 128  # the most gradient evaluations a map may cost (about 1 s on two quiet cores)
IG_PANEL_STEPS = 8  # Gauss-Legendre nodes per panel of the path
# ``ig_path`` in words: part of IG's parameters (cache keys, the cards' figures), so figures measured
# with another rule read as measured with other parameters (``quality.latency_update`` refuses them)
IG_RULE = (
    f"Gauss-Legendre panels of {IG_PANEL_STEPS} nodes; the panel with the largest gap halved "
    f"while the gap exceeds {IG_MAX_RELATIVE_DELTA:.0%}, up to {IG_MAX_STEPS} evaluations"
)


@dataclass(frozen=True, eq=False)
class IGPath:
    """Integrated gradients over the path cut into panels: the map (N, 1, S, S), its signed
    completeness gaps (N,), the panels ``((start, end), ...)`` as fractions of the path, and the
    gradient evaluations it cost (every panel ever computed, the replaced ones included)."""

    attribution: torch.Tensor
    delta: torch.Tensor
    panels: tuple[tuple[float, float], ...]
    evaluations: int


def _ig_panels(
    ig,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: int | torch.Tensor,
    panels: list[tuple[float, float]],
    nodes: int,
    batch: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG of one image (1, 1, S, S) over each panel of its path, as one Captum call: per panel
    its attribution (P, 1, S, S) and its signed completeness gap (P,).

    A panel [a, b] of the path from ``baseline`` to ``x`` is IG from the point at ``a`` to the
    point at ``b``: Captum takes the panels as a batch of inputs with a baseline each, so the
    steps of all panels share its passes (``internal_batch_size``), and its convergence delta
    of a panel is that panel's own completeness gap, exact: sum(attribution) - (f(b) - f(a)).
    """
    starts = torch.cat([baseline + a * (x - baseline) for a, _ in panels])
    ends = torch.cat([baseline + b * (x - baseline) for _, b in panels])
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
    if fmt is not None:
        starts, ends = starts.contiguous(memory_format=fmt), ends.contiguous(memory_format=fmt)
    attr, delta = ig.attribute(
        ends,
        baselines=starts,
        target=target,
        n_steps=nodes,
        method="gausslegendre",
        internal_batch_size=None if batch is None else max(batch, len(panels)),
        return_convergence_delta=True,
    )
    return attr.detach(), delta.detach()


def ig_path(
    ig,
    x: torch.Tensor,
    baseline: torch.Tensor,
    target: int | torch.Tensor,
    params: SaliencyParams,
    *,
    refine: bool = True,
) -> IGPath:
    """Integrated gradients of ``x`` (N, 1, S, S) as a composite Gauss-Legendre rule: the path
    from the baseline cut into ``n_steps / IG_PANEL_STEPS`` equal panels of ``IG_PANEL_STEPS``
    nodes each; with ``refine`` (one image), while the completeness gap is above
    ``IG_MAX_RELATIVE_DELTA`` of the output change, the panel with the largest gap of its own is
    cut in two (each half with as many nodes) until the map would cost more than ``IG_MAX_STEPS``
    gradient evaluations.

    Why panels (issue 23): the rule before recomputed the whole path with twice the steps
    (32 -> 64 -> 128, 224 evaluations) and 9 of 13 demo images needed it, although the gap
    comes from a few short stretches of the path where the class logit turns (a ReLU network's
    gradient jumps there). A panel's gap is known exactly (the network's output at its two ends),
    so the steps go where the integral is not resolved, and nothing computed is thrown away but
    the panel that is cut. The map is still integrated gradients (a positive-weight quadrature of
    the same path integral) and its completeness check is the same, over the whole path.
    """
    nodes = max(2, min(IG_PANEL_STEPS, params.n_steps))
    count = max(1, params.n_steps // nodes)
    panels = [(i / count, (i + 1) / count) for i in range(count)]
    if x.shape[0] != 1:  # a batch (the quality metrics' perturbations): fixed panels, no refining
        attrs, deltas = [], []
        for i in range(x.shape[0]):
            a, d = _ig_panels(
                ig, x[i : i + 1], baseline[i : i + 1], _one(target, i), panels, nodes,
                params.internal_batch_size,
            )  # fmt: skip
            attrs.append(a.sum(0, keepdim=True))
            deltas.append(d.sum().view(1))
        return IGPath(
            torch.cat(attrs).contiguous(),
            torch.cat(deltas),
            tuple(panels),
            count * nodes * x.shape[0],
        )
    attr, delta = _ig_panels(ig, x, baseline, target, panels, nodes, params.internal_batch_size)
    evaluations = count * nodes
    while refine and evaluations + 2 * nodes <= IG_MAX_STEPS:
        total = attr.sum()
        change = float(total) - float(delta.sum())  # f(x) - f(baseline), by completeness
        if abs(float(delta.sum())) <= IG_MAX_RELATIVE_DELTA * max(abs(change), 1e-6):
            break
        worst = int(delta.abs().argmax())
        lo, hi = panels[worst]
        halves = [(lo, (lo + hi) / 2), ((lo + hi) / 2, hi)]
        h_attr, h_delta = _ig_panels(
            ig, x, baseline, target, halves, nodes, params.internal_batch_size
        )
        keep = [i for i in range(len(panels)) if i != worst]
        panels = [panels[i] for i in keep] + halves
        attr = torch.cat([attr[keep], h_attr])
        delta = torch.cat([delta[keep], h_delta])
        evaluations += 2 * nodes
    return IGPath(
        attr.sum(0, keepdim=True).contiguous(),
        delta.sum().view(1),
        tuple(sorted(panels)),
        evaluations,
    )


def _one(target: int | torch.Tensor, i: int) -> int | torch.Tensor:
    """Image ``i``'s target of a batch's (an int is everyone's)."""
    if isinstance(target, torch.Tensor) and target.ndim > 0:
        return target[i : i + 1]
    return target


def attribute(
    network: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor,
    method: str,
    params: SaliencyParams | None = None,
    per_px_mm: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attributions of ``x`` (N, 1, S, S) at the input resolution, and IG's signed convergence deltas (N,) or None.

    This is also the ``explanation_func`` the quality metrics hand to Captum. Integrated gradients
    is ``ig_path``'s first panels (``n_steps`` evaluations) unrefined; ``explain`` refines them.
    """
    # lazy: captum is imported only when this is used (start-up time)
    from captum.attr import (
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
    )

    params = params or SaliencyParams()
    check_method(method)
    size = x.shape[-1]
    x = x.detach()
    if method in (
        "integrated_gradients",
        "smoothgrad",
    ):  # many passes: worth the folded copy (Grad-CAM is one)
        network = gradient_network(network)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = _forward(network)
    if method == "gradcam":
        cam = LayerGradCam(forward, network.last_conv).attribute(
            x, target=target, relu_attributions=True
        )
        return LayerAttribution.interpolate(
            cam, x.shape[-2:], interpolate_mode="bilinear"
        ).detach().contiguous(), None
    if method == "occlusion":
        window = _mm_to_px(params.window_mm, per_px_mm, size)
        stride = _mm_to_px(params.stride_mm, per_px_mm, size)
        fill = x.mean(
            dim=(1, 2, 3), keepdim=True
        )  # the image's mean: no dark hole the model never saw
        attr = Occlusion(_forward_only(network)).attribute(
            x,
            sliding_window_shapes=(1, *window),
            strides=(1, *stride),
            baselines=fill.expand_as(x).clone(),
            target=target,
            perturbations_per_eval=64,
        )
        return attr.detach(), None
    ig, baseline = _ig_setup(forward, x, params, per_px_mm)
    if method == "integrated_gradients":
        path = ig_path(ig, x, baseline, target, params, refine=False)
        return path.attribution, path.delta
    kwargs = dict(
        baselines=baseline,
        target=target,
        internal_batch_size=params.internal_batch_size,
        return_convergence_delta=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        attr, delta = NoiseTunnel(ig).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=params.nt_samples,
            stdevs=params.nt_stdev,
            n_steps=params.nt_n_steps,
            **kwargs,
        )
    # NoiseTunnel returns one delta per noisy copy: report the largest per image
    worst = delta.detach().view(x.shape[0], -1).abs().amax(dim=1)
    return attr.detach().contiguous(), worst


def _ig_setup(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    params: SaliencyParams,
    per_px_mm: tuple[float, float] | None,
):
    """Captum's IntegratedGradients of ``forward`` and the baseline of ``x`` that ``params`` names."""
    # lazy: captum is imported only when this is used (start-up time)
    from captum.attr import IntegratedGradients

    per_row, per_col = per_px_mm or (FALLBACK_INPUT_SPACING_MM, FALLBACK_INPUT_SPACING_MM)
    sigma = (params.blur_sigma_mm / per_row, params.blur_sigma_mm / per_col)
    return IntegratedGradients(forward), make_baseline(x, params.baseline, sigma)


def _explain_ig(
    network: nn.Module,
    x: torch.Tensor,
    target: int,
    params: SaliencyParams,
    per_px_mm: tuple[float, float] | None,
) -> IGPath:
    """``explain``'s integrated gradients: ``ig_path`` refined, on the folded network (``attribute``)."""
    network = gradient_network(network)
    x = x.detach().contiguous(memory_format=torch.channels_last)
    ig, baseline = _ig_setup(_forward(network), x, params, per_px_mm)
    return ig_path(ig, x, baseline, target, params, refine=True)


def to_image_resolution(attr: torch.Tensor, image_shape: tuple[int, int]) -> np.ndarray:
    """(1, 1, S, S) input-resolution map -> float32 (rows, cols), bilinear."""
    t = attr.float()
    if tuple(t.shape[-2:]) != tuple(image_shape):
        t = F.interpolate(t, size=tuple(image_shape), mode="bilinear", align_corners=False)
    return t[0, 0].cpu().numpy().astype(np.float32)


def peak(attribution: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(attribution)), attribution.shape)
    return int(r), int(c)


def _relative_delta(attr: torch.Tensor, delta: torch.Tensor | None) -> float | None:
    """IG's convergence delta relative to the output change it should account for (completeness)."""
    if delta is None:
        return None
    change = float(attr.sum()) - float(delta[0])  # f(x) - f(baseline), from completeness
    return abs(float(delta[0])) / max(abs(change), 1e-6)


def explain(
    network: nn.Module,
    x: torch.Tensor,
    target: int,
    method: str,
    *,
    image_shape: tuple[int, int] | None = None,
    spacing_mm: tuple[float, float] | None = None,
    params: SaliencyParams | None = None,
    labels: tuple[str, ...] | None = None,
) -> Explanation:
    """The map of one image's input ``x`` (1, 1, S, S) for class ``target``, at ``image_shape`` resolution.

    ``spacing_mm`` is the image's own (row, col) spacing; with it, occlusion
    windows and blur sizes are in mm.
    """
    check_method(method)
    params = params or SaliencyParams()
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 1:
        raise SaliencyError(f"expected one image as a (1, 1, S, S) tensor, got {tuple(x.shape)}")
    n_classes = None
    if labels is not None:
        n_classes = len(labels)
    else:
        with torch.no_grad():
            n_classes = int(_forward(network)(x).shape[1])
    if not 0 <= int(target) < n_classes:
        raise TargetOutOfRangeError(f"target class {target} is out of range (0-{n_classes - 1})")
    size = x.shape[-1]
    rows, cols = image_shape or x.shape[-2:]
    image_shape = (int(rows), int(cols))
    per_px = input_spacing_mm(image_shape, spacing_mm, size)
    notes = []
    if per_px is None and method in ("occlusion", "smoothgrad", "integrated_gradients"):
        notes.append(
            f"no pixel spacing: sizes in mm assume {FALLBACK_INPUT_SPACING_MM} mm per input pixel"
        )
    started = time.perf_counter()
    used = params.for_method(method)
    relative: float | None = None
    delta: torch.Tensor | None
    if method == "integrated_gradients":
        # a large convergence delta means the integral was not resolved: the panels with the
        # largest gaps are refined (``ig_path``, up to IG_MAX_STEPS evaluations); said when it still is not
        path = _explain_ig(network, x, int(target), params, per_px)
        attr, delta = path.attribution, path.delta
        relative = _relative_delta(attr, delta)
        used |= {"evaluations": path.evaluations, "panels": len(path.panels)}
    else:
        attr, delta = attribute(network, x, int(target), method, params, per_px)
    if relative is not None and relative > IG_MAX_RELATIVE_DELTA:
        notes.append(
            f"convergence delta is {relative:.0%} of the output change even with "
            f"{used['evaluations']} gradient evaluations: the map is approximate"
        )
    full = to_image_resolution(attr, image_shape)
    latency = (time.perf_counter() - started) * 1e3
    if method == "occlusion":
        used |= {
            "window_px": list(_mm_to_px(params.window_mm, per_px, size)),
            "stride_px": list(_mm_to_px(params.stride_mm, per_px, size)),
        }
    return Explanation(
        method=method,
        target=int(target),
        target_label=labels[int(target)] if labels else None,
        attribution=full,
        input_attribution=attr[0, 0].cpu().numpy().astype(np.float32),
        peak_rc=peak(full),
        latency_ms=latency,
        convergence_delta=None if delta is None else abs(float(delta[0])),
        relative_delta=relative,
        params=used,
        notes=tuple(notes),
    )


# --- the AI read's image and file: what the page and the CLI call ---------------------------


def explain_image(
    model, image, method: str, target: int | str | None = None, params: SaliencyParams | None = None
) -> Explanation:
    """Explain a ``LoadedModel``'s read of a ``DicomImage``; default target: the predicted class.

    The input guard runs first: an image the model refuses to read is not explained either
    (``InputRefusedError``, a ``NoModelForImageError``).
    """
    # lazy: at the top, importing models.saliency.methods took 4350 ms instead of 1717 ms
    from models.inference.preprocess import to_tensor

    # lazy: at the top, importing models.saliency.methods took 4350 ms instead of 1717 ms
    from models.inference.read import InputRefusedError, check_input

    check_method(method)
    if getattr(model, "guard", None) is not None:
        verdict = check_input(model, image)
        if not verdict.in_distribution:
            raise InputRefusedError(verdict.reason)
    x = to_tensor(image.pixels).to(model.device)
    predicted = -1  # only needed (one more forward pass) when no target is given
    if target is None:
        with torch.no_grad():
            predicted = int(model.network.class_logits(x).argmax(1)[0])
    index = resolve_target(model.labels, target, predicted)
    return explain(
        model.network,
        x,
        index,
        method,
        image_shape=image.pixels.shape,
        spacing_mm=image.spacing_mm,
        params=params,
        labels=model.labels,
    )


def explain_file(
    path: Path,
    load,
    method: str,
    target: int | str | None = None,
    params: SaliencyParams | None = None,
    requested: str | None = None,
):
    """(JSON-ready result, Explanation, DicomImage) for one file; errors raise (the CLI reports them).

    Raises ``DicomReadError``, ``NoModelForImageError``, ``ModelUnavailableError``,
    ``SaliencyError`` (unknown method, target out of range), ``FileNotFoundError``.
    """
    # lazy: at the top, importing models.saliency.methods took 4350 ms instead of 1717 ms
    from models.dicom.reader import read_dicom

    # lazy: at the top, importing models.saliency.methods took 4350 ms instead of 1717 ms
    from models.inference.read import model_for

    # lazy: the verdict rules are read only when a file is explained (import cost of this module)
    from models.saliency.verdict import verdict

    check_method(method)
    started = time.perf_counter()
    image = read_dicom(Path(path))
    model = model_for(image, load, requested)
    exp = explain_image(model, image, method, target, params)
    result = {
        "file": str(path),
        "model": model.name,
        "model_version": model.version,
        "method": method,
        "target": exp.target_label,
        "target_index": exp.target,
        "latency_ms": round(exp.latency_ms, 2),
        "total_ms": round((time.perf_counter() - started) * 1e3, 2),
        "peak_rc": list(exp.peak_rc),
        "image_shape": list(image.pixels.shape),
        "params": exp.params,
        "sanity_check": sanity_status(model.card, method),
        "verdict": verdict(model.card, method).to_json(),
    }
    if exp.convergence_delta is not None:
        result["convergence_delta"] = round(exp.convergence_delta, 6)
    if exp.relative_delta is not None:
        result["relative_convergence_delta"] = round(exp.relative_delta, 6)
    if exp.notes:
        result["notes"] = list(exp.notes)
    return result, exp, image


def sanity_status(card: dict, method: str) -> str:
    """'passed', 'failed' or 'not measured': the model card's randomisation check for this method."""
    entry = (card.get("saliency") or {}).get("methods", {}).get(method)
    if not entry or "sanity" not in entry:
        return "not measured"
    return "passed" if entry["sanity"]["passed"] else "failed"


def with_params(params: SaliencyParams | None, **changes) -> SaliencyParams:
    """A copy of ``params`` (or the defaults) with ``changes`` applied (None values ignored)."""
    return replace(
        params or SaliencyParams(), **{k: v for k, v in changes.items() if v is not None}
    )
