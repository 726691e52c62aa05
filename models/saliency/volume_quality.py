"""How far a 3D saliency map can be trusted: the 2D checks (``models.saliency.quality``) in 3D.

    python -m models.saliency.volume_quality                 # print the figures of the built-in 3D model
    python -m models.saliency.volume_quality --write-card    # ... and store them in its bundle (docs/saliency.json)

Held-out brain MR volumes (``models.volumes.phantoms.brain_mr``, seed ``QUALITY_SEED_3D``, a
stream no training, guard or test volume uses), each with one metastasis of 10-36 mm and its
true mask, prepared as the model reads them. Each volume is read (``segment``), and the map
explains the read's target (``models.saliency.volume``: the lesion log-odds summed over the
read's mask). Only volumes whose lesion the read **found** are scored: the map of a missed
lesion explains another region by construction, and how often lesions are missed is the card's
sensitivity, not a property of the map. Per method:

- **pointing game in 3D**: the map's maximum voxel lies inside the true lesion mask (bootstrap
  95 % CI); a random map's hit rate is the mean mask fraction of the volume
  (``pointing_game_random``);
- **deletion / insertion against random** (Petsiuk et al. 2018): the mean lesion probability
  over the target region as voxels are set to the volume's mean (deletion) or restored into a
  blurred copy (insertion) in the map's order, against a random order; the gains' bootstrap
  intervals. The curves are sampled at ``FRACTIONS`` (denser at the start, where a good map
  removes the lesion) and integrated with the trapezoid rule over the fraction of voxels;
- **model-parameter randomisation** (Adebayo et al. 2018): Spearman correlation of absolute
  maps of the trained network and of the same TorchScript network with every convolution,
  batch norm and PReLU re-initialised (PyTorch's defaults, seed 0); fails at 0.5 or more.
  Counted on the voxels where either map is not zero: beyond the target's receptive field both
  maps are exactly 0 whatever the weights, and those shared ties alone pushed the correlation of
  integrated gradients to 0.999 (0.79 on the support; it fails either way).

The verdict is the 2D one (``models.saliency.verdict`` through ``quality.with_verdicts``):
trustworthy only when the randomisation check passes and all three localisation figures beat a
random map by their lower bounds. ``--write-card`` stores the figures in the bundle's own file
``docs/saliency.json`` (``models.volumes.bundle.SALIENCY_FILE``), with the sha256 of the weights
they were measured on; the loader shows them as the card's ``saliency`` section. Not inside
``docs/card.json``: that is what training writes, byte for byte, and a retraining dropped the
section. Deterministic: fixed seeds, two torch threads, one process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.saliency.methods import METHOD_TITLES
from models.saliency.quality import (
    POINTING_GAME_AIM,
    SANITY_THRESHOLD,
    _mean_ci,
    pixel_order,
    random_pointing_rate,
    spearman,
    with_verdicts,
)
from models.saliency.volume import (
    METHODS_3D,
    VolumeParams,
    _fit,
    explain_prepared,
    target_region,
)
from models.volumes.cards import saliency_measured_on

QUALITY_SEED_3D = 20_261_203
DEFAULT_N_3D = 8
SIZES_MM = (14.0, 36.0)
FRACTIONS = (0.0, 0.001, 0.005, 0.02, 0.1, 0.4, 1.0)  # denser where a lesion's voxels go
RANDOM_INIT_SEED = 0
INSERTION_BLUR_MM = 10.0
THREADS = 2
COMMAND = "python -m models.saliency.volume_quality --write-card"


@dataclass(frozen=True, eq=False)
class VolumeCase:
    prepared: torch.Tensor  # (1, D, H, W) on the model's grid
    truth: np.ndarray  # bool (D, H, W)
    diameter_mm: float


def phantom_cases(contract: Any, n: int, seed: int) -> list[VolumeCase]:
    """``n`` held-out brain MR volumes with one lesion each, prepared as ``contract`` reads them."""
    # lazy: the phantoms and MONAI only where the quality run or its tests need them
    from models.volumes import geometry, phantoms, segment

    out = []
    axial = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        size = float(rng.uniform(*SIZES_MM))
        vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, size), size)
        affine = geometry.LPS_TO_RAS @ geometry.affine_lps(
            np.asarray(vol.origin_lps), axial, (vol.spacing_mm[1], vol.spacing_mm[2]),
            np.array([0.0, 0.0, vol.spacing_mm[0]]),
        )  # fmt: skip
        tumour = (vol.labels == 1) | (vol.labels == 3)
        x, lab, _ = segment.prepare(
            vol.values, affine, axcodes=contract.axcodes, spacing_mm=contract.spacing_mm,
            labels=tumour,
        )  # fmt: skip
        assert lab is not None  # labels were given
        out.append(VolumeCase(x, lab[0].numpy() > 0, vol.lesion_diameter_mm))
    return out


def randomised_network(weights_path: Any, seed: int = RANDOM_INIT_SEED) -> Any:
    """A fresh copy of the TorchScript network with every layer re-initialised (PyTorch defaults).

    TorchScript keeps no constructor to call again, so the copy is loaded from the file and its
    parameters reset in place, by layer kind, as ``reset_parameters`` would: convolutions
    Kaiming-uniform (a = sqrt 5) with uniform biases, batch norm 1 / 0 with running statistics 0 /
    1, PReLU 0.25; anything else with two or more dimensions Kaiming-uniform.
    """
    net = torch.jit.load(str(weights_path), map_location="cpu").eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for _, module in net.named_modules():
            kind = str(getattr(module, "original_name", ""))
            params = dict(module.named_parameters(recurse=False))
            buffers = dict(module.named_buffers(recurse=False))
            if kind.startswith("BatchNorm") or kind.startswith("InstanceNorm"):
                if "weight" in params:
                    params["weight"].fill_(1.0)
                if "bias" in params:
                    params["bias"].zero_()
                if "running_mean" in buffers:
                    buffers["running_mean"].zero_()
                if "running_var" in buffers:
                    buffers["running_var"].fill_(1.0)
                continue
            if kind == "PReLU" and "weight" in params:
                params["weight"].fill_(0.25)
                continue
            weight = params.get("weight")
            if weight is not None and weight.dim() >= 2:
                torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
                bias = params.get("bias")
                if bias is not None:
                    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    torch.nn.init.uniform_(bias, -bound, bound)
    return net


@dataclass(frozen=True, eq=False)
class _CurveSetup:
    """One volume's deletion / insertion set-up; the curves' end points are the same for every
    order (the volume itself, all voxels filled, the blurred start), so they are computed once."""

    network: Any
    x: torch.Tensor  # (1, 1, *window)
    cut: tuple  # the volume inside the window
    region: torch.Tensor  # the explained voxels, (*window), float 0/1
    fill: torch.Tensor  # what a deleted voxel becomes
    start: torch.Tensor  # where insertion starts
    ends: tuple[float, float, float]  # score of x, of all filled, of the start

    def score(self, batch: torch.Tensor) -> float:
        with torch.inference_mode():
            p = torch.softmax(self.network(batch), dim=1)[0, 1:].sum(0)
        return float((p * self.region).sum() / self.region.sum())

    def curves(self, order: np.ndarray) -> tuple[float, float]:
        """Deletion and insertion AUC of the mean lesion probability over the region when the
        volume's voxels are changed in ``order`` (first changed first)."""
        shape = tuple(s.stop - s.start for s in self.cut)
        n = int(np.prod(shape))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        rank_t = torch.from_numpy(rank.reshape(shape))
        whole, filled, blurred = self.ends
        deletion, insertion = [whole], [blurred]
        for f in FRACTIONS[1:-1]:
            changed = torch.zeros(self.x.shape[-3:], dtype=torch.bool)
            changed[self.cut] = rank_t < round(f * n)
            deletion.append(self.score(torch.where(changed, self.fill, self.x)))
            insertion.append(self.score(torch.where(changed, self.x, self.start)))
        deletion.append(filled)
        insertion.append(whole)
        frac = np.asarray(FRACTIONS)
        return float(np.trapezoid(deletion, frac)), float(np.trapezoid(insertion, frac))


