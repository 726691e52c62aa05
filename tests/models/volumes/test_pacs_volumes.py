"""A volume through a real PACS: STOW a series to Orthanc, WADO the study back, read it as a volume."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from models import pacs
from models.volumes import read_volumes
from models.volumes.write import SeriesHeader, write_series

pytestmark = pytest.mark.filterwarnings("ignore")


def test_a_series_stored_on_the_pacs_comes_back_as_the_same_volume(orthanc, tmp_path) -> None:
    header = SeriesHeader(
        "CT", "PACS-VOL-1", "Pacs^Volume", generate_uid(), generate_uid(), generate_uid(),
        dt.date(2026, 2, 1), "CHEST", "CT thorax", "axial 3 mm",
    )  # fmt: skip
    values = np.random.default_rng(4).integers(-1000, 1200, (10, 32, 28))
    paths = write_series(
        values, tmp_path, header, origin_lps=(-40.0, -30.0, 12.0), pixel_spacing=(1.2, 1.2),
        slice_spacing=3.0, orientation=(1.0, 0.0, 0.0, 0.0, 0.96, -0.28),
    )  # fmt: skip
    local = read_volumes([tmp_path]).volumes[0]
    client = pacs.connect(pacs.PacsConfig(orthanc.dicomweb, orthanc.username, orthanc.password))
    stored = pacs.store_datasets(client, [pydicom.dcmread(p) for p in paths])
    assert len(stored["stored"]) == len(paths) and not stored["failed"]

    retrieved = list(pacs.retrieve_study(client, header.study_uid))
    assert all(r.error is None for r in retrieved)
    uploads = [(f"pacs:{r.sop_uid}", r.data) for r in retrieved if r.data is not None]
    result = read_volumes(uploads)
    (vol,) = result.volumes
    assert vol.series_instance_uid == header.series_uid and vol.patient_id == "PACS-VOL-1"
    np.testing.assert_array_equal(vol.pixels, local.pixels)
    np.testing.assert_allclose(vol.affine_lps, local.affine_lps, atol=1e-4)


def test_a_volume_and_its_seg_and_sr_make_the_round_trip_through_the_pacs(
    orthanc, brain_volume
) -> None:
    """STOW the series, its SEG and its SR; QIDO finds the three series of the study; WADO brings
    the SEG and SR back, and the mask and the numbers are what was sent."""
    # lazy: the SEG/SR builders (highdicom) only in the tests that need them
    from models.volumes.measure import SeriesRead, lesion_labels_on_source
    from models.volumes.results import (
        read_volume_report,
        read_volume_segmentation,
        results_for_series,
    )
    from tests.models.volumes.conftest import truth_read

    volume, vol, folder = brain_volume
    files = tuple(str(p) for p in sorted(folder.glob("*.dcm")))
    read = truth_read(volume, np.isin(vol.labels, (1, 3)))
    series = SeriesRead(volume.series_instance_uid, files, volume, read, "cd" * 32)
    objects = results_for_series(series)
    assert objects.segmentation is not None
    client = pacs.connect(pacs.PacsConfig(orthanc.dicomweb, orthanc.username, orthanc.password))
    sent = pacs.store_datasets(client, [pydicom.dcmread(f) for f in files] + objects.datasets)
    assert len(sent["stored"]) == len(files) + 2 and not sent["failed"]

    study = volume.study_instance_uid
    found = {
        pacs._value(s, "SeriesInstanceUID"): pacs._value(s, "Modality")
        for s in client.search_for_series(study_instance_uid=study)
    }
    assert found == {
        volume.series_instance_uid: "MR",
        str(objects.segmentation.SeriesInstanceUID): "SEG",
        str(objects.report.SeriesInstanceUID): "SR",
    }
    seg_back = pydicom.dcmread(
        io.BytesIO(
            pacs.retrieve_instance_bytes(
                client,
                study,
                str(objects.segmentation.SeriesInstanceUID),
                str(objects.segmentation.SOPInstanceUID),
            )
        )
    )
    sr_back = pydicom.dcmread(
        io.BytesIO(
            pacs.retrieve_instance_bytes(
                client,
                study,
                str(objects.report.SeriesInstanceUID),
                str(objects.report.SOPInstanceUID),
            )
        )
    )
    assert seg_back.FrameOfReferenceUID == volume.frame_of_reference_uid
    np.testing.assert_array_equal(
        read_volume_segmentation(seg_back, volume.sop_instance_uids),
        lesion_labels_on_source(read, volume),
    )
    (group,) = read_volume_report(sr_back)["groups"]
    assert group["segment"] == 1
    assert group["measurements"]["Volume"][0] == pytest.approx(read.lesions[0].volume_ml, abs=1e-4)
    assert group["measurements"]["Long Axis"][0] == pytest.approx(
        read.lesions[0].longest_axial_diameter_mm, abs=0.01
    )
