"""Saliency latency per model and method at the network's input size, and how IG's steps trade time for accuracy.

One image at a time, after warm-up, as the Imaging page and ``oncolens explain``
compute them (map at the input, upsampled to the image). Integrated gradients
is timed batched (``internal_batch_size`` steps per pass, the default), with
all steps in one pass and unbatched (one step per pass), always on the folded
channels-last copy ``saliency.gradient_network``, and swept over first-pass step counts with the median
relative convergence delta |sum(attr) - (f(x) - f(baseline))| / |f(x) - f(baseline)| after the
panel rule's refining (``saliency.ig_path``) and the gradient evaluations it spent.
Targets (issue 4, 2 cores): Grad-CAM <= 30 ms, integrated gradients <= 500 ms,
occlusion on the interactive path only under 2 s.

    python -m bench.bench_saliency [--n 12]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from models.inference.preprocess import to_tensor
from models.inference.registry import available_models, load_model
from models.saliency import methods as saliency
from models.saliency.quality import phantom_set

TARGETS_MS = {"gradcam": 30, "integrated_gradients": 500, "occlusion": 2000}


def _time(
    model, data, method: str, params: saliency.SaliencyParams, evaluations: list | None = None
) -> tuple[list[float], list[float]]:
    lat, rel = [], []
    for img, label, spacing in zip(data.images, data.labels, data.spacings, strict=True):
        exp = saliency.explain(
            model.network,
            to_tensor(img),
            int(label),
            method,
            image_shape=img.shape,
            spacing_mm=spacing,
            params=params,
            labels=model.labels,
        )
        lat.append(exp.latency_ms)
        if exp.relative_delta is not None:
            rel.append(exp.relative_delta)
        if evaluations is not None and "evaluations" in exp.params:
            evaluations.append(exp.params["evaluations"])
    return lat, rel


def _cell(values: list[float]) -> str:
    return f"{np.median(values):7.0f} / {np.percentile(values, 95):<6.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--n", type=int, default=12, help="phantoms per model (lesion-bearing ones timed)"
    )
    parser.add_argument("--sweep", default="8,16,32,64", help="IG step counts to sweep")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    default = saliency.SaliencyParams()
    rows = [
        ("gradcam", "gradcam", default),
        (
            "integrated_gradients",
            f"IG {default.n_steps} steps, {default.internal_batch_size} per pass",
            default,
        ),
        (
            "integrated_gradients",
            f"IG {default.n_steps} steps, all in one pass",
            saliency.with_params(default, internal_batch_size=None),
        ),
        (
            "integrated_gradients",
            f"IG {default.n_steps} steps, unbatched",
            saliency.with_params(default, internal_batch_size=1),
        ),
        ("occlusion", f"occlusion {default.window_mm:g}/{default.stride_mm:g} mm", default),
        ("smoothgrad", f"SmoothGrad {default.nt_samples} x {default.nt_n_steps} steps", default),
    ]
    print(
        f"# saliency latency on {torch.get_num_threads()} threads, network input 128 x 128, "
        f"maps upsampled to 256 x 256 phantoms"
    )
    for name in available_models():
        model = load_model(name, device="cpu")
        data = phantom_set(name, args.n, 4242)
        warm = phantom_set(name, 3, 1)
        for method in saliency.METHODS:
            _time(model, warm, method, default)
        print(f"\n{name} ({len(data.images)} images)")
        print(f"  {'method':34s} {'median / p95 ms':>16s}  target")
        for method, label, params in rows:
            lat, _ = _time(model, data, method, params)
            target = TARGETS_MS.get(method)
            verdict = (
                ""
                if target is None
                else f"<= {target} ms: {'yes' if np.median(lat) <= target else 'NO'}"
            )
            if (
                method == "occlusion"
            ):  # the rule: interactive only if under 2 s, else on request
                verdict = (
                    "interactive"
                    if np.median(lat) <= target
                    else "over 2 s: on request only (the page's button)"
                )
            print(f"  {label:34s} {_cell(lat)}  {verdict}")
        print(
            f"  {'IG first-pass steps (batched)':34s} {'median / p95 ms':>16s}  relative convergence "
            "delta (median / max)  gradient evaluations after refining (median / max, images > first)"
        )
        for steps in (int(s) for s in args.sweep.split(",")):
            params = saliency.with_params(default, n_steps=steps)
            spent: list[int] = []
            lat, rel = _time(model, data, "integrated_gradients", params, spent)
            refined = sum(e > steps for e in spent)
            print(
                f"  {steps:<34d} {_cell(lat)}  {np.median(rel):.3f} / {np.max(rel):.3f}"
                f"{'':22s}{np.median(spent):.0f} / {max(spent)}, {refined} of {len(spent)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
