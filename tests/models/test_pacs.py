"""models.pacs and models.dicom.results against a real Orthanc (DICOMweb): search, retrieve, errors, SEG/SR round trip."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from pydicom.uid import generate_uid

from models import pacs
from models.dicom.reader import read_dicom
from models.dicom.results import LONG_AXIS, build_results, read_report, read_segmentation_mask
from models.inference.read import read_image
from models.inference.registry import load_model
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom


def _phantom_file(
    path: Path, *, patient_id: str, date: str, accession: str, brain: bool = False, seed: int = 11
):
    rng = np.random.default_rng(seed)
    ph = (
        phantoms.brain_mri(rng, True, lesion_diameter_mm=30.0)
        if brain
        else phantoms.mammogram(rng, "malignant", lesion_diameter_mm=25.0)
    )
    return write_phantom_dicom(
        ph,
        path,
        patient_id=patient_id,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date=date,
        accession_number=accession,
    )


def _client(orthanc, user=None, password=None):
    return pacs.connect(
        pacs.PacsConfig(
            orthanc.dicomweb,
            user or orthanc.username,
            password if password is not None else orthanc.password,
        )
    )


def test_config_comes_from_secrets_or_environment_never_printed():
    env = {
        pacs.ENV_URL: "http://pacs.example/dicom-web/",
        pacs.ENV_USER: "u",
        pacs.ENV_PASSWORD: "s3cret",
    }
    c = pacs.PacsConfig.resolve(environ=env)
    assert (c.url, c.username, c.password) == ("http://pacs.example/dicom-web", "u", "s3cret")
    assert "s3cret" not in repr(c)
    c = pacs.PacsConfig.resolve(
        secrets={"url": "https://a/dw", "username": "x", "password": "y"}, environ=env
    )
    assert (c.url, c.username, c.password) == ("https://a/dw", "x", "y")
    assert (
        pacs.PacsConfig.resolve(url="http://b/dw", environ=env).username == "u"
    )  # URL override keeps creds
    with pytest.raises(pacs.PacsNotConfiguredError, match="no PACS configured"):
        pacs.PacsConfig.resolve(environ={})
    with pytest.raises(pacs.PacsNotConfiguredError, match="http"):
        pacs.PacsConfig.resolve(url="ftp://x", environ={})


def test_search_and_retrieve(orthanc, tmp_path):
    client = _client(orthanc)
    mg = _phantom_file(
        tmp_path / "mg.dcm", patient_id="PACS-SEARCH-1", date="20240305", accession="ACC-S1"
    )
    mr = _phantom_file(
        tmp_path / "mr.dcm",
        patient_id="PACS-SEARCH-1",
        date="20240610",
        accession="ACC-S2",
        brain=True,
        seed=13,
    )
    answer = pacs.store_datasets(client, [pydicom.dcmread(mg)])
    pacs.store_datasets(client, [pydicom.dcmread(mr)])
    assert answer["stored"] == [str(pydicom.dcmread(mg).SOPInstanceUID)] and not answer["failed"]

    by_patient = pacs.search_studies(client, patient_id="PACS-SEARCH-1")
    assert [s["AccessionNumber"] for s in by_patient] == ["ACC-S2", "ACC-S1"]  # newest first
    assert (
        pacs.search_studies(client, patient_id="PACS-SEARCH-1", modality="MG")[0]["AccessionNumber"]
        == "ACC-S1"
    )
    assert [s["AccessionNumber"] for s in pacs.search_studies(client, accession="ACC-S2")] == [
        "ACC-S2"
    ]
    in_range = pacs.search_studies(
        client,
        patient_id="PACS-SEARCH-1",
        date_from=dt.date(2024, 6, 1),
        date_to=dt.date(2024, 6, 30),
    )
    assert [s["AccessionNumber"] for s in in_range] == ["ACC-S2"]
    assert (
        pacs.search_studies(client, patient_id="PACS-SEARCH-1", date_to=dt.date(2023, 12, 31)) == []
    )

    study = pydicom.dcmread(mg).StudyInstanceUID
    got = list(pacs.retrieve_study(client, study))
    assert len(got) == 1 and got[0].error is None
    back = read_dicom(io.BytesIO(got[0].data))
    assert np.array_equal(back.pixels, read_dicom(mg).pixels)


def test_wrong_credentials_unreachable_and_missing_study(orthanc):
    with pytest.raises(pacs.PacsAuthError, match="refused the credentials"):
        pacs.check_connection(_client(orthanc, password="wrong"))
    with socket_closed_port() as port:
        with pytest.raises(pacs.PacsUnreachableError, match="cannot reach"):
            pacs.check_connection(
                pacs.connect(pacs.PacsConfig(f"http://127.0.0.1:{port}/dicom-web"))
            )
    missing = list(pacs.retrieve_study(_client(orthanc), generate_uid()))
    assert len(missing) == 1 and "not on the PACS" in missing[0].error


class socket_closed_port:
    """A port nothing listens on (bound then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None


def corrupt_instance(source: Path, patient_id: str) -> bytes:
    """A DICOM file whose header is valid but whose pixel data stops at a third: a PACS keeps such files."""
    ds = pydicom.dcmread(source)
    ds.PatientID = patient_id
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def upload_raw(orthanc, data: bytes) -> None:
    r = requests.post(
        f"{orthanc.url}/instances", data=data, auth=(orthanc.username, orthanc.password), timeout=10
    )
    r.raise_for_status()


@pytest.mark.parametrize("kind", ["mammography", "brain_mri"])
def test_seg_and_sr_round_trip_through_the_pacs(orthanc, tmp_path, kind):
    """What a radiologist's viewer would get: the SEG mask and the SR numbers, read back by WADO-RS."""
    client = _client(orthanc)
    path = _phantom_file(
        tmp_path / "x.dcm",
        patient_id="PACS-RT",
        date="20240101",
        accession="ACC-RT",
        brain=kind == "brain_mri",
        seed=13 if kind == "brain_mri" else 11,
    )
    source = pydicom.dcmread(path)
    ai = read_image(load_model(kind), read_dicom(path))
    assert ai.lesion_mask is not None and ai.lesion is not None
    objects = build_results(source, ai)
    stored = pacs.store_datasets(client, [objects.segmentation, objects.report])
    assert sorted(stored["stored"]) == sorted(
        [objects.segmentation.SOPInstanceUID, objects.report.SOPInstanceUID]
    )

    study = str(source.StudyInstanceUID)
    seg = client.retrieve_instance(
        study, objects.segmentation.SeriesInstanceUID, objects.segmentation.SOPInstanceUID
    )
    sr = client.retrieve_instance(
        study, objects.report.SeriesInstanceUID, objects.report.SOPInstanceUID
    )
    assert (
        seg.Modality == "SEG" and sr.Modality == "SR" and seg.PatientID == sr.PatientID == "PACS-RT"
    )
    assert np.array_equal(read_segmentation_mask(seg), ai.lesion_mask)
    assert seg.SegmentSequence[0].SegmentAlgorithmName == kind
    parsed = read_report(sr)
    assert parsed["finding"] == ai.label
    assert parsed["algorithm"] == (ai.model, ai.model_version)
    value, unit = parsed["measurements"][LONG_AXIS.meaning]
    assert unit == "mm" and value == pytest.approx(ai.lesion.longest_diameter_mm, abs=1e-3)
    for label, p in ai.probabilities.items():
        assert parsed["measurements"][f"Probability of {label.replace('_', ' ')}"][
            0
        ] == pytest.approx(p, abs=1e-6)
