"""Train an imaging model on generated phantoms and write its weights and model card.

    python -m models.training.train --task mammography          # writes models/weights/mammography.{pt,json}
    python -m models.training.train --task brain_mri --check    # retrain and compare with the committed card

Why phantoms: no weights or images can be downloaded here, and phantoms carry
exact lesion masks, which the saliency checks need. Everything is seeded; the
held-out test set uses its own seed and is never seen in training or
calibration. ``--check`` reproduces the committed weights' metrics within a
stated tolerance (float reductions differ slightly between thread counts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from models.inference.network import INPUT_SIZE, LesionNet, count_parameters
from models.inference.preprocess import mask_to_image, mask_to_input, to_tensor
from models.inference.tasks import TASKS, TaskSpec
from models.provenance import git_commit, oncolens_version
from models.training import evaluation

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
CHECK_TOLERANCE = 0.03


@dataclass(frozen=True)
class TrainConfig:
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    batch_size: int = 32
    learning_rate: float = 3e-3
    mask_weight: float = 1.0
    seed: int = 1234
    test_seed: int = 987_654


CONFIGS = {
    "mammography": TrainConfig(n_train=3000, n_val=600, n_test=900, epochs=16),
    "brain_mri": TrainConfig(n_train=1600, n_val=400, n_test=600, epochs=8),
}


def make_dataset(
    task: TaskSpec, n: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    """Images in modality units (as the DICOM reader returns them), labels, masks."""
    # lazy: at the top, importing models.training.train took 3866 ms instead of 3172 ms
    from models.training import synthetic as phantoms

    if task.name == "mammography":
        items = phantoms.sample_mammograms(n, seed)
    else:
        items = phantoms.sample_brain(n, seed)
    images = [p.pixels.astype(np.float32) * p.rescale_slope + p.rescale_intercept for p in items]
    labels = np.array([task.labels.index(p.label) for p in items], dtype=np.int64)
    return images, labels, [p.mask for p in items]


def _soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    total = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    has_lesion = target.sum(dim=(1, 2, 3)) > 0
    loss = 1 - (2 * inter + 1) / (total + 1)
    return loss[has_lesion].mean() if has_lesion.any() else logits.sum() * 0


def _augment(
    x: torch.Tensor, m: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    if torch.rand(1, generator=gen).item() < 0.5:
        x, m = x.flip(-1), m.flip(-1)
    if torch.rand(1, generator=gen).item() < 0.5:
        x, m = x.flip(-2), m.flip(-2)
    gamma = torch.exp(torch.randn(x.shape[0], 1, 1, 1, generator=gen) * 0.15)
    return x.clamp(0, 1) ** gamma, m


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature scaling (Guo et al. 2017): one scalar minimising validation NLL."""
    logits, labels = logits.clone(), labels.clone()  # inference-mode tensors cannot enter autograd
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().item())


