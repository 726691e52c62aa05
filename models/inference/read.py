"""The AI read: one image in, label + calibrated probabilities + lesion outline and measurements out.

One function serves the Imaging page, ``oncolens predict`` and ``ingest``, so
the three can never disagree about what the model said.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.dicom.reader import DicomImage, DicomReadError, read_dicom, require_readable
from models.inference.preprocess import mask_to_image, to_tensor
from models.inference.registry import LoadedModel, ModelUnavailableError
from models.inference.tasks import ImageMeta, NoModelForImageError, choose_model
from models.radiomics import LesionFeatures, largest_component, measure_lesion

__all__ = [
    "AIRead",
    "NoModelForImageError",  # defined in models.inference.tasks, beside choose_model
    "classify_batches",
    "iter_dicom_paths",
    "model_for",
    "predict_file",
    "read_image",
]


@dataclass(frozen=True)
class AIRead:
    model: str
    model_version: str
    model_title: str
    label: str
    probabilities: dict[str, float]  # calibrated, sum to 1
    lesion_mask: np.ndarray | None  # bool, image rows x columns; None when no lesion is reported
    lesion: LesionFeatures | None
    spacing_mm: tuple[float, float] | None
    latency_ms: float

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def lesion_summary(self) -> dict[str, float | str] | None:
        if self.lesion_mask is None:
            return None
        if self.lesion is None:
            return None
        out: dict[str, float | str] = dict(self.lesion.as_dict())
        if self.spacing_mm is None:
            # without spacing every "mm" above is in pixels: say so instead of lying
            out = {k: v for k, v in out.items() if not k.endswith(("_mm", "_mm2"))}
            out["note"] = "no pixel spacing in the file: sizes in mm are not available"
            out["area_pixels"] = int(self.lesion_mask.sum())
        return out


def model_for(
    image: ImageMeta, load: Callable[[str], LoadedModel], requested: str | None = None
) -> LoadedModel:
    """The loaded model that reads this image, as ``choose_model`` picks it (``requested``
    forces one, still checked for coverage).

    Raises ``NoModelForImageError`` (no model covers the image), ``ModelUnavailableError``
    (unknown name, or weights missing or altered).
    """
    return load(choose_model(image, requested).require().name)


@torch.inference_mode()
def read_image(model: LoadedModel, image: DicomImage) -> AIRead:
    require_readable(
        image
    )  # the structural sanity gate first (models.dicom.sanity), then the model
    started = time.perf_counter()
    x = to_tensor(image.pixels).to(model.device)
    logits, mask_logits = model.infer(x)
    probs = torch.softmax(logits / model.network.temperature, dim=1)[0].cpu().numpy()
    k = int(probs.argmax())
    label = model.labels[k]
    mask = lesion = None
    if label in model.task.lesion_labels:
        mask = largest_component(mask_to_image(mask_logits.cpu(), image.pixels.shape))
        if mask.any():
            spacing = image.spacing_mm or (1.0, 1.0)
            lesion = measure_lesion(image.pixels, mask, spacing)
        else:
            mask = None
    return AIRead(
        model=model.name,
        model_version=model.version,
        model_title=model.task.title,
        label=label,
        probabilities={lab: round(float(p), 6) for lab, p in zip(model.labels, probs, strict=True)},
        lesion_mask=mask,
        lesion=lesion,
        spacing_mm=image.spacing_mm,
        latency_ms=(time.perf_counter() - started) * 1e3,
    )


def iter_dicom_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given, folders walked (sorted, hidden files and our own *_mask.png skipped)."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not f.name.startswith(".") and not f.name.endswith("_mask.png"):
                    yield f
        else:
            yield p


def predict_file(
    path: Path, load: Callable[[str], LoadedModel], requested: str | None = None
) -> dict:
    """One JSON-ready result for one file: the CLI contract's keys, or ``file`` + ``error``."""
    started = time.perf_counter()
    try:
        image = read_dicom(path)
        ai = read_image(model_for(image, load, requested), image)
    except FileNotFoundError:
        return {"file": str(path), "error": "file not found"}
    except IsADirectoryError:
        return {"file": str(path), "error": "is a folder"}
    except (DicomReadError, NoModelForImageError, ModelUnavailableError) as exc:
        return {"file": str(path), "error": str(exc), "error_type": type(exc).__name__}
    return {
        "file": str(path),
        "model": ai.model,
        "model_version": ai.model_version,
        "label": ai.label,
        "probabilities": ai.probabilities,
        "lesion": ai.lesion_summary(),
        "latency_ms": round((time.perf_counter() - started) * 1e3, 2),
        "inference_ms": round(ai.latency_ms, 2),
        "modality": image.modality,
        "sop_instance_uid": image.sop_instance_uid,
    }


def _read_input(path: Path) -> tuple[Path, torch.Tensor | None, str | None]:
    try:
        return path, to_tensor(read_dicom(path).pixels), None
    except (OSError, DicomReadError) as exc:
        return path, None, str(exc)


def classify_batches(
    model: LoadedModel, paths: Iterable[Path], batch: int = 32, readers: int = 2
) -> Iterator[tuple[Path, np.ndarray | None, str | None]]:
    """(path, calibrated class probabilities or None, error or None) for many files, in order.

    Why threads: reading and decoding a file is mostly Python (pydicom), the
    forward pass is mostly native code that releases the GIL, so reading the
    next batch while the network runs on the current one keeps both cores busy
    (bench/bench_inference.py measures the gain). No lesion outline or
    radiomics here: this is the throughput path for triage of many images.
    """
    # lazy: concurrent is imported only when this is used (start-up time)
    from concurrent.futures import ThreadPoolExecutor

    paths = list(paths)
    with ThreadPoolExecutor(max_workers=readers) as pool:
        pending = pool.map(_read_input, paths)
        while True:
            chunk = [item for _, item in zip(range(batch), pending, strict=False)]
            if not chunk:
                return
            good = [t for _, t, _ in chunk if t is not None]
            probs = iter(())
            if good:
                logits = model.infer(torch.cat(good))[0] / model.network.temperature
                probs = iter(torch.softmax(logits, dim=1).cpu().numpy())
            for path, t, error in chunk:
                yield path, (next(probs) if t is not None else None), error
