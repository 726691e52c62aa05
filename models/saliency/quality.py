"""How far a saliency map can be trusted, measured on held-out phantoms whose lesion masks are known.

    python -m models.saliency.quality                    # print the figures of every installed model
    python -m models.saliency.quality --write-cards      # ... and store them in each model card
    python -m models.saliency.quality --write-cards --method integrated_gradients  # one method's
    python -m models.saliency.quality --latency-only [--method M]  # re-time (those) methods: times only
    oncolens validate saliency --json                    # the same figures from the CLI

Per model and method, on the lesion-bearing images of a fresh phantom set
(seeded, never used in training or calibration), explaining the true class:

- pointing game: the map's maximum falls inside the true lesion mask
  (fraction of images, bootstrap 95 % CI);
- deletion / insertion (Petsiuk et al. 2018): the calibrated probability of the
  class as pixels are removed (replaced by the image mean) or inserted (into a
  blurred copy) in the map's order, area under the curve, against the same
  curves in a random order; a useful map deletes faster and inserts faster;
- Captum ``infidelity`` (Gaussian perturbations, normalised, so methods with
  different scales compare) and ``sensitivity_max`` (L-inf ball of radius 0.02
  on the [0, 1] image; relative change of the map);
- model-randomisation sanity check (Adebayo et al. 2018): Spearman rank
  correlation between the absolute maps of the trained network and of the same
  architecture with freshly initialised weights. A method whose map barely
  changes when the weights are thrown away is showing the image, not the model:
  it fails when the mean correlation is at or above ``SANITY_THRESHOLD``.

Why a fixed threshold of 0.5, chosen before looking at the figures: Adebayo et
al. show maps that pass falling to rank correlations near 0-0.3 after full
randomisation and maps that fail (guided backprop, edge detectors) staying
around 0.6-1.0. Half the rank order still shared with a network that learned
nothing is too much for a map a clinician is asked to trust.

Latency is timed apart from the quality loops (``measure_latency``): one map
at a time after warm-up, with torch's default threads, as the Imaging page
computes it; the quality loops share the cores with the metrics and run one
thread per model to do both models at once, so their own timings say nothing
about the page. Re-time on a quiet machine with ``--latency-only`` whenever
only the speed changed (the maps' parameters must be unchanged, it checks).

Verdict (``models.saliency.verdict``): a method is recommended only when it passes the
randomisation check AND localises better than a random map (pointing game above the random
hit rate ``pointing_game_random``, the mean lesion area fraction; deletion and insertion gains
over a random order above 0, all by their bootstrap lower bounds). ``--verdicts-only`` adds
the random hit rate and the verdicts to the cards' existing figures without re-measuring them.

Why images with a lesion only: on an image without one there is no ground truth
to point at; the map of "no tumour" is shown but not scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from models.inference.network import LesionNet
from models.inference.preprocess import to_tensor
from models.inference.tasks import TASKS
from models.saliency.methods import (
    METHOD_TITLES,
    METHODS,
    SaliencyParams,
    attribute,
    explain,
    gaussian_blur,
    input_spacing_mm,
)
from models.training import evaluation

SANITY_THRESHOLD = 0.5
POINTING_GAME_AIM = 0.8
QUALITY_SEED = 20_261_125  # the same fresh seed as `oncolens validate imaging`
DEFAULT_N = 48  # phantoms generated per model; those with a lesion are scored
RANDOM_INIT_SEED = 0
# Methods that re-run the model hundreds of times per map: max-sensitivity on 4 images, not 8 (it
# re-explains each image 4 times); reported as ``n_sensitivity``.
SLOW_METHODS = ("occlusion", "smoothgrad")
LATENCY_IMAGES = 12  # lesion-bearing images timed per method (after LATENCY_WARMUP untimed maps)
LATENCY_WARMUP = 2


@dataclass(frozen=True)
class QualityConfig:
    n: int = DEFAULT_N
    seed: int = QUALITY_SEED
    n_sensitivity: int = 8  # images on which sensitivity_max is estimated (it re-explains each)
    sensitivity_samples: int = 4
    infidelity_samples: int = 16
    infidelity_noise_sd: float = 0.05
    steps: int = 32  # deletion / insertion steps
    insertion_blur_mm: float = 10.0


@dataclass(frozen=True, eq=False)
class LabelledSet:
    """Images (modality units), class indices, boolean lesion masks and (row, col) spacings in mm."""

    images: list[np.ndarray]
    labels: np.ndarray
    masks: list[np.ndarray]
    spacings: list[tuple[float, float] | None]
    description: str


def phantom_set(task_name: str, n: int, seed: int) -> LabelledSet:
    """The demo models' held-out set: fresh phantoms with their exact masks, lesion-bearing ones only."""
    # lazy: at the top, importing models.saliency.quality took 4936 ms instead of 3137 ms
    from models.training import synthetic as phantoms

    task = TASKS[task_name]
    items = (
        phantoms.sample_mammograms(n, seed)
        if task_name == "mammography"
        else phantoms.sample_brain(n, seed)
    )
    keep = [p for p in items if p.mask.any()]
    return LabelledSet(
        images=[p.pixels.astype(np.float32) * p.rescale_slope + p.rescale_intercept for p in keep],
        labels=np.array([task.labels.index(p.label) for p in keep], dtype=np.int64),
        masks=[p.mask for p in keep],
        spacings=[p.spacing_mm for p in keep],
        description=f"{len(keep)} lesion-bearing of {n} fresh {task_name} phantoms (seed {seed})",
    )


