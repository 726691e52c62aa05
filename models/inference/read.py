"""The AI read: one image in, the input check, then label + probabilities + lesion outline out.

One function serves the Imaging page, ``oncolens predict``, ``ingest``, PACS pulls and the
report, so they can never disagree about what the model said, or about refusing to say it.

A read is one of three things (docs/imaging.md):

* **refused** (``refused`` is the reason): the input guard found that the pixels do not look
  like the training images; no label, no probabilities, no outline, no measurement;
* **uncertain** (``uncertain_between``): the top two classes are within ``UNCERTAIN_MARGIN``
  of each other; shown as "uncertain between A and B" with both numbers, never as a label;
* a label with its probability (calibrated only where the card says calibration is applied).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.dicom.reader import DicomImage, DicomReadError, read_dicom, require_readable
from models.inference.guard import InputCheck, InputRefusedError, image_statistics
from models.inference.preprocess import mask_to_image, to_input
from models.inference.registry import LoadedModel, ModelUnavailableError
from models.inference.tasks import ImageMeta, NoModelForImageError, choose_model
from models.radiomics import LesionFeatures, largest_component, measure_lesion

UNCERTAIN_MARGIN = 0.10  # top-two probability gap under which a read is "uncertain between A and B"
SMALL_LESION_MM = 10.0  # the card's known weak spot: sensitivity for lesions under this size

__all__ = [
    "UNCERTAIN_MARGIN",
    "AIRead",
    "InputRefusedError",
    "check_input",
    "NoModelForImageError",  # defined in models.inference.tasks, beside choose_model
    "classify_batches",
    "iter_dicom_paths",
    "model_for",
    "predict_file",
    "read_from_outputs",
    "read_image",
    "result_json",
    "softmax",
]


@dataclass(frozen=True)
class AIRead:
    model: str
    model_version: str
    model_title: str
    label: str | None  # None when the input guard refused the image
    probabilities: dict[str, float]  # sum to 1; empty when refused
    lesion_mask: np.ndarray | None  # bool, image rows x columns; None when no lesion is reported
    lesion: LesionFeatures | None
    spacing_mm: tuple[float, float] | None
    latency_ms: float
    input_check: InputCheck | None = None
    calibrated: bool = False  # temperature scaling applied (only where it improved held-out ECE)
    weak_spots: tuple[str, ...] = ()  # the card's known weak spots that apply to this read
    weights_sha256: str | None = (
        None  # the weights that made the read (stored; sign-off binds to it)
    )

    @property
    def refused(self) -> str | None:
        """Why the guard refused the image, or None when the model read it."""
        if self.input_check is None or self.input_check.in_distribution:
            return None
        return self.input_check.reason

    @property
    def confidence(self) -> float:
        """Probability of the label (0 for a refused read, which has none)."""
        return 0.0 if self.label is None else self.probabilities[self.label]

    @property
    def uncertain_between(self) -> tuple[tuple[str, float], tuple[str, float]] | None:
        """The top two (class, probability) when they are within ``UNCERTAIN_MARGIN``; else None."""
        if self.label is None or len(self.probabilities) < 2:
            return None
        first, second = sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:2]
        return (first, second) if first[1] - second[1] < UNCERTAIN_MARGIN else None

    def require_accepted(self) -> AIRead:
        """This read, or ``InputRefusedError`` for callers that cannot show a refusal."""
        if self.refused is not None:
            raise InputRefusedError(self.refused)
        return self

    def to_json(self) -> dict:
        """The read's keys of the CLI contract (``oncolens predict --json``)."""
        between = self.uncertain_between
        return {
            "model": self.model,
            "model_version": self.model_version,
            "label": self.label,
            "refused": self.refused,
            "input_check": None if self.input_check is None else self.input_check.to_json(),
            "probabilities": self.probabilities,
            "calibrated": self.calibrated,
            "uncertain_between": None
            if between is None
            else [{"label": k, "probability": v} for k, v in between],
            "weak_spots": list(self.weak_spots),
            "lesion": self.lesion_summary(),
        }

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


def check_input(model: LoadedModel, image: DicomImage) -> InputCheck:
    """The input guard's verdict on one image, without the rest of the read (explanations use it)."""
    x = to_input(image.pixels)
    _, _, features = model.infer_with_features(x)
    return model.check_inputs(x, features)[0]


def weak_spots_for(model: LoadedModel, label: str, diameter_mm: float | None) -> tuple[str, ...]:
    """The card's known weak spots that apply to a read: small lesions for a read without an
    outline (it does not exclude a small lesion) or with one under ``SMALL_LESION_MM``."""
    small = (model.card.get("known_weak_spots") or {}).get("small_lesions") or {}
    sens = (small.get("sensitivity") or {}).get(f"under_{SMALL_LESION_MM:g}_mm")
    if not sens:
        return ()
    if diameter_mm is not None and diameter_mm >= SMALL_LESION_MM:
        return ()
    return (
        f"finds {sens['value']:.0%} (95 % CI {sens['ci_low']:.0%}-{sens['ci_high']:.0%}) of lesions "
        f"under {SMALL_LESION_MM:g} mm on held-out phantoms"
        + (
            "; a read without a lesion does not exclude a small one"
            if label not in model.task.lesion_labels
            else ""
        ),
    )


