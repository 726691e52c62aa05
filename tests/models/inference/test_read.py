"""models.inference.read: the AI read of phantom DICOM files, coverage rules, and every kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from models.inference.read import iter_dicom_paths, predict_file
from models.inference.registry import load_model

pytestmark = pytest.mark.filterwarnings("ignore")
CONTRACT_KEYS = {"file", "model", "model_version", "label", "probabilities", "lesion", "latency_ms"}


@pytest.fixture(scope="module")
def load():
    cache = {}

    def _load(name):
        if name not in cache:
            cache[name] = load_model(name, device="cpu")
        return cache[name]

    return _load


def test_malignant_mammogram_is_read_and_measured(phantom_files, load) -> None:
    r = predict_file(phantom_files["malignant"], load)
    assert CONTRACT_KEYS <= r.keys()
    assert r["model"] == "mammography" and r["modality"] == "MG"
    assert set(r["probabilities"]) == {"normal", "benign", "malignant"}
    assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert r["label"] in ("benign", "malignant")
    # the 25 mm phantom mass, measured on the model's own outline
    assert r["lesion"]["longest_diameter_mm"] == pytest.approx(25.0, abs=6.0)
    assert r["lesion"]["area_mm2"] > 0


def test_brain_tumour_is_read_and_measured(phantom_files, load) -> None:
    r = predict_file(phantom_files["tumour"], load)
    assert r["model"] == "brain_mri" and r["label"] == "tumour"
    assert r["probabilities"]["tumour"] > 0.5
    assert r["lesion"]["longest_diameter_mm"] == pytest.approx(30.0, abs=6.0)


def test_images_without_a_lesion_get_no_measurement(phantom_files, load) -> None:
    r = predict_file(phantom_files["no_tumour"], load)
    assert r["label"] == "no_tumour" and r["lesion"] is None
    n = predict_file(phantom_files["normal"], load)
    assert n["label"] != "normal" or n["lesion"] is None


def test_a_ct_is_not_given_a_wrong_answer(load) -> None:
    r = predict_file(Path(get_testdata_file("CT_small.dcm")), load)
    assert "no model for this image" in r["error"] and "CT" in r["error"]
    assert "label" not in r


def test_forcing_a_model_onto_the_wrong_modality_is_refused(phantom_files, load) -> None:
    r = predict_file(phantom_files["tumour"], load, requested="mammography")
    assert "MG" in r["error"] and "label" not in r
    r = predict_file(phantom_files["tumour"], load, requested="nonsense")
    assert "unknown model" in r["error"]


def test_same_file_same_answer(phantom_files, load) -> None:
    a, b = (
        predict_file(phantom_files["malignant"], load),
        predict_file(phantom_files["malignant"], load),
    )
    assert a["probabilities"] == b["probabilities"] and a["lesion"] == b["lesion"]


def test_bad_files_each_get_an_error_and_good_ones_their_read(
    tmp_path: Path, phantom_files, load
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = Path(shutil.copy(phantom_files["tumour"], folder / "good.dcm"))
    data = good.read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (folder / "random.dcm").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "empty.dcm").write_bytes(b"")
    png = Path(
        shutil.copy(phantom_files["tumour"].with_name("tumour_mask.png"), folder / "image.dcm")
    )
    ds = pydicom.dcmread(good)
    ds.Rows = ds.Columns = 65535
    ds.save_as(folder / "huge.dcm")
    results = {
        Path(r["file"]).name: r for r in (predict_file(p, load) for p in iter_dicom_paths([folder]))
    }
    assert set(results) == {
        "good.dcm",
        "truncated.dcm",
        "random.dcm",
        "empty.dcm",
        "image.dcm",
        "huge.dcm",
    }
    assert results["good.dcm"]["label"] == "tumour"
    for name in ("truncated.dcm", "random.dcm", "empty.dcm", "image.dcm", "huge.dcm"):
        assert results[name]["error"], name
        assert "Traceback" not in results[name]["error"]
    assert (
        "large" in results["huge.dcm"]["error"].lower()
        or "size" in results["huge.dcm"]["error"].lower()
    )
    assert png.exists()
    missing = predict_file(tmp_path / "nope.dcm", load)
    assert "no such file" in missing["error"].lower() or missing["error"] == "file not found"


def test_every_pydicom_test_file_gets_a_read_or_a_clean_error(load) -> None:
    files = [
        Path(f)
        for f in get_testdata_files()
        if not f.endswith((".py", ".json", ".txt", ".gz", ".bz2"))
    ]
    assert len(files) > 50
    reads = errors = 0
    for path in files:
        r = predict_file(path, load)
        assert r["file"] == str(path)
        if "error" in r:
            assert isinstance(r["error"], str) and r["error"]
            errors += 1
        else:
            assert CONTRACT_KEYS <= r.keys()
            reads += 1
    assert errors > 0  # the corpus is mostly CT/MR of other body parts: refused, not guessed at