@torch.inference_mode()
def predict_logits(
    model: LesionNet, x: torch.Tensor, batch: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    outs, masks = [], []
    for i in range(0, len(x), batch):
        logit, mask = model(x[i : i + batch])
        outs.append(logit)
        masks.append(mask)
    return torch.cat(outs), torch.cat(masks)


def train(task: TaskSpec, cfg: TrainConfig, log=print) -> tuple[LesionNet, dict]:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    started = time.perf_counter()
    log(f"[{task.name}] generating {cfg.n_train + cfg.n_val} training/validation phantoms")
    images, labels, masks = make_dataset(task, cfg.n_train + cfg.n_val, cfg.seed)
    x_all = to_tensor(images)
    m_all = torch.cat([mask_to_input(m, INPUT_SIZE // 2) for m in masks])
    y_all = torch.from_numpy(labels)
    x_tr, y_tr, m_tr = x_all[: cfg.n_train], y_all[: cfg.n_train], m_all[: cfg.n_train]
    x_va, y_va = x_all[cfg.n_train :], y_all[cfg.n_train :]

    model = LesionNet(len(task.labels))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    steps = cfg.epochs * ((cfg.n_train + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.learning_rate, total_steps=steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(cfg.n_train, generator=gen)
        total = 0.0
        for i in range(0, cfg.n_train, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb, mb = _augment(x_tr[idx], m_tr[idx], gen)
            logits, mask_logits = model(xb)
            loss = F.cross_entropy(logits, y_tr[idx]) + cfg.mask_weight * (
                F.binary_cross_entropy_with_logits(mask_logits, mb)
                + _soft_dice_loss(mask_logits, mb)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        model.eval()
        val_logits, _ = predict_logits(model, x_va)
        val_acc = (val_logits.argmax(1) == y_va).float().mean().item()
        log(
            f"[{task.name}] epoch {epoch + 1}/{cfg.epochs} loss {total / cfg.n_train:.4f} val acc {val_acc:.3f}"
        )

    model.eval()
    val_logits, _ = predict_logits(model, x_va)
    temperature = fit_temperature(val_logits, y_va)
    model.temperature.fill_(temperature)
    info = {
        "train_seconds": round(time.perf_counter() - started, 1),
        "temperature": round(temperature, 4),
    }
    return model, info


def evaluate(model: LesionNet, task: TaskSpec, n: int, seed: int) -> dict:
    """Held-out metrics with bootstrap 95 % CIs, on phantoms generated with ``seed``."""
    images, labels, masks = make_dataset(task, n, seed)
    x = to_tensor(images)
    logits, mask_logits = predict_logits(model, x)
    raw = torch.softmax(logits, 1).numpy()
    cal = torch.softmax(logits / model.temperature, 1).numpy()
    pos = task.labels.index(task.positive_label)
    lesion_cases = [i for i, m in enumerate(masks) if m.any()]
    dices = np.array(
        [
            evaluation.dice(mask_to_image(mask_logits[i : i + 1], masks[i].shape), masks[i])
            for i in lesion_cases
        ]
    )
    metrics = {
        "n_test": n,
        "test_seed": seed,
        "class_counts": {lab: int((labels == k).sum()) for k, lab in enumerate(task.labels)},
        f"auc_{task.positive_label}_vs_rest": evaluation.bootstrap(
            evaluation.auc_for(pos), cal, labels
        ).as_dict(),
        "accuracy": evaluation.bootstrap(evaluation.accuracy, cal, labels).as_dict(),
        "lesion_dice": evaluation.bootstrap(np.mean, dices).as_dict(),
        "ece_before_calibration": round(evaluation.expected_calibration_error(raw, labels), 4),
        "ece_after_calibration": round(evaluation.expected_calibration_error(cal, labels), 4),
        "reliability": evaluation.reliability_table(cal, labels),
    }
    if len(task.labels) > 2:
        # lazy: sklearn is imported only when this is used (start-up time)
        from sklearn.metrics import roc_auc_score

        metrics["auc_macro_one_vs_rest"] = round(
            float(roc_auc_score(labels, cal, multi_class="ovr")), 4
        )
    return metrics


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_card(
    task: TaskSpec, cfg: TrainConfig, model: LesionNet, info: dict, metrics: dict, weights: Path
) -> dict:
    return {
        "name": task.name,
        "title": task.title,
        "version": task.version,
        "labels": list(task.labels),
        "positive_label": task.positive_label,
        "modalities": list(task.modalities),
        "body_parts": list(task.body_parts) if task.body_parts else None,
        "intended_use": (
            f"Research and decision support: a second read of {'mammograms' if task.name == 'mammography' else 'axial brain MR slices'} "
            "in the OncoLens demo, shown beside the image with its calibrated probability and the lesion outline. "
            "The clinician decides. Not a medical device."
        ),
        "out_of_scope": [
            "Any clinical diagnosis or screening decision",
            "Real patient images: trained only on synthetic phantoms, never validated on real data",
            "Modalities and body parts other than those listed",
        ],
        "training_data": {
            "source": "models.training.synthetic (synthetic, generated by the project)",
            "n_train": cfg.n_train,
            "n_validation": cfg.n_val,
            "seed": cfg.seed,
        },
        "evaluation_data": {
            "source": "fresh phantoms from a seed never used in training or calibration",
            "n_test": cfg.n_test,
            "seed": cfg.test_seed,
        },
        "architecture": {
            "network": "LesionNet (U-Net-style encoder, classification + lesion-mask heads)",
            "parameters": count_parameters(model),
            "input": f"1 x {INPUT_SIZE} x {INPUT_SIZE}, percentile-normalised",
        },
        "training": {
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate,
            "optimizer": "AdamW + one-cycle schedule",
            "loss": "cross-entropy + BCE + soft Dice on the lesion mask",
            "train_seconds": info["train_seconds"],
            "torch_version": torch.__version__,
            "platform": platform.machine(),
            "command": f"python -m models.training.train --task {task.name}",
            "reproduction_tolerance": CHECK_TOLERANCE,
        },
        "calibration": {
            "method": "temperature scaling on the validation split",
            "temperature": info["temperature"],
        },
        "metrics": metrics,
        "caveats": [
            "Phantoms are simpler than real anatomy; performance on real images is unknown.",
            "Lesion size range and class balance follow the phantom generator, not a screening population.",
            "Probabilities are calibrated on phantoms; they are not calibrated for any real population.",
        ],
        "lineage": {  # issue 22: the code and the date that produced these weights
            "git_commit": git_commit(),
            "oncolens_version": oncolens_version(),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        },
        "weights": {
            "file": weights.name,
            "sha256": sha256_of(weights),
            "bytes": weights.stat().st_size,
        },
    }


def compare(card: dict, committed: dict) -> list[str]:
    """Metric differences beyond the tolerance between a retrained card and the committed one."""
    problems = []
    for key, value in card["metrics"].items():
        old = committed["metrics"].get(key)
        if isinstance(value, dict) and "value" in value and old:
            if abs(value["value"] - old["value"]) > CHECK_TOLERANCE:
                problems.append(f"{key}: {value['value']:.4f} vs committed {old['value']:.4f}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument(
        "--check",
        action="store_true",
        help="retrain into a temp folder and compare with the committed card",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="override (for quick experiments; changes the metrics)",
    )
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    cfg = CONFIGS[task.name]
    if args.epochs:
        cfg = TrainConfig(**{**cfg.__dict__, "epochs": args.epochs})
    out = args.out
    if args.check:
        # lazy: tempfile is imported only when this is used (start-up time)
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="oncolens-train-"))
    out.mkdir(parents=True, exist_ok=True)
    model, info = train(task, cfg)
    weights = out / f"{task.name}.pt"
    torch.save(model.state_dict(), weights)
    metrics = evaluate(model, task, cfg.n_test, cfg.test_seed)
    card = model_card(task, cfg, model, info, metrics, weights)
    (out / f"{task.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    summary = {k: v for k, v in metrics.items() if k not in ("reliability",)}
    print(json.dumps(summary, indent=2))
    if out.resolve() == WEIGHTS_DIR.resolve():
        # the input guard, the calibration decision and the weak spots belong to these weights:
        # regenerate them now (models.training.guard), so the card never describes older ones
        # lazy: the guard fitting is needed only after a full training run
        from models.inference.registry import load_model
        from models.training import guard as guard_fit  # lazy: as above

        guard_fit.write(
            load_model(task.name, device="cpu", require_guard=False),
            out / f"{task.name}.json",
        )
    else:
        print(f"fit the input guard with `python -m models.training.guard --task {task.name}`")
    if args.check:
        committed = json.loads((WEIGHTS_DIR / f"{task.name}.json").read_text())
        problems = compare(card, committed)
        if problems:
            print(
                "metrics differ from the committed card:\n  " + "\n  ".join(problems),
                file=sys.stderr,
            )
            return 1
        print(f"reproduced the committed metrics within {CHECK_TOLERANCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
