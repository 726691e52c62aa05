"""A volume through a real PACS: STOW a series to Orthanc, WADO the study back, read it as a volume."""

from __future__ import annotations

import datetime as dt

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
