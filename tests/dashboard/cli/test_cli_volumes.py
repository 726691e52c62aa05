"""`oncolens predict` on a 3D series (one answer per series, no slice-by-slice 2D reads) and
`oncolens demo --volumes`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dashboard.cli.main import main
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from models.volumes.write import SeriesHeader, write_series

pytestmark = pytest.mark.filterwarnings("ignore")


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_predict_names_a_volume_series_once_and_still_reads_2d_images(tmp_path, capsys) -> None:
    header = SeriesHeader(
        "MR",
        "P1",
        "A^B",
        generate_uid(),
        generate_uid(),
        generate_uid(),
        dt.date(2026, 1, 1),
        "BRAIN",
        "MR brain",
        "AX T1",
    )
    values = np.random.default_rng(0).integers(0, 900, (16, 64, 64))
    write_series(
        values,
        tmp_path / "series",
        header,
        origin_lps=(0, 0, 0),
        pixel_spacing=(1, 1),
        slice_spacing=2,
    )
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(2), True, lesion_diameter_mm=28.0),
        tmp_path / "slice2d.dcm",
        patient_id="P1",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20250301",
    )
    assert main(["predict", str(tmp_path), "--json"]) == 1  # the volume is an input not read
    captured = capsys.readouterr()
    volume, image = _lines(captured.out)
    assert volume["series_instance_uid"] == header.series_uid and volume["images"] == 16
    assert volume["error_type"] == "NoVolumeModelError" and "no 3D model" in volume["error"]
    assert Path(volume["file"]) == tmp_path / "series"
    assert image["model"] == "brain_mri" and Path(image["file"]).name == "slice2d.dcm"
    assert "1 of 2" in captured.err and "Traceback" not in captured.err


@pytest.mark.slow
def test_demo_writes_volumes_on_request(tmp_path, capsys) -> None:
    db = tmp_path / "clinic.duckdb"
    args = ["demo", "--patients", "300", "--seed", "7", "--db", str(db), "--images", "0"]
    assert main([*args, "--no-model", "--volumes", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = Path(out["volumes_dir"])
    assert folder == tmp_path / "clinic_volumes" and out["volumes"] >= 2
    manifest = json.loads((folder / "volumes.json").read_text())
    assert len(manifest["series"]) == out["volumes"]
    assert {s["modality"] for s in manifest["series"]} == {"MR", "CT"}
