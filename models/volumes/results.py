"""A 3D read as DICOM a radiologist's PACS files beside the series: a multi-frame SEG and a TID 1500 SR.

The 2D reads' objects (``models.dicom.results``) outline one image; a volume read outlines lesions
across a series, so here:

- **Segmentation** (PS3.3 A.51, binary, multi-frame; ``highdicom.seg.Segmentation``): one
  segment per lesion (1 = the largest, as ``VolumeRead.lesions``), the mask on the *source*
  series' own slices (``models.volumes.measure.lesion_labels_on_source``), so it inherits their
  Frame of Reference and references every source SOP instance; the algorithm identification
  names the model, its version and its weights' sha256 (automatic segmentation, family
  "Artificial Intelligence"). Series description and content description say "research use".
- **Comprehensive 3D SR**, TID 1500 Measurement Report: one *volumetric* measurement group per
  lesion (TID 1411), referencing its segment and the source series, with a tracking identifier,
  the volume (SCT 118565006 "Volume", mL), the RECIST longest axial diameter (SCT 103339001
  "Long Axis", mm) and the lesion's probability, each with the TID 4019 algorithm
  identification; the observer is the OncoLens device. A read without a lesion gives no SEG and
  a report with one group saying "no lesion" (the finding is a result too); a refused read gives
  nothing (``ValueError``): what the guard refused is not sent anywhere.

Built from the series *as the PACS sent it* (or as the folder holds it), never from OncoLens's
de-identified copy, so they land in the hospital's own study. ``read_volume_report`` and
``read_volume_segmentation`` read them back with plain pydicom for the tests and for anyone
checking what was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from models.dicom.results import MANUFACTURER, measurement_report_sr
from models.provenance import oncolens_version
from models.volumes.measure import SeriesRead, lesion_labels_on_source
from models.volumes.segment import VolumeRead

__all__ = [
    "VolumeResults",
    "build_volume_results",
    "read_volume_report",
    "read_volume_segmentation",
    "results_for_series",
]

SCHEME = "99ONCOLENS"  # private coding scheme, as models.dicom.results
SEG_SERIES_NUMBER = 9201
SR_SERIES_NUMBER = 9202
RESEARCH = "research use, not for diagnosis"
VOLUME = CodedConcept("118565006", "SCT", "Volume")
LONG_AXIS = CodedConcept("103339001", "SCT", "Long Axis")
PROBABILITY = CodedConcept("P-lesion", SCHEME, "Probability of lesion")
FINDING = CodedConcept("121071", "DCM", "Finding")
MASS = CodedConcept("4147007", "SCT", "Mass")
LESION_CATEGORY = CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
NO_LESION = CodedConcept("no-lesion", SCHEME, "no lesion")
LESION = CodedConcept("lesion", SCHEME, "lesion")
ML = CodedConcept("ml", "UCUM", "milliliter")
MM = CodedConcept("mm", "UCUM", "millimeter")
NO_UNITS = CodedConcept("1", "UCUM", "no units")


@dataclass(frozen=True)
class VolumeResults:
    """What goes back to the PACS for one series: the SEG (None without a lesion) and the SR."""

    segmentation: Dataset | None
    report: Dataset

    @property
    def datasets(self) -> list[Dataset]:
        return [d for d in (self.segmentation, self.report) if d is not None]


def _ordered_sources(datasets: Sequence[Dataset], sop_uids: Sequence[str]) -> list[Dataset]:
    """The series' datasets in the volume's slice order; every slice must be there exactly once."""
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    missing = [u for u in sop_uids if u not in by_uid]
    if missing or len(set(sop_uids)) != len(sop_uids):
        raise ValueError(
            f"the SEG needs every image of the series once; {len(missing)} of {len(sop_uids)} missing "
            "or a multi-frame source (not supported for SEG yet)"
        )
    return [by_uid[u] for u in sop_uids]


def _algorithm(read: VolumeRead, weights_sha256: str | None) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=read.model,
        version=read.model_version,
        family=codes.cid7162.ArtificialIntelligence,
        source="OncoLens",
        parameters={"weights_sha256": weights_sha256 or "not recorded"},
    )


def build_segmentation(
    sources: Sequence[Dataset], labels: np.ndarray, read: VolumeRead, weights_sha256: str | None
) -> Dataset | None:
    """The binary multi-frame SEG of ``labels`` (uint8 lesion numbers on the sources' grid,
    ``[slice, row, column]`` in the order of ``sources``); None when no lesion is outlined."""
    n = len(read.lesions)
    if n == 0 or not labels.any():
        return None
    first = sources[0]
    if labels.shape != (len(sources), int(first.Rows), int(first.Columns)):
        raise ValueError(f"labels {labels.shape} do not match the series' images")
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=f"AI lesion {k}",
            segmented_property_category=LESION_CATEGORY,
            segmented_property_type=MASS,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(read, weights_sha256),
            tracking_uid=hd.UID(),
            tracking_id=f"AI lesion {k}",
        )
        for k in range(1, n + 1)
    ]
    pixels = np.stack([labels == k for k in range(1, n + 1)], axis=-1).astype(np.uint8)
    return hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=f"OncoLens {read.model}"[:64],
        software_versions=oncolens_version(),
        device_serial_number="0",
        content_label="AI_LESIONS",
        content_description=f"AI lesion outline, {RESEARCH}"[:64],
        series_description=f"OncoLens AI lesions ({read.model} {read.model_version}), research use"[
            :64
        ],
    )


def _group(
    read: VolumeRead,
    k: int | None,
    sources: Sequence[Dataset],
    seg: Dataset | None,
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations | (
    hd.sr.MeasurementsAndQualitativeEvaluations
):
    """Lesion ``k``'s group (1-based), or the "no lesion" group when ``k`` is None."""
    if k is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="AI read"),
            finding_type=MASS,
            algorithm_id=algorithm,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(sources[0])],
            measurements=[]
            if read.probability is None
            else [
                hd.sr.Measurement(
                    PROBABILITY, round(float(read.probability), 4), NO_UNITS, algorithm_id=algorithm
                )
            ],
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(FINDING, NO_LESION)],
        )
    assert seg is not None  # a lesion always has its segment
    lesion = read.lesions[k - 1]
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"AI lesion {k}"),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=k,
            source_series=hd.sr.SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID)),
        ),
        finding_type=MASS,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(VOLUME, round(lesion.volume_ml, 4), ML, algorithm_id=algorithm),
            hd.sr.Measurement(
                LONG_AXIS, round(lesion.longest_axial_diameter_mm, 2), MM, algorithm_id=algorithm
            ),
            hd.sr.Measurement(
                PROBABILITY, round(lesion.probability, 4), NO_UNITS, algorithm_id=algorithm
            ),
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(FINDING, LESION)],
    )