def _setup(
    network: Any, prepared: torch.Tensor, window: tuple, region: np.ndarray, spacing
) -> _CurveSetup:
    x, cut = _fit(prepared, window)
    reg = torch.zeros(x.shape[-3:])
    reg[cut] = torch.from_numpy(region.astype(np.float32))
    fill = x.mean().expand_as(x)
    start = _blur(x, INSERTION_BLUR_MM / float(np.mean(spacing)))
    probe = _CurveSetup(network, x, cut, reg, fill, start, (0.0, 0.0, 0.0))
    ends = (probe.score(x), probe.score(fill.contiguous()), probe.score(start))
    return _CurveSetup(network, x, cut, reg, fill, start, ends)


def _blur(x: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    # lazy: scipy's filter only for the insertion start
    from scipy import ndimage

    return torch.from_numpy(
        ndimage.gaussian_filter(x.numpy(), (0, 0, sigma_vox, sigma_vox, sigma_vox)).astype(
            np.float32
        )
    )


def evaluate(
    bundle: Any,
    cases: list[VolumeCase],
    methods: tuple[str, ...] = METHODS_3D,
    params: VolumeParams | None = None,
    seed: int = QUALITY_SEED_3D,
    log=None,
) -> dict:
    """Every method's figures on ``cases`` for ``bundle`` (a ``models.volumes.bundle.Bundle``)."""
    # lazy: MONAI's sliding window and the measures only here
    from models.volumes.segment import measure, segment

    params = params or VolumeParams()
    c = bundle.contract
    net = bundle.network
    random_net = randomised_network(bundle.root / "models" / "model.ts")
    rng = np.random.default_rng(seed)
    per: dict[str, dict[str, list]] = {
        m: {k: [] for k in ("hit", "empty", "del", "ins", "rho", "rho_all", "ms", "rel")}
        for m in methods
    }
    rand_del, rand_ins, masks = [], [], []
    found = 0
    for i, case in enumerate(cases):
        t0 = time.perf_counter()
        mask, lesion_p = segment(net, case.prepared, c.spatial_shape)
        mask, _ = measure(mask, lesion_p, c.spacing_mm, bundle.min_probability)
        if not (mask & case.truth).any():
            if log:
                log(f"[{i}] {case.diameter_mm:.0f} mm: lesion not found by the read, not scored")
            continue
        found += 1
        masks.append(case.truth)
        region, _ = target_region(mask, None)
        setup = _setup(net, case.prepared, c.spatial_shape, region, c.spacing_mm)
        d, s = setup.curves(rng.permutation(int(region.size)))
        rand_del.append(d)
        rand_ins.append(s)
        for m in methods:
            attr, _, rel, _, ms = explain_prepared(
                net, case.prepared, c.spatial_shape, region, m, params
            )
            peak = np.unravel_index(int(np.argmax(attr)), attr.shape)
            per[m]["hit"].append(bool(case.truth[peak]) and bool((attr > 0).any()))
            per[m]["empty"].append(not bool((attr > 0).any()))
            d, s = setup.curves(pixel_order(attr, rng))
            per[m]["del"].append(d)
            per[m]["ins"].append(s)
            per[m]["ms"].append(ms)
            if rel is not None:
                per[m]["rel"].append(rel)
            rand_attr, *_ = explain_prepared(
                random_net, case.prepared, c.spatial_shape, region, m, params
            )
            # on the voxels where either map is not zero: outside the target's receptive field
            # both maps are exactly 0 (the architecture's, not the weights'), and those shared
            # ties alone gave integrated gradients a correlation of 0.999 in a first trial
            support = (attr != 0) | (rand_attr != 0)
            per[m]["rho"].append(spearman(np.abs(attr[support]), np.abs(rand_attr[support])))
            per[m]["rho_all"].append(spearman(np.abs(attr), np.abs(rand_attr)))
        if log:
            log(
                f"[{i}] {case.diameter_mm:.0f} mm: "
                + ", ".join(f"{m} hit {per[m]['hit'][-1]}" for m in methods)
                + f" ({time.perf_counter() - t0:.0f} s)"
            )
    if not found:
        raise ValueError("the read found none of the held-out lesions: nothing to score")
    results = {}
    for m in methods:
        r = per[m]
        rho = _mean_ci(np.array(r["rho"]))
        entry: dict[str, Any] = {
            "title": METHOD_TITLES[m],
            "n_images": len(r["hit"]),
            "pointing_game": _mean_ci(np.array(r["hit"], dtype=float)),
            "n_empty_maps": int(sum(r["empty"])),  # no positive evidence: counted as misses
            "deletion_auc": round(float(np.mean(r["del"])), 4),
            "deletion_auc_random": round(float(np.mean(rand_del)), 4),
            "deletion_gain": _mean_ci(np.array(rand_del) - np.array(r["del"])),
            "insertion_auc": round(float(np.mean(r["ins"])), 4),
            "insertion_auc_random": round(float(np.mean(rand_ins)), 4),
            "insertion_gain": _mean_ci(np.array(r["ins"]) - np.array(rand_ins)),
            "sanity": {
                "spearman_abs": rho,
                "spearman_abs_all_voxels": round(float(np.mean(r["rho_all"])), 4),
                "on": "voxels where either map is not zero",
                "threshold": SANITY_THRESHOLD,
                "passed": bool(rho["value"] < SANITY_THRESHOLD),
            },
            "params": params.for_method(m),
            "latency_ms": {
                "median": round(float(np.median(r["ms"])), 1),
                "p95": round(float(np.percentile(r["ms"], 95)), 1),
                "n_images": len(r["ms"]),
                "torch_threads": torch.get_num_threads(),
                "note": "timed inside the quality run; python -m bench.bench_volumes times it alone",
            },
        }
        if r["rel"]:
            entry["relative_convergence_delta"] = round(float(np.median(r["rel"])), 4)
        results[m] = entry
    return {
        "results": results,
        "found": found,
        "masks": masks,
    }


def saliency_quality_3d(
    bundle: Any, n: int = DEFAULT_N_3D, seed: int = QUALITY_SEED_3D, log=None
) -> dict:
    """The card's ``saliency`` section for a 3D bundle (see the module docstring)."""
    started = time.perf_counter()
    cases = phantom_cases(bundle.contract, n, seed)
    out = evaluate(bundle, cases, seed=seed, log=log)
    section = {
        "model": bundle.name,
        "model_version": bundle.version,
        "weights_sha256": bundle.sha256,
        "kind": "volume",
        "data": f"{out['found']} of {n} held-out brain MR volumes with one lesion of "
        f"{SIZES_MM[0]:.0f}-{SIZES_MM[1]:.0f} mm (seed {seed}) whose lesion the read found",
        "n_phantoms": n,
        "n_found": out["found"],
        "seed": seed,
        "target": "the lesion log-odds summed over the read's lesion mask "
        "(models.saliency.volume); curves: the mean lesion probability over that mask",
        "deletion_fractions": list(FRACTIONS),
        "sanity_threshold": SANITY_THRESHOLD,
        "pointing_game_aim": POINTING_GAME_AIM,
        "sanity_randomisation": "every convolution, batch norm and PReLU of the TorchScript "
        f"network re-initialised (PyTorch defaults), seed {RANDOM_INIT_SEED}; Spearman of absolute "
        "maps on the voxels where either is not zero",
        "methods": out["results"],
        "torch_threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 1),
        "seconds": round(time.perf_counter() - started, 1),
        "command": COMMAND,
    }
    return with_verdicts(section, random_pointing_rate(out["masks"]))


def write_saliency_3d(root: Path, quality: dict) -> Path:
    """Write (or replace) the bundle's ``docs/saliency.json``, one-space indent as ``train3d``
    writes the card; refused when the figures were measured on other weights than the bundle's
    ``models/model.ts``. The card is left as training wrote it (an older card's own ``saliency``
    section is taken out, so there is one place for the figures)."""
    # lazy: the bundle module's names only when writing
    from models.volumes.bundle import SALIENCY_FILE, sha256_of

    weights = sha256_of(root / "models" / "model.ts")
    if not saliency_measured_on(quality, weights):
        raise ValueError(f"{root}: the figures were measured on other weights than models/model.ts")
    card_path = root / "docs" / "card.json"
    if card_path.is_file():
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.pop("saliency", None) is not None:
            card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    out = root / SALIENCY_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(quality, indent=1) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    # lazy: the bundle loader (torch.jit) only when the command runs
    from models.volumes.bundle import BUILTIN, load_bundle

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=BUILTIN, help="a 3D bundle (default: the built-in one)")
    parser.add_argument("--n", type=int, default=DEFAULT_N_3D, help="held-out volumes generated")
    parser.add_argument("--seed", type=int, default=QUALITY_SEED_3D)
    parser.add_argument(
        "--write-card",
        action="store_true",
        help="store the figures in the bundle's docs/saliency.json (shown with its card)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    bundle = load_bundle(args.model)
    q = saliency_quality_3d(
        bundle, args.n, args.seed, log=lambda m: print(m, file=sys.stderr, flush=True)
    )
    if args.write_card:
        written = write_saliency_3d(bundle.root, q)
        print(f"wrote the 3D saliency figures into {written} ({q['seconds']} s)", file=sys.stderr)
    print(json.dumps(q, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
