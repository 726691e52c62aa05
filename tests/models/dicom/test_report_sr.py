"""``models.dicom.results.measurement_report_sr``: the TID 1500 / Comprehensive 3D SR tail that the
2D and the 3D reports share (issue 21 leftovers: one helper, not two copies)."""

from __future__ import annotations

import io

import highdicom as hd
import pydicom
import pydicom.data
import pytest
from pydicom.uid import Comprehensive3DSRStorage

from models.dicom.results import (
    FINDING,
    MANUFACTURER,
    label_concept,
    measurement_report_sr,
    read_report,
)

pytestmark = pytest.mark.filterwarnings("ignore")


def _report(description: str, series_number: int = 9999):
    source = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    algorithm = hd.sr.AlgorithmIdentification(name="toy", version="0.1")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="AI lesion 1"),
        algorithm_id=algorithm,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(FINDING, label_concept("lesion"))],
    )
    sr = measurement_report_sr(
        "toy", "0.1", [group], [source], series_number=series_number, description=description
    )
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)  # a valid file, not only an object
    return source, pydicom.dcmread(io.BytesIO(buf.getvalue()))


def test_the_shared_report_is_a_research_sr_naming_the_model_over_its_evidence() -> None:
    source, ds = _report("OncoLens test report")
    assert ds.SOPClassUID == Comprehensive3DSRStorage
    assert ds.SeriesNumber == 9999 and ds.InstanceNumber == 1
    assert ds.SeriesDescription == "OncoLens test report"
    assert ds.Manufacturer == MANUFACTURER
    # complete, never final nor verified: a research read a clinician must confirm
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "UNVERIFIED"
    assert ds.PreliminaryFlag == "PRELIMINARY"
    assert ds.StudyInstanceUID == source.StudyInstanceUID  # filed in the source's study
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
    refs = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == [source.SOPInstanceUID]
    said = read_report(ds)
    assert said["algorithm"] == ("toy", "0.1") and said["finding"] == "lesion"
    observers = [
        str(item.TextValue)
        for item in _walk(ds.ContentSequence)
        if item.ValueType == "TEXT"
        and item.ConceptNameCodeSequence[0].CodeMeaning == "Device Observer Name"
    ]
    assert observers == ["OncoLens toy"]


def test_a_long_description_is_cut_to_the_64_characters_dicom_allows() -> None:
    _, ds = _report("x" * 100)
    assert ds.SeriesDescription == "x" * 64


def _walk(items):
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"))