def build_report(sources: Sequence[Dataset], read: VolumeRead, seg: Dataset | None) -> Dataset:
    """The TID 1500 report (Comprehensive 3D SR) of ``read`` over the series ``sources``."""
    algorithm = hd.sr.AlgorithmIdentification(name=read.model, version=read.model_version)
    numbers: list[int | None] = list(range(1, len(read.lesions) + 1)) if seg is not None else [None]
    return measurement_report_sr(
        read.model,
        read.model_version,
        [_group(read, k, sources, seg, algorithm) for k in numbers],
        [*sources, *([seg] if seg is not None else [])],
        series_number=SR_SERIES_NUMBER,
        description=f"OncoLens AI volume read ({read.model} {read.model_version}), research use",
    )


def build_volume_results(
    datasets: Sequence[Dataset],
    sop_uids: Sequence[str],
    labels: np.ndarray,
    read: VolumeRead,
    weights_sha256: str | None,
) -> VolumeResults:
    """SEG and SR of ``read`` over the series ``datasets``; ``sop_uids`` is the volume's slice
    order (``Volume.sop_instance_uids``) and ``labels`` the lesions on that grid
    (``measure.lesion_labels_on_source``). A refused read raises ``ValueError``."""
    if read.refused is not None:
        raise ValueError(f"the input guard refused this series; nothing is sent: {read.refused}")
    sources = _ordered_sources(datasets, sop_uids)
    seg = build_segmentation(sources, labels, read, weights_sha256)
    return VolumeResults(seg, build_report(sources, read, seg))


