"""Saliency in 3D: where in a volume the 3D model found its evidence for the lesion it outlined.

One function (``explain_volume``) serves ``oncolens explain SERIES_DIR``, the Imaging page and the
quality run (``models.saliency.volume_quality``), for the built-in MONAI bundle and any
registered one, so the map shown is the map that was validated.

**What is explained (the scalar target).** A segmentation network has one output per voxel, so
"the lesion score" must be defined: here it is the lesion log-odds (the lesion channels'
``logsumexp`` minus the background logit) **summed over the target region**. The target region
is the read's own lesion mask (after the bundle's cleaning: ``segment.measure``) when the read
found a lesion, otherwise the ``FALLBACK_REGION_VOXELS`` voxels of highest lesion probability
(the model's most suspicious spot, so a "no lesion" read can still be explained). Log-odds, not
probability: inside a confident mask the softmax is saturated and its gradient vanishes.

**Methods** (Captum):

- ``gradcam``: ``LayerGradCam`` on the layer ``gradcam_layer`` picks (a MONAI UNet's last
  decoder block before its output layer, at half the input grid), ReLU'd and
  upsampled trilinearly to the volume. TorchScript modules take no hooks, so the network is run
  through ``Unrolled``: MONAI's ``Sequential`` and ``SkipConnection`` containers re-composed in
  Python around the TorchScript blocks (checked against the network's own output). A network
  built otherwise (SegResNet, a bundle's own forward) has no Grad-CAM here: ``SaliencyError``
  saying so; integrated gradients works for every bundle.
- ``integrated_gradients``: ``IntegratedGradients`` from a baseline (the volume's mean, as in
  2D; or black) with Gauss-Legendre steps, the convergence delta checked as in 2D: above 5 % of
  the output change the map is recomputed with twice the steps, up to ``IG_MAX_STEPS_3D``, and
  flagged as approximate if still above.

The map lives on the model's grid (the prepared volume: the contract's orientation and
spacing), with that grid's RAS affine, so it overlays the read's mask exactly; ``peak_voxel`` and
``peak_mm`` (RAS) say where its maximum is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from models.saliency.methods import IG_MAX_RELATIVE_DELTA, METHOD_TITLES, SaliencyError
from models.volumes.cards import saliency_measured_on

if TYPE_CHECKING:
    from models.volumes.bundle import Bundle
    from models.volumes.segment import VolumeRead
    from models.volumes.series import Volume

__all__ = [
    "FALLBACK_REGION_VOXELS",
    "METHODS_3D",
    "Unrolled",
    "VolumeExplanation",
    "VolumeParams",
    "attribute_volume",
    "card_verdict",
    "explain_prepared",
    "explain_series",
    "explain_volume",
    "gradcam_layer",
    "lesion_log_odds",
    "target_region",
]

METHODS_3D = ("gradcam", "integrated_gradients")
FALLBACK_REGION_VOXELS = 64  # 0.5 mL at 2 mm: the most suspicious spot of a "no lesion" read
IG_MAX_STEPS_3D = 32  # each step is a forward and backward pass over the whole volume (~2 s)


@dataclass(frozen=True)
class VolumeParams:
    """The knobs of a 3D map; ``for_method`` keeps those that change it (the card's parameters).

    8 IG steps by default: on the held-out brains the relative convergence delta stayed at about
    2 % (median) with 8, under the 5 % rule, and each step is a full-volume forward and backward
    pass (seconds on two cores); the rule recomputes with more when a volume needs them.
    """

    n_steps: int = 8  # IG steps (each a full-volume forward and backward pass)
    baseline: str = "mean"  # mean | black
    internal_batch_size: int = 2  # IG steps per pass: time only, not the map

    def __post_init__(self) -> None:
        if self.baseline not in ("mean", "black"):
            raise SaliencyError(f"unknown baseline '{self.baseline}' for a volume; mean or black")
        if not 2 <= self.n_steps <= IG_MAX_STEPS_3D:
            raise SaliencyError(f"n_steps must be 2-{IG_MAX_STEPS_3D} for a volume")

    def for_method(self, method: str) -> dict:
        if method == "integrated_gradients":
            return {"n_steps": self.n_steps, "baseline": self.baseline}
        return {"layer": "last decoder block", "upsampling": "trilinear"}


# --- running a TorchScript MONAI UNet with a layer we can differentiate at -----------------


def _kind(module: Any) -> str:
    return str(getattr(module, "original_name", type(module).__name__))


class Unrolled:
    """The network's forward re-composed from its blocks, with one block's output exposed.

    MONAI's ``UNet`` is ``Sequential`` blocks and ``SkipConnection(submodule)`` (``cat`` of the
    input and the submodule's output along channels); each is re-composed here in Python, so
    the output of the block named ``layer`` can be captured and differentiated at, which
    TorchScript's hook-less modules do not allow otherwise.
    """

    def __init__(self, network: Any, layer: str, tap: torch.nn.Module | None = None) -> None:
        self.network = network
        self.layer = layer
        # Captum hooks ``tap`` (an identity): the captured block's output passes through it
        self.tap = tap if tap is not None else torch.nn.Identity()
        if layer not in dict(network.named_modules()):
            raise SaliencyError(f"the network has no block {layer!r}")
        self.captured: torch.Tensor | None = None

    def _run(self, name: str, module: Any, x: torch.Tensor) -> torch.Tensor:
        kind = _kind(module)
        prefix = f"{name}." if name else ""
        if kind == "Sequential":
            for child, sub in module.named_children():
                x = self._run(prefix + child, sub, x)
        elif kind == "SkipConnection":
            inner = self._run(prefix + "submodule", module.submodule, x)
            x = torch.cat([x, inner], dim=1)
        elif kind == "UNet":
            x = self._run(prefix + "model", module.model, x)
        else:
            x = module(x)
        if name == self.layer:
            x = self.tap(x)
            self.captured = x
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.captured = None
        out = self._run("", self.network, x)
        if self.captured is None:
            raise SaliencyError(f"block {self.layer!r} was not reached by the forward pass")
        return out


def gradcam_layer(network: Any) -> str:
    """The Grad-CAM block: the last decoder block before the output layer (in a MONAI UNet the
    last block inside the outermost ``SkipConnection``, at half the input resolution: 4 mm).

    Why there, and not the bottleneck (Seg-Grad-CAM's choice): Grad-CAM's own recipe is the last
    convolutional features, the best compromise between what the network made of the image and
    where; the bottleneck's 1/8 grid (16 mm voxels) put the map's peak inside the lesion on 1 of 5
    held-out brains in a first trial against 5 of 5 here (docs/saliency.md), and the backward pass
    from the output stops one block early (the map costs little more than a forward pass).
    Raises ``SaliencyError`` for networks not composed of MONAI's containers.
    """
    if _kind(network) != "UNet":
        raise SaliencyError(
            f"Grad-CAM in 3D needs a MONAI UNet; this network is a {_kind(network)} "
            "(integrated gradients works for every 3D model)"
        )
    for name, module in network.named_modules():
        if _kind(module) == "SkipConnection":
            inner = module.submodule
            children = (
                [c for c, _ in inner.named_children()] if _kind(inner) == "Sequential" else []
            )
            if children:
                return f"{name}.submodule.{children[-1]}"
            break
    raise SaliencyError("the UNet has no decoder block inside a skip connection")


# --- the target ------------------------------------------------------------------------------


def lesion_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """Per voxel: log P(any lesion class) - log P(background), from (N, C, D, H, W) logits."""
    return torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]


def target_region(
    read_mask: np.ndarray | None, lesion_p: np.ndarray | None
) -> tuple[np.ndarray, str]:
    """The voxels whose lesion score is explained, and in words which they are: the read's mask,
    or without one the ``FALLBACK_REGION_VOXELS`` most probable voxels of ``lesion_p``."""
    if read_mask is not None and read_mask.any():
        return read_mask.astype(
            bool
        ), f"the lesion mask of the read ({int(read_mask.sum())} voxels)"
    if lesion_p is None:
        raise ValueError("no lesion mask and no lesion probabilities to choose a target from")
    flat = np.argsort(lesion_p.ravel(), kind="stable")[-FALLBACK_REGION_VOXELS:]
    region = np.zeros(lesion_p.size, bool)
    region[flat] = True
    return (
        region.reshape(lesion_p.shape),
        f"no lesion was found: the {FALLBACK_REGION_VOXELS} voxels of highest lesion probability",
    )


def _fit(prepared: torch.Tensor, window: tuple[int, int, int]) -> tuple[torch.Tensor, tuple]:
    """The prepared (1, D, H, W) volume as a (1, 1, *window) batch, padded with zeros (as the
    sliding-window read pads), and the slices that cut the volume back out.

    A volume larger than the window is refused: a map of one window would hide the rest.
    """
    shape = tuple(int(s) for s in prepared.shape[-3:])
    if any(s > w for s, w in zip(shape, window, strict=True)):
        raise SaliencyError(
            f"the volume ({' x '.join(map(str, shape))} voxels on the model's grid) is larger "
            f"than the model's window ({' x '.join(map(str, window))}): 3D saliency covers one window"
        )
    before = [(w - s) // 2 for s, w in zip(shape, window, strict=True)]
    pad: list[int] = []
    for s, w, b in reversed(list(zip(shape, window, before, strict=True))):
        pad += [b, w - s - b]
    x = F.pad(prepared[None].float(), pad)
    cut = tuple(slice(b, b + s) for b, s in zip(before, shape, strict=True))
    return x, cut


def _score_fn(network: Callable, region: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch -> the lesion log-odds summed over ``region`` (one value per item)."""

    def score(batch: torch.Tensor) -> torch.Tensor:
        odds = lesion_log_odds(network(batch))
        return (odds * region).flatten(1).sum(1)

    return score


# --- the attribution -------------------------------------------------------------------------


def attribute_volume(
    network: Any,
    x: torch.Tensor,
    region: torch.Tensor,
    method: str,
    params: VolumeParams,
) -> tuple[torch.Tensor, float | None, float | None, int]:
    """The raw map (D, H, W) on the window for ``x`` (1, 1, *window) explaining ``region``'s
    score; with IG also the convergence delta, its relative size, and the steps used."""
    # lazy: captum is imported only when a map is made (start-up time of the CLI)
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

    if method == "gradcam":
        tap = torch.nn.Identity()
        unrolled = Unrolled(network, gradcam_layer(network), tap)
        gc = LayerGradCam(_score_fn(unrolled, region), tap)
        with torch.enable_grad():
            attr = gc.attribute(x, relu_attributions=True)
        up = LayerAttribution.interpolate(attr, tuple(x.shape[-3:]), interpolate_mode="trilinear")
        return up[0, 0].detach(), None, None, 0
    if method != "integrated_gradients":
        raise SaliencyError(
            f"unknown method '{method}' for a volume; choose one of {', '.join(METHODS_3D)}"
        )
    baseline = torch.zeros_like(x) if params.baseline == "black" else x.mean().expand_as(x)
    score = _score_fn(network, region)
    steps = params.n_steps
    while True:
        ig = IntegratedGradients(score)
        with torch.enable_grad():
            attr, delta = ig.attribute(
                x,
                baselines=baseline,
                n_steps=steps,
                method="gausslegendre",
                internal_batch_size=params.internal_batch_size,
                return_convergence_delta=True,
            )
        with torch.no_grad():
            change = float((score(x) - score(baseline.contiguous())).abs().sum())
        d = float(delta.abs().sum())
        rel = d / max(change, 1e-6)
        if rel <= IG_MAX_RELATIVE_DELTA or steps * 2 > IG_MAX_STEPS_3D:
            return attr[0, 0].detach(), d, rel, steps
        steps *= 2


# --- the explanation ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VolumeExplanation:
    """A 3D map on the model's grid with what a reader needs to judge it."""

    method: str
    attribution: np.ndarray  # float32 (D, H, W), model grid; higher: more evidence for the lesion
    image: np.ndarray  # the prepared volume the model read (D, H, W), same grid
    affine_ras: np.ndarray  # the model grid's voxel -> RAS mm
    region: np.ndarray  # bool, the explained voxels
    target: str  # the region, in words
    peak_voxel: tuple[int, int, int]
    latency_ms: float
    params: dict
    convergence_delta: float | None = None
    relative_delta: float | None = None
    approximate: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def peak_mm(self) -> tuple[float, float, float]:
        p = self.affine_ras @ np.array([*self.peak_voxel, 1.0])
        return (round(float(p[0]), 1), round(float(p[1]), 1), round(float(p[2]), 1))

    @property
    def empty(self) -> bool:
        """No voxel with positive evidence (Grad-CAM can be zero everywhere after its ReLU, when
        the layer's evidence for the lesion is all negative): then there is no peak to show."""
        return not bool((self.attribution > 0).any())

    @property
    def peak_in_region(self) -> bool:
        return not self.empty and bool(self.region[self.peak_voxel])

    def to_nifti(self) -> Any:
        """The map as a ``nibabel.Nifti1Image`` (float32, the model grid's RAS affine): opens in
        any NIfTI viewer (NiiVue, 3D Slicer, ITK-SNAP) over the series or the read's mask."""
        # lazy: nibabel only when a map is written
        import nibabel as nib

        img = nib.Nifti1Image(self.attribution.astype(np.float32), self.affine_ras)
        img.header.set_xyzt_units("mm")
        return img

    def peak_slice(self) -> tuple[np.ndarray, np.ndarray]:
        """The slice (first grid axis: axial for the built-in model's SPL grid, anterior up,
        the patient's left on the right) through the map's peak: (uint8 display image, map)."""
        k = self.peak_voxel[0]
        shown = (np.clip(self.image[k], 0.0, 1.0) * 255).round().astype(np.uint8)
        return shown, self.attribution[k]

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "method": self.method,
            "method_title": METHOD_TITLES.get(self.method, self.method),
            "target": self.target,
            "grid_shape": list(self.attribution.shape),
            "peak_voxel": list(self.peak_voxel),
            "peak_ras_mm": list(self.peak_mm),
            "peak_in_target_region": self.peak_in_region,
            "empty_map": self.empty,
            "latency_ms": round(self.latency_ms, 1),
            "params": self.params,
        }
        if self.convergence_delta is not None:
            out["convergence_delta"] = round(self.convergence_delta, 4)
            out["relative_convergence_delta"] = round(float(self.relative_delta or 0.0), 4)
            out["approximate"] = self.approximate
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def explain_prepared(
    network: Any,
    prepared: torch.Tensor,
    window: tuple[int, int, int],
    region: np.ndarray,
    method: str,
    params: VolumeParams | None = None,
) -> tuple[np.ndarray, float | None, float | None, int, float]:
    """The map of ``prepared`` (1, D, H, W) on its own grid; delta, relative delta, steps, ms."""
    params = params or VolumeParams()
    t0 = time.perf_counter()
    x, cut = _fit(prepared, window)
    reg = torch.zeros(x.shape[-3:], dtype=torch.float32)
    reg[cut] = torch.from_numpy(np.asarray(region, np.float32))
    attr, delta, rel, steps = attribute_volume(network, x, reg[None], method, params)
    out = attr[cut].numpy().astype(np.float32)
    return out, delta, rel, steps, 1e3 * (time.perf_counter() - t0)


def _peak(attribution: np.ndarray) -> tuple[int, int, int]:
    idx = np.unravel_index(int(np.argmax(attribution)), attribution.shape)
    return (int(idx[0]), int(idx[1]), int(idx[2]))


def explain_volume(
    volume: Volume,
    bundle: Bundle,
    method: str = "gradcam",
    params: VolumeParams | None = None,
) -> tuple[VolumeRead, VolumeExplanation | None]:
    """The read of ``volume`` and, unless the input guard refused it, the map of ``method``.

    The read is ``segment.read_volume``'s (the same guard, mask and measures as ``predict``); a
    refused read has no map: the model was not asked, so there is nothing to explain.
    """
    # lazy: MONAI and the 3D read only where a volume is explained
    from models.volumes.segment import prepare, read_volume, segment

    if method not in METHODS_3D:
        raise SaliencyError(
            f"unknown method '{method}' for a volume; choose one of {', '.join(METHODS_3D)}"
        )
    params = params or VolumeParams()
    read = read_volume(volume, bundle)
    if read.refused:
        return read, None
    c = bundle.contract
    prepared, _, grid = prepare(
        volume.pixels, volume.affine_ras, axcodes=c.axcodes, spacing_mm=c.spacing_mm
    )
    if read.mask is not None and read.mask.any():
        region, words = target_region(read.mask, None)
    else:
        _, lesion_p = segment(bundle.network, prepared, c.spatial_shape)
        region, words = target_region(None, lesion_p)
    attr, delta, rel, steps, ms = explain_prepared(
        bundle.network, prepared, c.spatial_shape, region, method, params
    )
    approximate = rel is not None and rel > IG_MAX_RELATIVE_DELTA
    notes = []
    if not (attr > 0).any():
        notes.append(
            "the map holds no positive evidence (zero everywhere): it shows nothing and its "
            "'peak' is not a place"
        )
    used = params.for_method(method)
    if method == "integrated_gradients":
        used = {**used, "n_steps": steps}
        if steps != params.n_steps:
            notes.append(f"recomputed with {steps} steps (convergence delta above 5 %)")
        if approximate:
            notes.append(
                f"approximate: the convergence delta is {100 * float(rel or 0):.0f} % of the "
                f"output change after {steps} steps"
            )
    exp = VolumeExplanation(
        method, attr, prepared[0].numpy(), grid, region, words, _peak(attr), ms, used, delta, rel, approximate,
        tuple(notes),
    )  # fmt: skip
    return read, exp


def card_verdict(bundle: Bundle, method: str) -> Any:
    """The method's verdict from the bundle card's ``saliency`` section (the 2D rules,
    ``models.saliency.verdict``); "not measured" when the card has none or measured other weights."""
    # lazy: the verdict rules only where a verdict is shown
    from models.saliency.verdict import NOT_MEASURED, Verdict, verdict

    section = bundle.card.get("saliency") or {}
    if section and not saliency_measured_on(section, bundle.sha256):
        return Verdict(
            NOT_MEASURED, ("the card's saliency figures were measured on other weights",)
        )
    return verdict(bundle.card, method)


def explain_series(
    volume: Volume,
    bundle: Bundle,
    method: str = "gradcam",
    params: VolumeParams | None = None,
) -> tuple[dict, VolumeExplanation | None]:
    """``oncolens explain SERIES --json``'s object and the explanation (None when refused): the
    read (label, probability, input check, largest lesion), the map's summary and the verdict."""
    t0 = time.perf_counter()
    read, exp = explain_volume(volume, bundle, method, params)
    r = read.to_json()
    result: dict[str, Any] = {
        "kind": "volume",
        "series_instance_uid": volume.series_instance_uid,
        "modality": volume.modality,
        "model": bundle.name,
        "model_version": bundle.version,
        "method": method,
        "label": r["label"],
        "probability": r["probability"],
        "refused": r["refused"],
        "input_check": r["input_check"],
        "lesion": r["lesion"],
        "verdict": card_verdict(bundle, method).to_json(),
    }
    if exp is not None:
        result.update(exp.to_json())
    result["total_ms"] = round(1e3 * (time.perf_counter() - t0), 1)
    return result, exp
