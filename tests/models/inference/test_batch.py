"""models.inference.batch: the batched full read says exactly what ``predict_file`` says, file by
file (demo images, refused images, bad files), in worker processes too, and survives a worker crash."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from models.inference import batch
from models.inference.loader import ModelLoader
from models.inference.read import classify_batches, iter_dicom_paths, predict_file
from models.training.ood import ood_images, write_ood_dicom
from sample_data.demo_imaging import write_demo_images

pytestmark = pytest.mark.filterwarnings("ignore")
TIMING_KEYS = ("latency_ms", "inference_ms")


@pytest.fixture(scope="module")
def mixed_folder(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo images (mammograms and brain MR of the demo clinic), images the input guard refuses,
    a CT no model covers, a blank frame the sanity gate refuses, and broken files."""
    root = tmp_path_factory.mktemp("batch_read")
    db = Path(shutil.copy(demo_db, root / "clinic.duckdb"))
    write_demo_images(db, root / "images" / "demo", patients=4, seed=3)
    odd = root / "images" / "odd"
    odd.mkdir()
    for k, image in enumerate(ood_images("mammography", seed=1, n_other_phantoms=2)[:6]):
        write_ood_dicom(image, "mammography", odd / f"ood_{k}.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), odd / "ct.dcm")
    good = next(iter_dicom_paths([root / "images" / "demo"]))
    ds = pydicom.dcmread(good)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), dtype=np.uint16).tobytes()
    ds.save_as(odd / "blank.dcm")
    data = good.read_bytes()
    (odd / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (odd / "random.dcm").write_bytes(np.random.default_rng(0).bytes(5000))
    (odd / "empty.dcm").write_bytes(b"")
    return root / "images"


def _without_timing(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in TIMING_KEYS}


def _assert_same(batched: list[dict], single: list[dict]) -> None:
    assert [r["file"] for r in batched] == [r["file"] for r in single]
    for b, s in zip(batched, single, strict=True):
        assert b.keys() == s.keys(), b["file"]
        assert b.get("label") == s.get("label"), b["file"]
        assert b.get("refused") == s.get("refused"), b["file"]
        assert b.get("error") == s.get("error"), b["file"]
        for k, p in (s.get("probabilities") or {}).items():
            assert b["probabilities"][k] == pytest.approx(p, abs=1e-6), b["file"]
        assert _without_timing({**b, "probabilities": None}) == _without_timing(
            {**s, "probabilities": None}
        ), b["file"]


@pytest.fixture(scope="module")
def single(mixed_folder: Path) -> list[dict]:
    load = ModelLoader()
    return [predict_file(p, load) for p in iter_dicom_paths([mixed_folder])]


def test_the_folder_has_every_kind_of_outcome(single: list[dict]) -> None:
    """The comparison below is only worth something if the folder holds reads with an outline,
    reads without, refusals by the input guard, refusals by the sanity gate and broken files."""
    assert any(r.get("lesion") for r in single)
    assert any(r.get("label") and not r.get("lesion") for r in single)
    assert any(r.get("refused") for r in single)
    assert any(r.get("error_type") == "ImplausibleImageError" for r in single)
    assert any(r.get("error_type") == "NoModelForImageError" for r in single)
    assert sum("error" in r for r in single) >= 5


def test_batched_read_in_one_process_equals_the_single_read(
    mixed_folder: Path, single: list[dict]
) -> None:
    files = list(iter_dicom_paths([mixed_folder]))
    _assert_same(batch.read_files(files, ModelLoader()), single)


def test_worker_processes_give_the_same_results_in_input_order(
    mixed_folder: Path, single: list[dict]
) -> None:
    files = list(iter_dicom_paths([mixed_folder]))
    results = list(batch.predict_files(files, workers=2, chunk=5))
    _assert_same(results, single)


def test_a_forced_model_is_applied_and_checked_as_in_the_single_read(mixed_folder: Path) -> None:
    files = list(iter_dicom_paths([mixed_folder / "demo"]))
    load = ModelLoader()
    single = [predict_file(p, load, "brain_mri") for p in files]
    _assert_same(batch.read_files(files, load, "brain_mri"), single)
    assert any("error" in r for r in single) and any("label" in r for r in single)


def test_a_crashed_worker_costs_only_its_own_file(
    mixed_folder: Path, single: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder that kills its process (simulated: the file named ``random.dcm`` ends the
    worker at once) is reported for that file alone; every other file keeps its read."""
    real = batch.read_dicom

    def crashing(path, *args, **kwargs):
        if Path(path).name == "random.dcm":
            os._exit(70)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batch, "read_dicom", crashing)  # forked workers inherit the patch
    files = list(iter_dicom_paths([mixed_folder]))
    results = list(batch.predict_files(files, workers=2, chunk=4))
    assert [r["file"] for r in results] == [str(f) for f in files]
    crashed = [r for r in results if r.get("error_type") == "ReaderCrashed"]
    assert [Path(r["file"]).name for r in crashed] == ["random.dcm"]
    _assert_same(
        [r for r in results if r not in crashed],
        [s for s in single if Path(s["file"]).name != "random.dcm"],
    )


def test_classify_batches_applies_the_sanity_gate(mixed_folder: Path) -> None:
    blank = mixed_folder / "odd" / "blank.dcm"
    demo = next(iter_dicom_paths([mixed_folder / "demo"]))
    model = ModelLoader()("mammography")
    (p1, probs1, err1), (p2, probs2, err2) = classify_batches(model, [blank, demo])
    assert probs1 is None and "same value" in str(err1)
    assert probs2 is not None and err2 is None


def test_default_workers_is_the_cores_this_process_may_use() -> None:
    assert batch.default_workers() == len(os.sched_getaffinity(0))
