"""SEG and SR of a 3D read, built from a real demo-writer series and read back with pydicom and
highdicom: geometry, references and the mask itself match the source and the read."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from models.volumes import geometry
from models.volumes.measure import SeriesRead, lesion_centres_lps, lesion_labels_on_source
from models.volumes.results import (
    read_volume_report,
    read_volume_segmentation,
    results_for_series,
)
from models.volumes.segment import VolumeRead, measure
from tests.models.volumes.conftest import truth_read

pytestmark = pytest.mark.filterwarnings("ignore")


def _two_lesions(vol) -> np.ndarray:
    """The drawn metastasis (core + rim) and a second, separate 3-voxel-wide cube far from it."""
    mask = np.isin(vol.labels, (1, 3))
    assert mask.any()
    z = int(round(np.argwhere(mask)[:, 0].mean()))
    far = np.zeros_like(mask)
    far[z - 1 : z + 2, 10:13, 10:13] = True
    assert not (far & ndimage.binary_dilation(mask, iterations=2)).any()  # two components
    return mask | far


@pytest.fixture(scope="module")
def series(brain_volume) -> SeriesRead:
    volume, vol, folder = brain_volume
    read = truth_read(volume, _two_lesions(vol))
    files = tuple(str(p) for p in sorted(folder.glob("*.dcm")))
    return SeriesRead(volume.series_instance_uid, files, volume, read, "ab" * 32)


def test_seg_references_the_source_series_and_holds_the_read_s_mask(series, tmp_path) -> None:
    volume, read = series.volume, series.read
    assert volume is not None and read is not None and len(read.lesions) == 2
    objects = results_for_series(series)
    seg = objects.segmentation
    assert seg is not None
    path = tmp_path / "seg.dcm"
    seg.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    # geometry: the source's frame of reference, study and patient; every source image referenced
    assert (
        back.FrameOfReferenceUID == volume.frame_of_reference_uid == sources[0].FrameOfReferenceUID
    )
    assert (
        back.StudyInstanceUID == volume.study_instance_uid and back.PatientID == volume.patient_id
    )
    assert back.SeriesInstanceUID != volume.series_instance_uid and back.Modality == "SEG"
    (ref_series,) = back.ReferencedSeriesSequence
    assert ref_series.SeriesInstanceUID == volume.series_instance_uid
    assert {str(i.ReferencedSOPInstanceUID) for i in ref_series.ReferencedInstanceSequence} == set(
        volume.sop_instance_uids
    )
    # the mask: frame by frame, by each frame's source image and segment number, equals the read's
    expected = lesion_labels_on_source(read, volume)
    np.testing.assert_array_equal(
        read_volume_segmentation(back, volume.sop_instance_uids), expected
    )
    assert ((expected > 0) == (read.mask > 0)).all()  # the source grid is the model grid here
    for k, lesion in enumerate(read.lesions, start=1):
        voxels = int((expected == k).sum())
        assert voxels * np.prod(volume.spacing_mm) / 1000.0 == pytest.approx(lesion.volume_ml)
    # the algorithm and the research-use wording
    assert len(back.SegmentSequence) == 2
    for item in back.SegmentSequence:
        assert item.SegmentAlgorithmType == "AUTOMATIC" and item.SegmentAlgorithmName == read.model
    assert "research use" in back.SeriesDescription and "research use" in back.ContentDescription
    # highdicom reads it as a segmentation of that series, with the same masks per segment
    hseg = hd.seg.segread(path)
    assert hseg.get_source_image_uids()[0][1] == volume.series_instance_uid
    for k in (1, 2):
        got = hseg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(volume.sop_instance_uids), segment_numbers=[k]
        )[..., 0]
        np.testing.assert_array_equal(got.astype(bool), expected == k)


def test_sr_carries_each_lesion_s_volume_and_diameter_pointing_at_its_segment(
    series, tmp_path
) -> None:
    read = series.read
    assert read is not None
    objects = results_for_series(series)
    path = tmp_path / "sr.dcm"
    objects.report.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
    assert back.StudyInstanceUID == series.volume.study_instance_uid
    assert "research use" in back.SeriesDescription
    report = read_volume_report(back)
    assert report["algorithm"] == (read.model, read.model_version)
    assert [g["segment"] for g in report["groups"]] == [1, 2]
    for group, lesion in zip(report["groups"], read.lesions, strict=True):
        assert group["finding"] == "lesion"
        assert group["measurements"]["Volume"] == (pytest.approx(lesion.volume_ml, abs=1e-4), "ml")
        assert group["measurements"]["Long Axis"] == (
            pytest.approx(lesion.longest_axial_diameter_mm, abs=0.01),
            "mm",
        )
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for s in back.CurrentRequestedProcedureEvidenceSequence
        for se in s.ReferencedSeriesSequence
        for i in se.ReferencedSOPSequence
    }
    assert (
        set(series.volume.sop_instance_uids) | {str(objects.segmentation.SOPInstanceUID)}
        == evidence
    )
    # highdicom parses it as a TID 1500 report with volumetric groups
    parsed = hd.sr.srread(path)
    groups = parsed.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2


def test_a_read_without_lesion_sends_a_report_only_and_a_refused_read_nothing(brain_volume) -> None:
    volume, _, folder = brain_volume
    files = tuple(str(p) for p in sorted(folder.glob("*.dcm")))
    empty = truth_read(volume, np.zeros(volume.shape, bool))
    objects = results_for_series(SeriesRead(volume.series_instance_uid, files, volume, empty, None))
    assert objects.segmentation is None and len(objects.datasets) == 1
    (group,) = read_volume_report(objects.report)["groups"]
    assert group["finding"] == "no-lesion" and group["segment"] is None
    refused = truth_read(volume, np.zeros(volume.shape, bool), refused=True)
    with pytest.raises(ValueError, match="refused"):
        results_for_series(SeriesRead(volume.series_instance_uid, files, volume, refused, None))


def test_labels_follow_the_patient_through_another_grid_orientation(brain_volume) -> None:
    """A model grid flipped left-right and shifted by whole voxels: the lesion lands on the same
    source voxels, and its centre is the same point in patient coordinates."""
    volume, vol, _ = brain_volume
    truth = np.isin(vol.labels, (1, 3))
    flip = np.eye(4)
    n = volume.shape[2]
    flip[2, 2], flip[2, 3] = -1.0, n - 1  # model column c is source column n - 1 - c
    shift = np.eye(4)
    shift[:3, 3] = (3, -2, 0)  # model index i is source index i + (3, -2, 0)
    to_source = shift @ flip
    model_mask = np.zeros_like(truth)
    idx = np.argwhere(truth)
    model_idx = (
        (np.linalg.inv(to_source) @ np.c_[idx, np.ones(len(idx))].T).T[:, :3].round().astype(int)
    )
    model_mask[tuple(model_idx.T)] = True
    on_source = truth_read(volume, truth)
    kept, lesions = measure(model_mask, model_mask.astype(np.float32), volume.spacing_mm)
    moved = VolumeRead(
        on_source.model, on_source.model_version, "test", on_source.series_instance_uid, "MR",
        "lesion", 1.0, lesions, kept, volume.affine_ras @ to_source, on_source.input_check, 1.0,
    )  # fmt: skip
    labels = lesion_labels_on_source(moved, volume)
    np.testing.assert_array_equal(labels > 0, truth)
    a, b = lesion_centres_lps(moved)[0], lesion_centres_lps(on_source)[0]
    assert np.allclose(a, b, atol=2.01)  # centre voxels are truncated: within a voxel (2 mm)
    lps = volume.affine_lps @ [*on_source.lesions[0].centre_voxel, 1.0]
    assert np.allclose(b, lps[:3], atol=0.01)
    assert geometry.axis_codes(volume.affine_lps) == "SPL"