# --- the metrics, each a plain function of arrays -------------------------------------------


def random_pointing_rate(masks: list[np.ndarray]) -> float:
    """The pointing-game hit rate of a map whose maximum falls on a random pixel: mean mask fraction."""
    return round(float(np.mean([np.asarray(m, dtype=bool).mean() for m in masks])), 4)


def with_verdicts(section: dict, pointing_random: float) -> dict:
    """The card's saliency section with the random hit rate, each method's verdict, and
    ``recommended`` only for trustworthy methods that also reach the pointing-game aim."""
    # lazy: only the card writers need the verdict rules here (import cost of this module)
    from models.saliency.verdict import verdict

    out = {**section, "pointing_game_random": pointing_random}
    methods = {}
    for name, entry in (section.get("methods") or {}).items():
        v = verdict({"saliency": {**out, "methods": {name: entry}}}, name)
        methods[name] = {
            **entry,
            "verdict": v.to_json(),
            "recommended": bool(
                v.trustworthy and entry["pointing_game"]["value"] >= out.get("pointing_game_aim", 0)
            ),
        }
    out["methods"] = methods
    out["recommended"] = [m for m, r in methods.items() if r["recommended"]]
    return out


def pointing_hit(attribution: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the map's maximum (at the mask's resolution) lies inside the mask."""
    r, c = np.unravel_index(int(np.argmax(attribution)), attribution.shape)
    return bool(mask[r, c])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two maps; 0 when either is constant (nothing ranked in common)."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def pixel_order(attribution: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices from the highest attribution down; ties broken at random, not in raster order."""
    flat = np.ravel(attribution)
    return np.lexsort((rng.random(flat.size), -flat))


def deletion_insertion(
    prob_of_target,
    x: torch.Tensor,
    order: np.ndarray,
    deleted: torch.Tensor,
    start: torch.Tensor,
    steps: int,
) -> tuple[float, float]:
    """AUC of the deletion and insertion curves (probability of the target vs fraction of pixels changed).

    ``x``, ``deleted`` (what a removed pixel becomes) and ``start`` (the image
    insertion starts from) are (1, 1, H, W); ``prob_of_target`` maps a batch to
    the target's probabilities.
    """
    n = order.size
    counts = np.linspace(0, n, steps + 1).round().astype(int)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    rank_t = torch.from_numpy(rank).view(1, 1, *x.shape[-2:])
    changed = (
        torch.stack([rank_t < k for k in counts]).squeeze(1).to(x.device)
    )  # (steps+1, 1, H, W)
    deletion = torch.where(changed, deleted, x)
    insertion = torch.where(changed, x, start)
    with torch.no_grad():
        p = prob_of_target(torch.cat([deletion, insertion])).cpu().numpy()
    frac = counts / n
    return float(np.trapezoid(p[: steps + 1], frac)), float(np.trapezoid(p[steps + 1 :], frac))


def randomised_copy(network: LesionNet, seed: int = RANDOM_INIT_SEED) -> LesionNet:
    """The same architecture with freshly initialised weights (the Adebayo et al. model randomisation)."""
    head = network.classifier[-1]
    assert isinstance(head, nn.Linear)  # LesionNet's classifier ends in its class layer
    n_classes = head.out_features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(network)(n_classes)
    device = next(network.parameters()).device
    return fresh.to(device).eval()


def _infidelity(network, x, attr, target: int, cfg: QualityConfig) -> float:
    # lazy: captum is imported only when this is used (start-up time)
    from captum.metrics import infidelity

    def perturb(inputs):
        noise = torch.randn_like(inputs) * cfg.infidelity_noise_sd
        return noise, inputs - noise

    return float(
        infidelity(
            network.class_logits,
            perturb,
            x,
            attr,
            target=target,
            n_perturb_samples=cfg.infidelity_samples,
            normalize=True,
        )[0]
    )


