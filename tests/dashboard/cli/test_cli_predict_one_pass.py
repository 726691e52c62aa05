"""`oncolens predict` parses each file once (issue 23): the series scan and the 2D reads in one pass
of the worker processes (``models.inference.batch.scan_and_read``). Its output must be the two-pass
command's, line for line: the same volumes, the same 2D reads, errors and refusals, in the same order,
with series split across chunks and files the scan and the reader treat differently (no preamble,
broken, empty, a zip, a DICOMDIR)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dashboard.cli import imaging as cli_imaging
from dashboard.cli.main import main
from models.inference import batch
from models.inference.loader import ModelLoader
from models.inference.read import iter_dicom_paths, predict_file
from models.training.ood import ood_images, write_ood_dicom
from models.volumes import scan_series
from models.volumes.write import SeriesHeader, write_series
from sample_data.demo_imaging import write_demo_images

pytestmark = pytest.mark.filterwarnings("ignore")
TIMING_KEYS = ("latency_ms", "inference_ms")


@pytest.fixture(scope="module")
def folder(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo mammograms and brain MR, images the input guard refuses, two stacks of slices (volumes: 9 and 5 slices, which chunks
    of 4 split so that some chunks hold fewer than 3 of a series' slices), a single positioned
    slice, pydicom's test files, a file without the 128-byte preamble, broken and empty files, a
    zip and a DICOMDIR."""
    root = tmp_path_factory.mktemp("one_pass")
    db = Path(shutil.copy(demo_db, root / "clinic.duckdb"))
    images = root / "images"
    write_demo_images(db, images / "demo", patients=3, seed=5)
    for k, n in enumerate((9, 5)):
        header = SeriesHeader(
            "CT", f"P{k}", "A^B", generate_uid(), generate_uid(), generate_uid(),
            dt.date(2026, 1, 1), "CHEST", "CT chest", "AX",
        )  # fmt: skip
        values = np.random.default_rng(k).integers(0, 900, (n, 32, 32))
        write_series(
            values, images / f"s{k}", header, origin_lps=(0, 0, 0), pixel_spacing=(1, 1),
            slice_spacing=2,
        )  # fmt: skip
    odd = images / "odd"
    odd.mkdir()
    for k, image in enumerate(ood_images("mammography", seed=1, n_other_phantoms=2)[:4]):
        write_ood_dicom(image, "mammography", odd / f"ood_{k}.dcm")  # the input guard refuses
    for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm", "rtdose_1frame.dcm"):
        shutil.copy(get_testdata_file(name), odd / name)
    bare = io.BytesIO()
    pydicom.dcmread(get_testdata_file("MR_small.dcm")).save_as(bare, enforce_file_format=False)
    (odd / "no_preamble.dcm").write_bytes(bare.getvalue()[132:])  # a bare dataset: forced read
    demo = next(iter_dicom_paths([images / "demo"]))
    data = demo.read_bytes()
    (odd / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (odd / "random.dcm").write_bytes(np.random.default_rng(0).bytes(5000))
    (odd / "empty.dcm").write_bytes(b"")
    with zipfile.ZipFile(odd / "slices.zip", "w") as zf:
        zf.writestr("a.dcm", data)
    shutil.copy(get_testdata_file("DICOMDIR"), odd / "DICOMDIR")
    return images


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def _without_timing(line: str) -> dict:
    return {k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}


@pytest.mark.parametrize("workers", [1, 2])
def test_one_pass_prints_what_the_scan_then_the_reads_print(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    monkeypatch.setattr(batch, "CHUNK", 4)  # series split across chunks
    argv = ["predict", str(folder), "--json", "--workers", str(workers)]
    monkeypatch.setattr(cli_imaging, "ONE_PASS", False)
    before = _run(argv, capsys)
    monkeypatch.setattr(cli_imaging, "ONE_PASS", True)
    after = _run(argv, capsys)
    assert after[0] == before[0] == 1  # broken files: exit status 1 both ways
    assert after[2] == before[2]  # the summary line
    assert [_without_timing(x) for x in after[1]] == [_without_timing(x) for x in before[1]]
    kinds = [json.loads(x) for x in after[1]]
    assert sum(r.get("kind") == "volume" for r in kinds) == 2  # both stacks read once, in 3D
    assert any(r.get("lesion") for r in kinds) and any(r.get("refused") for r in kinds)
    assert sum("error" in r for r in kinds) >= 5
    text_after = _run(argv[:2] + argv[3:], capsys)  # text output (latency figures aside)
    monkeypatch.setattr(cli_imaging, "ONE_PASS", False)
    text_before = _run(argv[:2] + argv[3:], capsys)
    assert len(text_after[1]) == len(text_before[1])
    latency = re.compile(r", \d+ ms\]")
    assert [latency.sub("]", x) for x in text_after[1]] == [
        latency.sub("]", x) for x in text_before[1]
    ]


@pytest.mark.parametrize(("workers", "chunk"), [(1, 4), (2, 3), (2, 32)])
def test_scan_and_read_scans_as_scan_series_and_reads_as_predict_file(
    folder: Path, workers: int, chunk: int
) -> None:
    """Merged over its chunks, the one pass's scan is ``scan_series``' (the same series, members,
    frames and positions, in the same order, the same file -> series map); its 2D entries are
    ``predict_file``'s for every file that is not a slice of a volume."""
    files = list(iter_dicom_paths([folder]))
    infos, owner, _ = scan_series(files)
    merged: dict = {}
    got_owner: dict[str, str] = {}
    results: dict[str, dict] = {}
    parts = batch.map_files(batch.scan_and_read, files, workers=workers, chunk=chunk)
    for part in parts:
        got_owner.update(part.owner)
        for info in part.infos:
            seen = merged.get(info.series_instance_uid)
            merged[info.series_instance_uid] = info if seen is None else seen.merged(info)
        results.update({f: r for f, r in zip(part.files, part.results, strict=True) if r})
    assert list(merged.values()) == infos and got_owner == owner
    volumes = {i.series_instance_uid for i in infos if i.looks_like_volume}
    load = ModelLoader()
    for path in files:
        if owner.get(str(path)) in volumes:
            continue
        expected = predict_file(path, load)
        got = results[str(path)]
        assert got.keys() == expected.keys(), path
        for k, p in (expected.get("probabilities") or {}).items():
            assert got["probabilities"][k] == pytest.approx(p, abs=1e-6), path
        strip = TIMING_KEYS + ("probabilities",)
        assert {k: v for k, v in got.items() if k not in strip} == {
            k: v for k, v in expected.items() if k not in strip
        }, path


def test_a_crash_in_the_one_pass_costs_only_its_own_file(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder that kills its worker (simulated on ``random.dcm``) is reported for that file
    alone, at its place; every other line is the run without the crash's."""
    argv = ["predict", str(folder), "--json", "--workers", "2"]
    clean = _run(argv, capsys)
    real = batch.read_dataset

    def crashing(path, *args, **kwargs):
        if Path(path).name == "random.dcm":
            import os  # lazy: only this simulated crash needs it

            os._exit(70)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batch, "read_dataset", crashing)  # forked workers inherit the patch
    monkeypatch.setattr(batch, "CHUNK", 4)
    crashed = _run(argv, capsys)
    assert len(crashed[1]) == len(clean[1])
    for a, b in zip(crashed[1], clean[1], strict=True):
        if json.loads(a).get("error_type") == "ReaderCrashed":
            assert Path(json.loads(a)["file"]).name == "random.dcm"
        else:
            assert _without_timing(a) == _without_timing(b)
    assert sum(json.loads(a).get("error_type") == "ReaderCrashed" for a in crashed[1]) == 1
