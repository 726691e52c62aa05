"""The imaging tasks OncoLens ships models for, and the one rule that picks a model for an image.

Why explicit coverage rules: a model applied to an image it was never meant
for gives a confident wrong answer. A CT, an ultrasound, or an MR of the knee
gets "no model for this modality" instead.

The rule (docs/imaging.md, "Which model reads an image"), exact and nothing else:

1. the Modality tag, trimmed and upper-cased, must be one of the task's modalities;
2. a task tied to body parts needs BodyPartExamined (trimmed, upper-cased) to be one of them;
   when the tag is absent, the StudyDescription is split into whole words (letters and digits)
   and one word must be in the task's ``description_terms`` and none in its
   ``excluded_terms``. Words, never substrings: "HEADACHE" is not "HEAD".

A BodyPartExamined that names another part wins over any description. Tags only open the
door: the input guard (``models.inference.guard``) then decides from the pixels.

Why one function: ``choose_model`` is the only place that decides which model
reads an image (``oncolens predict``, ``explain`` and ``ingest``, a PACS pull,
the Imaging page, the tumour-board report all call it), so they can never
disagree about the same image, and an explicit ``--model NAME`` is checked by
the same rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol


class ModelUnavailableError(Exception):
    """A model cannot be used (missing, unknown or altered weights); the message says which and why."""


class NoModelForImageError(Exception):
    """No registered model covers this image (e.g. a CT): shown, never guessed at."""


class ImageMeta(Protocol):
    """What the choice reads from an image. ``models.dicom.reader.DicomImage`` has these."""

    @property
    def modality(self) -> str: ...

    @property
    def body_part(self) -> str | None: ...

    @property
    def study_description(self) -> str | None: ...


@dataclass(frozen=True)
class ImageFacts:
    """The header facts of an image held apart from its pixels (e.g. a de-identified file whose
    StudyDescription was removed, with the description the store kept for its study)."""

    modality: str
    body_part: str | None = None
    study_description: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str  # registry key and weights file stem
    title: str  # what a clinician reads
    labels: tuple[str, ...]  # class order of the network's logits
    lesion_labels: tuple[str, ...]  # labels for which a lesion outline is reported
    positive_label: str  # the label whose probability the AUC is computed for
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...] | None  # None: any body part of these modalities
    version: str
    measurement_concept: (
        str  # ``measurement.concept`` an AI-measured lesion diameter is filed under
    )
    # whole words of a StudyDescription that stand for the body part when BodyPartExamined is absent
    description_terms: tuple[str, ...] = ()
    # whole words that rule the description out (a neck or spine study that also says "head")
    excluded_terms: tuple[str, ...] = ()


MAMMOGRAPHY = TaskSpec(
    name="mammography",
    title="Mammography mass classifier",
    labels=("normal", "benign", "malignant"),
    lesion_labels=("benign", "malignant"),
    positive_label="malignant",
    modalities=("MG",),
    body_parts=None,  # MG is breast imaging by definition
    version="1.0.0",
    measurement_concept="lesion_longest_diameter",  # the primary breast tumour series
)

BRAIN_MRI = TaskSpec(
    name="brain_mri",
    title="Brain MRI tumour classifier",
    labels=("no_tumour", "tumour"),
    lesion_labels=("tumour",),
    positive_label="tumour",
    modalities=("MR",),
    body_parts=("BRAIN", "HEAD"),
    version="1.0.0",
    measurement_concept="brain_lesion_longest_diameter",  # metastases: never mixed into the breast series
    description_terms=("BRAIN", "HEAD", "CEREBRAL", "CRANIAL", "INTRACRANIAL", "NEURO", "NEURAL"),
    excluded_terms=(
        "NECK",
        "SPINE",
        "SPINAL",
        "CERVICAL",
        "ORBIT",
        "ORBITS",
        "FACE",
        "SINUS",
        "SINUSES",
    ),
)

TASKS: dict[str, TaskSpec] = {t.name: t for t in (MAMMOGRAPHY, BRAIN_MRI)}


@dataclass(frozen=True)
class ModelChoice:
    """The task whose model reads an image, or ``None`` with the reason shown to the user."""

    task: TaskSpec | None
    reason: str = ""  # why no model reads the image; "" when one does
    unknown_model: bool = False  # a model was asked for by a name OncoLens does not have

    @property
    def name(self) -> str | None:
        return None if self.task is None else self.task.name

    def require(self) -> TaskSpec:
        """The chosen task; raises ``NoModelForImageError``, or ``ModelUnavailableError`` for an
        unknown model name (what loading that name has always raised)."""
        if self.task is not None:
            return self.task
        if self.unknown_model:
            raise ModelUnavailableError(self.reason)
        raise NoModelForImageError(self.reason)


def description_words(text: str | None) -> frozenset[str]:
    """The whole words of a description, upper-cased ("MRI HEAD/NECK" -> {MRI, HEAD, NECK})."""
    return frozenset(re.findall(r"[A-Z0-9]+", (text or "").upper()))


def _covers(task: TaskSpec, image: ImageMeta) -> tuple[bool, str]:
    """Whether ``task``'s model may read the image, and why not when it may not: the module's rule."""
    modality = (image.modality or "").strip().upper()
    if modality not in task.modalities:
        return (
            False,
            f"{task.title} reads {', '.join(task.modalities)} images, not {modality or 'unknown modality'}",
        )
    if task.body_parts is None:
        return True, ""
    part = (image.body_part or "").strip().upper()
    wanted = "/".join(task.body_parts).lower()
    if part:
        if part in task.body_parts:
            return True, ""
        return False, f"{task.title} reads {wanted} images; body part is {part.lower()}"
    words = description_words(image.study_description)
    if words & set(task.description_terms) and not words & set(task.excluded_terms):
        return True, ""
    said = (image.study_description or "").strip()
    return (
        False,
        f"{task.title} reads {wanted} images; body part is not recorded"
        + (f" and the study description ({said!r}) does not name one" if said else ""),
    )


def choose_model(image: ImageMeta, requested: str | None = None) -> ModelChoice:
    """The model that reads this image, or why none does: the one rule every caller uses.

    ``requested`` (``--model NAME``) forces a model by name; it must be one OncoLens
    has and must still cover the image, by the same rule as the automatic choice.
    """
    if requested:
        task = TASKS.get(requested)
        if task is None:
            return ModelChoice(
                None,
                f"unknown model '{requested}'; known: {', '.join(sorted(TASKS))}",
                unknown_model=True,
            )
        ok, why = _covers(task, image)
        return ModelChoice(task) if ok else ModelChoice(None, why)
    reasons: list[str] = []
    for task in TASKS.values():
        ok, why = _covers(task, image)
        if ok:
            return ModelChoice(task)
        reasons.append(why)
    return ModelChoice(
        None,
        f"no model for this image ({image.modality or 'unknown'} modality): " + "; ".join(reasons),
    )