def _sensitivity(
    network, x, target: int, method: str, params: SaliencyParams, per_px, cfg: QualityConfig
) -> float:
    # lazy: captum is imported only when this is used (start-up time)
    from captum.metrics import sensitivity_max

    def explanation(inputs, target):
        if isinstance(inputs, tuple):  # Captum hands inputs over as a tuple
            return (attribute(network, inputs[0], target, method, params, per_px)[0],)
        return attribute(network, inputs, target, method, params, per_px)[0]

    return float(
        sensitivity_max(
            explanation,
            x,
            n_perturb_samples=cfg.sensitivity_samples,
            perturb_radius=0.02,
            target=target,
        )[0]
    )


def _summary(values: list[float]) -> float | None:
    return None if not values else round(float(np.median(values)), 4)


def _mean_ci(values: np.ndarray) -> dict:
    return evaluation.bootstrap(np.mean, np.asarray(values, dtype=float)).as_dict()


def evaluate_method(
    model, data: LabelledSet, method: str, params: SaliencyParams, cfg: QualityConfig
) -> dict:
    """Every figure of one method on one labelled set (see the module docstring)."""
    network = model.network
    random_net = randomised_copy(network)
    rng = np.random.default_rng(cfg.seed)
    hits, deltas, rel_deltas, infid, sens, rho_abs, rho_signed = [], [], [], [], [], [], []
    dele, dele_rand, ins, ins_rand = [], [], [], []

    def prob_of(target):
        return lambda batch: torch.softmax(network.class_logits(batch), dim=1)[:, target]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for i, (img, label, mask, spacing) in enumerate(
            zip(data.images, data.labels, data.masks, data.spacings, strict=True)
        ):
            target = int(label)
            x = to_tensor(img).to(model.device)
            exp = explain(
                network,
                x,
                target,
                method,
                image_shape=img.shape,
                spacing_mm=spacing,
                params=params,
                labels=model.labels,
            )
            hits.append(pointing_hit(exp.attribution, mask))
            if exp.convergence_delta is not None:
                deltas.append(exp.convergence_delta)
            if exp.relative_delta is not None:
                rel_deltas.append(exp.relative_delta)
            per_px = input_spacing_mm(img.shape, spacing, x.shape[-1])
            per_row, per_col = per_px or (1.6, 1.6)
            sigma = (cfg.insertion_blur_mm / per_row, cfg.insertion_blur_mm / per_col)
            deleted = x.mean().expand_as(x)
            start = gaussian_blur(x, sigma)
            order = pixel_order(exp.input_attribution, rng)
            d, s = deletion_insertion(prob_of(target), x, order, deleted, start, cfg.steps)
            random_order = rng.permutation(order.size)
            dr, sr = deletion_insertion(prob_of(target), x, random_order, deleted, start, cfg.steps)
            dele.append(d)
            ins.append(s)
            dele_rand.append(dr)
            ins_rand.append(sr)
            attr_t = torch.from_numpy(exp.input_attribution)[None, None].to(x.device)
            infid.append(_infidelity(network, x, attr_t, target, cfg))
            if i < (cfg.n_sensitivity if method not in SLOW_METHODS else min(cfg.n_sensitivity, 4)):
                sens.append(_sensitivity(network, x, target, method, params, per_px, cfg))
            rand_attr, _ = attribute(random_net, x, target, method, params, per_px)
            rand_map = rand_attr[0, 0].cpu().numpy()
            rho_abs.append(spearman(np.abs(exp.input_attribution), np.abs(rand_map)))
            rho_signed.append(spearman(exp.input_attribution, rand_map))
    pointing = _mean_ci(np.array(hits, dtype=float))
    rho = _mean_ci(np.array(rho_abs))
    passed = bool(rho["value"] < SANITY_THRESHOLD)
    out = {
        "title": METHOD_TITLES[method],
        "n_images": len(hits),
        "pointing_game": pointing,
        "deletion_auc": round(float(np.mean(dele)), 4),
        "deletion_auc_random": round(float(np.mean(dele_rand)), 4),
        "deletion_gain": _mean_ci(np.array(dele_rand) - np.array(dele)),
        "insertion_auc": round(float(np.mean(ins)), 4),
        "insertion_auc_random": round(float(np.mean(ins_rand)), 4),
        "insertion_gain": _mean_ci(np.array(ins) - np.array(ins_rand)),
        "infidelity": _summary(infid),
        "sensitivity_max": _summary(sens),
        "n_sensitivity": len(sens),
        "sanity": {
            "spearman_abs": rho,
            "spearman_signed": round(float(np.mean(rho_signed)), 4),
            "threshold": SANITY_THRESHOLD,
            "passed": passed,
        },
        "params": params.for_method(method),
    }
    if deltas:
        out["convergence_delta"] = _summary(deltas)
    if rel_deltas:
        out["relative_convergence_delta"] = _summary(rel_deltas)
    out["recommended"] = bool(passed and pointing["value"] >= POINTING_GAME_AIM)
    return out


