"""The imaging tasks OncoLens ships models for, and which images each one covers.

Why explicit coverage rules: a model applied to an image it was never meant
for gives a confident wrong answer. A CT, an ultrasound, or an MR of the knee
gets "no model for this modality" instead.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def covers(
        self, modality: str, body_part: str | None, description: str = ""
    ) -> tuple[bool, str]:
        """Whether this model may read the image, and why not when it may not."""
        modality = (modality or "").upper()
        if modality not in self.modalities:
            return (
                False,
                f"{self.title} reads {', '.join(self.modalities)} images, not {modality or 'unknown modality'}",
            )
        if self.body_parts is None:
            return True, ""
        part = (body_part or "").upper()
        text = description.upper()
        if part in self.body_parts or any(bp in text for bp in self.body_parts):
            return True, ""
        shown = part or "not recorded"
        return (
            False,
            f"{self.title} reads {'/'.join(self.body_parts).lower()} images; body part is {shown.lower()}",
        )


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
)

TASKS: dict[str, TaskSpec] = {t.name: t for t in (MAMMOGRAPHY, BRAIN_MRI)}


def select_task(
    modality: str, body_part: str | None, description: str = ""
) -> tuple[TaskSpec | None, str]:
    """The task whose model covers this image, or None with the reason shown to the user."""
    reasons = []
    for task in TASKS.values():
        ok, why = task.covers(modality, body_part, description)
        if ok:
            return task, ""
        reasons.append(why)
    return None, f"no model for this image ({modality or 'unknown'} modality): " + "; ".join(
        reasons
    )
