"""The AI read as DICOM objects a radiologist's own viewer opens: a Segmentation and a TID 1500 SR.

Why DICOM and not a PDF or a web link: a PACS files SEG and SR objects in the
patient's study next to the images they describe, every diagnostic viewer shows
them, and their provenance (which algorithm, which version, which image) is
coded, not free text. Both are built with ``highdicom`` from the *source*
dataset as the PACS sent it, so they land in the hospital's own study (same
patient, same Study Instance UID); they are never built from OncoLens's
de-identified copy.

- **Segmentation** (PS3.3 A.51, binary): one segment, the AI lesion mask
  (``models.inference.read.AIRead.lesion_mask``), with the model as Algorithm
  Identification (automatic segmentation).
- **Comprehensive 3D SR**, TID 1500 Measurement Report: one measurement group
  that references the segment, with the finding (the model's class, coded in
  the private scheme ``99ONCOLENS``), every class probability, the RECIST 1.1
  longest diameter (SCT 103339001 "Long Axis", mm), the area (mm2), and the
  model name and version as TID 4019 Algorithm Identification; the observer is
  the OncoLens device. Sizes in mm are only written when the image has pixel
  spacing (as on the Imaging page); without a lesion there is no SEG and the SR
  carries the classification alone.

``read_results`` reads both back (for the round-trip test and for anyone
checking what was sent) with plain pydicom, independently of highdicom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from models.inference.read import AIRead
from models.provenance import oncolens_version

SCHEME = "99ONCOLENS"  # a private coding scheme (PS3.16 8.2: designators starting with 99)
MANUFACTURER = "OncoLens"
SEG_SERIES_NUMBER = 9101
SR_SERIES_NUMBER = 9102
LONG_AXIS = CodedConcept("103339001", "SCT", "Long Axis")
AREA = CodedConcept("42798000", "SCT", "Area")
FINDING = CodedConcept("121071", "DCM", "Finding")
MASS = CodedConcept("4147007", "SCT", "Mass")
LESION_CATEGORY = CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
MM = CodedConcept("mm", "UCUM", "millimeter")
MM2 = CodedConcept("mm2", "UCUM", "square millimeter")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
IMAGING_PROCEDURE = CodedConcept("363679005", "SCT", "Imaging")


def probability_concept(label: str) -> CodedConcept:
    return CodedConcept(f"P-{label}"[:16], SCHEME, f"Probability of {label.replace('_', ' ')}")


def label_concept(label: str) -> CodedConcept:
    return CodedConcept(label[:16], SCHEME, label.replace("_", " "))


@dataclass(frozen=True)
class ResultObjects:
    """What goes back to the PACS for one image: the SEG (None without a lesion) and the SR."""

    segmentation: Dataset | None
    report: Dataset


def device_observer(model: str, version: str) -> hd.sr.ObserverContext:
    """The report's observer: the model as a device (TID 1004), named with its version, so a
    reader of the SR sees which algorithm measured; one definition for 2D and 3D reports."""
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name=f"OncoLens {model}"[:64],
            manufacturer_name=MANUFACTURER,
            model_name=f"{model} {version}"[:64],
        ),
    )


def measurement_report_sr(
    model: str,
    version: str,
    groups: Sequence[
        hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
        | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
        | hd.sr.MeasurementsAndQualitativeEvaluations
    ],
    evidence: Sequence[Dataset],
    *,
    series_number: int,
    description: str,
) -> Dataset:
    """A TID 1500 Measurement Report of ``groups``, observed by the model as a device, in a new
    Comprehensive 3D SR over ``evidence``: the tail the 2D (``build_report``) and the 3D
    (``models.volumes.results.build_report``) reports share, so both say the same things about
    who measured and the report's status (complete, not final, not verified: research use)."""
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=device_observer(model, version)
        ),
        procedure_reported=IMAGING_PROCEDURE,
        imaging_measurements=list(groups),
    )
    return hd.sr.Comprehensive3DSR(
        evidence=list(evidence),
        content=report,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=description[:64],
    )


def build_segmentation(source: Dataset, ai: AIRead) -> Dataset | None:
    """The binary SEG of the AI lesion mask over ``source`` (None when the read outlined no lesion)."""
    if ai.lesion_mask is None or not ai.lesion_mask.any():
        return None
    mask = np.asarray(ai.lesion_mask, dtype=bool)
    if mask.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(
            f"mask {mask.shape} does not match the image {source.Rows}x{source.Columns}"
        )
    algorithm = hd.AlgorithmIdentificationSequence(
        name=ai.model, version=ai.model_version, family=codes.cid7162.ArtificialIntelligence
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"AI lesion ({ai.label})"[:64],
        segmented_property_category=LESION_CATEGORY,
        segmented_property_type=MASS,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=mask.astype(np.uint8)[None],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=f"OncoLens {ai.model}",
        software_versions=oncolens_version(),
        device_serial_number="0",
        series_description=f"OncoLens AI lesion ({ai.model} {ai.model_version}), research use"[:64],
    )