def measure_latency(
    model,
    data: LabelledSet,
    method: str,
    params: SaliencyParams,
    n_images: int = LATENCY_IMAGES,
    warmup: int = LATENCY_WARMUP,
) -> dict:
    """Median and 95th percentile of one map's wall time, as the page computes it (see the module docstring)."""
    items = list(zip(data.images, data.labels, data.spacings, strict=True))
    if not items:
        raise ValueError(f"no lesion-bearing image in {data.description}: nothing to time")
    times = []
    for i in range(warmup + min(n_images, len(items))):
        img, label, spacing = items[i % len(items)] if i < warmup else items[i - warmup]
        exp = explain(
            model.network,
            to_tensor(img).to(model.device),
            int(label),
            method,
            image_shape=img.shape,
            spacing_mm=spacing,
            params=params,
            labels=model.labels,
        )
        if i >= warmup:
            times.append(exp.latency_ms)
    return {
        "median": round(float(np.median(times)), 1),
        "p95": round(float(np.percentile(times, 95)), 1),
        "n_images": len(times),
        "torch_threads": torch.get_num_threads(),
    }


def latency_update(
    model,
    section: dict,
    data: LabelledSet,
    params: SaliencyParams | None = None,
    methods: tuple[str, ...] | None = None,
) -> dict:
    """``section`` (a card's saliency figures) with every method re-timed; the maps' parameters must match.

    Raises ValueError when a method's map-changing parameters differ from ``params``: then the quality
    figures would describe other maps, and the whole measurement has to be rerun.
    """
    params = params or SaliencyParams()
    out = json.loads(json.dumps(section))
    for method, entry in out.get("methods", {}).items():
        if methods is not None and method not in methods:
            continue  # ``--method``: only those re-timed (the others keep their times)
        current = params.for_method(method)
        measured = {k: entry.get("params", {}).get(k) for k in current}
        if measured != current:
            raise ValueError(
                f"{method}: the card's figures were measured with {measured}, the default is now "
                f"{current}; rerun `python -m models.saliency.quality --write-cards`"
            )
        entry["params"] = (
            current  # drops speed-only knobs (e.g. internal_batch_size) older cards listed
        )
        entry["latency_ms"] = measure_latency(model, data, method, params)
    out["latency_command"] = "python -m models.saliency.quality --latency-only --write-cards"
    return out


def saliency_quality(
    model,
    n: int = DEFAULT_N,
    seed: int = QUALITY_SEED,
    methods: tuple[str, ...] = METHODS,
    params: SaliencyParams | None = None,
    cfg: QualityConfig | None = None,
    data: LabelledSet | None = None,
    log=None,
) -> dict:
    """All methods' figures for one ``LoadedModel`` on its held-out phantom set (or on ``data``)."""
    cfg = cfg or QualityConfig(n=n, seed=seed)
    if data is None:
        data = phantom_set(model.name, cfg.n, cfg.seed)
    if not data.images:
        raise ValueError(
            f"no lesion-bearing image in {data.description}: nothing to score (raise --n)"
        )
    params = params or SaliencyParams()
    started = time.perf_counter()
    results = {}
    for method in methods:
        t0 = time.perf_counter()
        results[method] = evaluate_method(model, data, method, params, cfg)
        results[method]["latency_ms"] = measure_latency(model, data, method, params)
        if log:
            log(f"[{model.name}] {method}: {time.perf_counter() - t0:.1f} s")
    section = {
        "model": model.name,
        "model_version": model.version,
        "weights_sha256": model.card.get("weights", {}).get("sha256"),
        "data": data.description,
        "n_phantoms": cfg.n,
        "seed": cfg.seed,
        "target": "the true class of each lesion-bearing image",
        "sanity_threshold": SANITY_THRESHOLD,
        "pointing_game_aim": POINTING_GAME_AIM,
        "sanity_randomisation": "full re-initialisation of every layer (PyTorch defaults), seed "
        f"{RANDOM_INIT_SEED}; Spearman of absolute maps at the network input",
        "recommended": [m for m, r in results.items() if r["recommended"]],
        "methods": results,
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
        "command": f"python -m models.saliency.quality --write-cards --n {cfg.n} --seed {cfg.seed}",
    }
    return with_verdicts(section, random_pointing_rate(data.masks))