def results_for_series(series: SeriesRead) -> VolumeResults:
    """SEG and SR of one series' 3D read (``models.volumes.measure.read_series``), built from its
    own files: what ``oncolens predict --seg`` writes and the PACS receives. ``ValueError`` for a
    series without a read, or whose read was refused."""
    read, volume = series.read, series.volume
    if read is None or volume is None:
        raise ValueError(series.error or "this series has no 3D read")
    if read.refused is not None:
        raise ValueError(f"the input guard refused this series; nothing is sent: {read.refused}")
    datasets = [pydicom.dcmread(f) for f in series.files]
    labels = (
        lesion_labels_on_source(read, volume) if read.lesions else np.zeros(volume.shape, np.uint8)
    )
    return build_volume_results(
        datasets, volume.sop_instance_uids, labels, read, series.weights_sha256
    )


# --- reading back (plain pydicom) --------------------------------------------------------------


def _walk(items):
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"))


def read_volume_report(ds: Dataset) -> dict:
    """Per measurement group of an SR from ``build_report``: ``{"groups": [{"tracking": str,
    "finding": code, "segment": int | None, "measurements": {meaning: (value, unit)}}],
    "algorithm": (name, version)}``."""
    out: dict = {"groups": [], "algorithm": (None, None)}
    name = version = None
    for item in _walk(ds.get("ContentSequence")):
        concept = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
        meaning = str(concept.CodeMeaning) if concept is not None else None
        if item.ValueType == "CONTAINER" and meaning == "Measurement Group":
            group: dict = {"tracking": None, "finding": None, "segment": None, "measurements": {}}
            out["groups"].append(group)
            for sub in _walk(item.get("ContentSequence")):
                c = sub.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in sub else None
                m = str(c.CodeMeaning) if c is not None else None
                if sub.ValueType == "NUM" and "MeasuredValueSequence" in sub:
                    mv = sub.MeasuredValueSequence[0]
                    group["measurements"][m] = (
                        float(mv.NumericValue),
                        str(mv.MeasurementUnitsCodeSequence[0].CodeValue),
                    )
                elif sub.ValueType == "TEXT" and m == "Tracking Identifier":
                    group["tracking"] = str(sub.TextValue)
                elif sub.ValueType == "CODE" and m == FINDING.meaning:
                    group["finding"] = str(sub.ConceptCodeSequence[0].CodeValue)
                elif sub.ValueType == "IMAGE" and "ReferencedSOPSequence" in sub:
                    ref = sub.ReferencedSOPSequence[0]
                    if "ReferencedSegmentNumber" in ref:
                        group["segment"] = int(ref.ReferencedSegmentNumber)
        elif item.ValueType == "TEXT" and meaning == "Algorithm Name":
            name = str(item.TextValue)
        elif item.ValueType == "TEXT" and meaning == "Algorithm Version":
            version = str(item.TextValue)
    out["algorithm"] = (name, version)
    return out


def read_volume_segmentation(ds: Dataset, sop_uids: Sequence[str]) -> np.ndarray:
    """Lesion numbers (uint8) on the source grid ``[slice in sop_uids order, row, column]`` from a
    SEG's frames, by each frame's referenced source image and segment number (plain pydicom)."""
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[None]
    index = {u: i for i, u in enumerate(sop_uids)}
    out = np.zeros((len(sop_uids), int(ds.Rows), int(ds.Columns)), np.uint8)
    shared = (
        ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    )
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ident = item if "SegmentIdentificationSequence" in item else shared  # one segment: shared
        assert ident is not None, "a SEG frame without its segment number"
        segment = int(ident.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        k = index[str(source.ReferencedSOPInstanceUID)]
        out[k][frames[f].astype(bool)] = segment
    return out