class _GroupContent(TypedDict):
    """What the report's one measurement group says, with or without a segmentation to point to."""

    tracking_identifier: hd.sr.TrackingIdentifier
    finding_type: CodedConcept
    algorithm_id: hd.sr.AlgorithmIdentification
    measurements: list[hd.sr.Measurement]
    qualitative_evaluations: list[hd.sr.QualitativeEvaluation]


def build_report(source: Dataset, ai: AIRead, segmentation: Dataset | None) -> Dataset:
    """The TID 1500 measurement report (Comprehensive 3D SR) of one AI read of ``source``.

    A refused read has no finding to report: ``InputRefusedError`` (nothing is sent to a PACS)."""
    label = ai.require_accepted().label
    assert label is not None  # an accepted read always has a label
    algorithm = hd.sr.AlgorithmIdentification(name=ai.model, version=ai.model_version)
    tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"AI {ai.model} lesion")
    measurements = [
        hd.sr.Measurement(
            name=probability_concept(label), value=float(p), unit=NO_UNITS, algorithm_id=algorithm
        )
        for label, p in ai.probabilities.items()
    ]
    if ai.lesion is not None and ai.spacing_mm is not None:
        measurements += [
            hd.sr.Measurement(
                name=LONG_AXIS,
                value=round(float(ai.lesion.longest_diameter_mm), 3),
                unit=MM,
                algorithm_id=algorithm,
            ),
            hd.sr.Measurement(
                name=AREA,
                value=round(float(ai.lesion.area_mm2), 3),
                unit=MM2,
                algorithm_id=algorithm,
            ),
        ]
    evaluation = [hd.sr.QualitativeEvaluation(FINDING, label_concept(label))]
    common = _GroupContent(
        tracking_identifier=tracking,
        finding_type=MASS,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluation,
    )
    group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | (
        hd.sr.MeasurementsAndQualitativeEvaluations
    )
    if segmentation is not None:
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegmentationFrame(
                sop_class_uid=segmentation.SOPClassUID,
                sop_instance_uid=segmentation.SOPInstanceUID,
                frame_number=1,
                segment_number=1,
                source_image=hd.sr.SourceImageForSegmentation.from_source_image(source),
            ),
            **common,
        )
    else:
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)], **common
        )
    evidence = [source] + ([segmentation] if segmentation is not None else [])
    return measurement_report_sr(
        ai.model,
        ai.model_version,
        [group],
        evidence,
        series_number=SR_SERIES_NUMBER,
        description=f"OncoLens AI read ({ai.model} {ai.model_version}), research use",
    )


def build_results(source: Dataset, ai: AIRead) -> ResultObjects:
    ai.require_accepted()  # no outline and no report of an image the input guard refused
    seg = build_segmentation(source, ai)
    return ResultObjects(segmentation=seg, report=build_report(source, ai, seg))


# --- reading back (plain pydicom) --------------------------------------------------------------


def _walk(items):
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"))


def read_report(ds: Dataset) -> dict:
    """Numbers, finding and algorithm of an SR written by ``build_report``:
    ``{"measurements": {meaning: (value, unit)}, "finding": meaning, "algorithm": (name, version)}``."""
    out: dict = {"measurements": {}, "finding": None, "algorithm": (None, None)}
    name = version = None
    for item in _walk(ds.get("ContentSequence")):
        concept = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
        meaning = str(concept.CodeMeaning) if concept is not None else None
        if item.ValueType == "NUM" and "MeasuredValueSequence" in item:
            mv = item.MeasuredValueSequence[0]
            out["measurements"][meaning] = (
                float(mv.NumericValue),
                str(mv.MeasurementUnitsCodeSequence[0].CodeValue),
            )
        elif item.ValueType == "CODE" and meaning == FINDING.meaning:
            out["finding"] = str(item.ConceptCodeSequence[0].CodeValue)
        elif item.ValueType == "TEXT" and meaning == "Algorithm Name":
            name = str(item.TextValue)
        elif item.ValueType == "TEXT" and meaning == "Algorithm Version":
            version = str(item.TextValue)
    out["algorithm"] = (name, version)
    return out


def read_segmentation_mask(ds: Dataset) -> np.ndarray:
    """The first segment's mask (bool, rows x columns) of a single-frame binary SEG."""
    arr = ds.pixel_array
    return np.asarray(arr[0] if arr.ndim == 3 else arr).astype(bool)
