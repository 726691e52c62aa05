"""Brain MR and thorax CT volumes written as DICOM series and read back: the 3D read's real inputs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from models.volumes import phantoms, read_volumes
from models.volumes.write import SeriesHeader, write_series


def write_phantom_series(vol: phantoms.PhantomVolume, folder: Path, modality: str) -> Path:
    """``vol`` as a DICOM series under ``folder`` (the demo's writer), returning the folder."""
    header = SeriesHeader(
        modality, "T1", "TEST^VOLUME", generate_uid(), generate_uid(), generate_uid(),
        dt.date(2026, 1, 5), "BRAIN" if modality == "MR" else "CHEST", "test", "axial",
    )  # fmt: skip
    write_series(
        vol.values,
        folder,
        header,
        origin_lps=vol.origin_lps,
        pixel_spacing=(vol.spacing_mm[1], vol.spacing_mm[2]),
        slice_spacing=vol.spacing_mm[0],
    )
    return folder


@pytest.fixture(scope="session")
def brain_volume(tmp_path_factory):
    """A held-out brain MR (seed stream no training uses) with a 26 mm metastasis, read from DICOM
    (the size the card says the model finds: 8 of 8 from 20 mm)."""
    rng = np.random.default_rng([4242, 1])
    site = phantoms.brain_lesion(rng, 26.0)
    vol = phantoms.brain_mr(rng, site, 26.0)
    folder = write_phantom_series(vol, tmp_path_factory.mktemp("brain") / "series", "MR")
    (volume,) = read_volumes([folder]).volumes
    return volume, vol, folder


@pytest.fixture(scope="session")
def thorax_volume(tmp_path_factory):
    rng = np.random.default_rng([4242, 2])
    vol = phantoms.thorax_ct(rng, phantoms.thorax_lesion(rng, 20.0), 20.0)
    folder = write_phantom_series(vol, tmp_path_factory.mktemp("thorax") / "series", "CT")
    (volume,) = read_volumes([folder]).volumes
    return volume, vol, folder


def truth_read(volume, mask: np.ndarray, *, refused: bool = False, model_version: str = "1.0.0"):
    """A ``VolumeRead`` whose mask is ``mask`` (bool, on ``volume``'s own grid): the ground truth
    standing in for the model, so tests of what is built from a read never pin the weights' output
    (the 3D model is retrained independently)."""
    # lazy: segment imports torch and MONAI's helpers; only the tests that build reads need it
    from models.volumes.segment import VolumeCheck, VolumeRead, measure

    if refused:
        check = VolumeCheck(
            False, 9.0, 1.5, "this volume does not look like the training volumes", 9.0
        )
        return VolumeRead(
            "brain_mets_3d", model_version, "test", volume.series_instance_uid, volume.modality,
            None, None, (), None, None, check, 1.0,
        )  # fmt: skip
    kept, lesions = measure(mask, mask.astype(np.float32), volume.spacing_mm)
    check = VolumeCheck(True, 0.5, 1.5, "", 0.5)
    return VolumeRead(
        "brain_mets_3d", model_version, "test", volume.series_instance_uid, volume.modality,
        "lesion" if lesions else "no lesion", 1.0 if lesions else 0.1, lesions,
        kept, volume.affine_ras, check, 1.0,
    )  # fmt: skip
