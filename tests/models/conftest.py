"""Fixtures for the model tests: phantom DICOM files written by the real writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom


def write_phantom(
    phantom: phantoms.Phantom, path: Path, patient_id: str = "TEST-1", date: str = "20250101"
) -> Path:
    return write_phantom_dicom(
        phantom,
        path,
        patient_id=patient_id,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date=date,
    )


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One malignant mammogram (25 mm mass), one normal mammogram, one brain slice with a 30 mm tumour, one without."""
    folder = tmp_path_factory.mktemp("phantoms")
    rng = np.random.default_rng
    return {
        "malignant": write_phantom(
            phantoms.mammogram(rng(11), "malignant", lesion_diameter_mm=25.0), folder / "mal.dcm"
        ),
        "normal": write_phantom(phantoms.mammogram(rng(12), "normal"), folder / "normal.dcm"),
        "tumour": write_phantom(
            phantoms.brain_mri(rng(13), True, lesion_diameter_mm=30.0), folder / "tumour.dcm"
        ),
        "no_tumour": write_phantom(phantoms.brain_mri(rng(14), False), folder / "no_tumour.dcm"),
    }