def read_image(model: LoadedModel, image: DicomImage) -> AIRead:
    """The read of one image: the structural sanity gate (models.dicom.sanity), then the input
    guard on the same forward pass as the model."""
    require_readable(image)
    started = time.perf_counter()
    x = to_input(image.pixels)
    # the guard's image statistics first, while x is hot in the caches (the forward pass evicts it)
    stats = image_statistics(x)
    logits, mask_logits, features = model.infer_with_features(x)
    check = model.check_inputs(x, features, stats)[0]
    return read_from_outputs(model, image, logits, mask_logits, check, started)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of logits (N, classes) divided by the temperature, in float32 (the
    network's precision): ``exp(z - max) / sum``, without PyTorch (the read never imports it)."""
    z = np.asarray(logits, dtype=np.float32) / np.float32(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e * (np.float32(1.0) / e.sum(axis=1, keepdims=True))


def read_from_outputs(
    model: LoadedModel,
    image: DicomImage,
    logits: np.ndarray,
    mask_logits: np.ndarray,
    check: InputCheck,
    started: float,
) -> AIRead:
    """The read from the network's outputs for this one image (``logits`` (1, classes),
    ``mask_logits`` (1, 1, s, s); arrays, or CPU tensors) and the guard's verdict: the label, the outline, RECIST and
    radiomics. One function for ``read_image`` and the batched path (``models.inference.batch``),
    so a read of many files says exactly what the read of each alone says. ``started``: the
    ``time.perf_counter()`` the read's latency counts from."""
    if not check.in_distribution:
        return AIRead(
            model=model.name,
            model_version=model.version,
            model_title=model.task.title,
            label=None,
            probabilities={},
            lesion_mask=None,
            lesion=None,
            spacing_mm=image.spacing_mm,
            latency_ms=(time.perf_counter() - started) * 1e3,
            input_check=check,
            calibrated=model.calibrated,
            weights_sha256=model.weights_sha256,
        )
    probs = softmax(logits, model.temperature)[0]
    k = int(probs.argmax())
    label = model.labels[k]
    mask = lesion = None
    if label in model.task.lesion_labels:
        mask = largest_component(mask_to_image(mask_logits, image.pixels.shape))
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
        input_check=check,
        calibrated=model.calibrated,
        weak_spots=weak_spots_for(
            model,
            label,
            lesion.longest_diameter_mm if lesion is not None and image.spacing_mm else None,
        ),
        weights_sha256=model.weights_sha256,
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
    except READ_ERRORS as exc:
        return error_result(path, exc)
    return result_json(path, image, ai, (time.perf_counter() - started) * 1e3)


READ_ERRORS = (
    FileNotFoundError,
    IsADirectoryError,
    DicomReadError,
    NoModelForImageError,
    ModelUnavailableError,
)
"""What a read of one file may fail with and still leave the others to run (``error_result``)."""


def error_result(path: Path, exc: BaseException) -> dict:
    """The CLI contract's error entry for one file (``file`` + ``error``, and the error's type)."""
    if isinstance(exc, FileNotFoundError):
        return {"file": str(path), "error": "file not found"}
    if isinstance(exc, IsADirectoryError):
        return {"file": str(path), "error": "is a folder"}
    return {"file": str(path), "error": str(exc), "error_type": type(exc).__name__}


def result_json(path: Path, image: DicomImage, ai: AIRead, latency_ms: float) -> dict:
    """The CLI contract's entry for one read file (``oncolens predict --json``)."""
    return {
        "file": str(path),
        **ai.to_json(),
        "latency_ms": round(latency_ms, 2),
        "inference_ms": round(ai.latency_ms, 2),
        "modality": image.modality,
        "sop_instance_uid": image.sop_instance_uid,
    }


def _read_input(path: Path) -> tuple[Path, np.ndarray | None, str | None]:
    try:
        # the same structural sanity gate as read_image: a constant frame is refused, not classified
        return path, to_input(require_readable(read_dicom(path)).pixels), None
    except (OSError, DicomReadError) as exc:
        return path, None, str(exc)


def classify_batches(
    model: LoadedModel, paths: Iterable[Path], batch: int = 32, readers: int = 2
) -> Iterator[tuple[Path, np.ndarray | None, str | None]]:
    """(path, class probabilities or None, error or None) for many files, in order.

    The structural sanity gate (``models.dicom.sanity``) and the input guard run here too: a file
    the gate or the guard refuses gets None and the reason.

    Why threads: reading and decoding a file is mostly Python (pydicom), the
    forward pass is mostly native code that releases the GIL, so reading the
    next batch while the network runs on the current one keeps both cores busy
    (bench/bench_inference.py measures the gain). No lesion outline or
    radiomics here: probabilities only. The full read of many files (outline, RECIST,
    radiomics, the CLI's JSON) is ``models.inference.batch``.
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
            probs: Iterator = iter(())
            checks: Iterator = iter(())
            if good:
                x = np.concatenate(good)
                logits, _, features = model.infer_with_features(x)
                checks = iter(model.check_inputs(x, features))
                probs = iter(softmax(logits, model.temperature))
            for path, t, error in chunk:
                if t is None:
                    yield path, None, error
                    continue
                p, check = next(probs), next(checks)
                yield (path, p, None) if check.in_distribution else (path, None, check.reason)