def merge_methods(section: dict | None, measured: dict, methods: tuple[str, ...]) -> dict:
    """The card's saliency ``section`` with ``methods``' figures replaced by ``measured`` (a
    ``saliency_quality`` of those methods alone), the verdicts and the recommendation redone.

    Why: a change to one method (integrated gradients' path rule, issue 23) needs that method's
    figures re-measured, not the hour of occlusion and SmoothGrad whose maps did not change. Only
    figures of the same phantoms (count and seed) and weights are merged; each merged method
    keeps the command that measured it.
    """
    if not section:
        raise ValueError("no saliency figures to add to; run --write-cards without --method first")
    for key in ("n_phantoms", "seed", "weights_sha256"):
        if section.get(key) != measured.get(key):
            raise ValueError(
                f"the card's figures have {key} {section.get(key)}, these {measured.get(key)}: "
                "rerun --write-cards without --method"
            )
    command = f"{measured['command']} " + " ".join(f"--method {m}" for m in methods)
    merged = {**section, "methods": dict(section.get("methods") or {})}
    for method in methods:
        merged["methods"][method] = {
            **measured["methods"][method],
            "command": command,
            "seconds": measured["seconds"],
        }
    return with_verdicts(merged, measured["pointing_game_random"])


def write_card(card_path: Path, quality: dict) -> None:
    """Add (or replace) the card's ``saliency`` section; every other field is kept as it was."""
    card = json.loads(card_path.read_text())
    if quality.get("weights_sha256") != card.get("weights", {}).get("sha256"):
        raise ValueError(f"{card_path}: the figures were measured on other weights than the card's")
    card["saliency"] = quality
    card_path.write_text(json.dumps(card, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    from models.inference.registry import (  # lazy: at the top, importing models.saliency.quality took 4936 ms instead of 3137 ms
        available_models,
        find_model_files,
        load_model,
    )

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", action="append", help="only this model (repeatable); default: all installed"
    )
    parser.add_argument(
        "--method", action="append", choices=METHODS, help="only this method (repeatable)"
    )
    parser.add_argument(
        "--n", type=int, default=DEFAULT_N, help="phantoms per model (lesion-bearing ones scored)"
    )
    parser.add_argument("--seed", type=int, default=QUALITY_SEED)
    parser.add_argument(
        "--write-cards", action="store_true", help="store the figures in each model card"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="re-time every method of the cards' figures (quiet machine, default threads); "
        "with --write-cards, update only the times in the cards",
    )
    parser.add_argument(
        "--verdicts-only",
        action="store_true",
        help="add the random pointing rate and each method's verdict to the cards' figures "
        "(seconds; the figures themselves are kept)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.model or available_models()
    methods = tuple(args.method or METHODS)
    if args.write_cards and methods != METHODS and args.verdicts_only:
        parser.error("--verdicts-only takes every method (leave out --method)")
    out = {}
    for name in names:
        if args.verdicts_only:
            _, card = find_model_files(name)
            section = json.loads(card.read_text()).get("saliency")
            if not section:
                parser.error(f"{card} has no saliency figures; run --write-cards first")
            data = phantom_set(name, section["n_phantoms"], section["seed"])
            q = with_verdicts(section, random_pointing_rate(data.masks))
            out[name] = {m: r["verdict"] for m, r in q["methods"].items()}
            if args.write_cards:
                write_card(card, q)
            continue
        model = load_model(name, device="cpu")
        if args.latency_only:
            _, card = find_model_files(name)
            section = json.loads(card.read_text()).get("saliency")
            if not section:
                parser.error(f"{card} has no saliency figures to re-time; run --write-cards first")
            data = phantom_set(name, section["n_phantoms"], section["seed"])
            try:
                q = latency_update(model, section, data, methods=methods)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            out[name] = {m: r["latency_ms"] for m, r in q["methods"].items()}
            if args.write_cards:
                write_card(card, q)
                print(f"wrote the re-timed figures into {card}", file=sys.stderr)
            continue
        q = saliency_quality(
            model,
            n=args.n,
            seed=args.seed,
            methods=methods,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
        out[name] = q
        if args.write_cards:
            _, card = find_model_files(name)
            if methods != METHODS:
                try:
                    q = merge_methods(json.loads(card.read_text()).get("saliency"), q, methods)
                except ValueError as exc:
                    print(f"error: {card}: {exc}", file=sys.stderr)
                    return 2
            write_card(card, q)
            print(f"wrote the saliency figures into {card}", file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
