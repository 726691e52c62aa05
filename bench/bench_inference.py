"""Imaging AI read: per-image latency, batch throughput, and peak memory of a batch ``predict``.

Latency is one image at a time, after warm-up, process start excluded, in
four stages: DICOM read + decode, preprocess, network forward (with the guard's features),
the input guard (Mahalanobis distances and image statistics; issue 18 target: at most 2 ms);
and the full
read as ``oncolens predict`` does it (plus lesion outline and radiomics).
Throughput reads a folder in a background thread and runs the network in batches of 16 (`classify_batches`). Peak
memory is the resident maximum of a child process running
``oncolens predict FOLDER --json``. Targets (issue 3): median read <= 20 ms
including decode, >= 100 images/s in batch, batch predict < 1.5 GB.

    python -m bench.bench_inference [--n 64]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pydicom.uid import generate_uid

from models.dicom.reader import read_dicom
from models.inference.guard import image_statistics
from models.inference.preprocess import to_tensor
from models.inference.read import classify_batches, predict_file
from models.inference.registry import load_model
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom


def write_files(folder: Path, n: int) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {"mammography": [], "brain_mri": []}
    for name, items in (
        ("mammography", phantoms.sample_mammograms(n, 1)),
        ("brain_mri", phantoms.sample_brain(n, 2)),
    ):
        for i, ph in enumerate(items):
            p = folder / name / f"{i:04d}.dcm"
            write_phantom_dicom(
                ph,
                p,
                patient_id="BENCH",
                study_uid=generate_uid(),
                series_uid=generate_uid(),
                sop_instance_uid=generate_uid(),
                study_date="20250101",
            )
            out[name].append(p)
    return out


def _ms(values: list[float]) -> tuple[float, float]:
    a = np.array(values) * 1e3
    return float(np.median(a)), float(np.percentile(a, 95))


def latency(name: str, files: list[Path]) -> dict:
    model = load_model(name, device="cpu")
    stages: dict[str, list[float]] = {
        "read": [],
        "preprocess": [],
        "forward": [],
        "guard": [],
        "full": [],
    }
    with torch.inference_mode():
        for p in files[:8]:  # warm-up
            model.infer(to_tensor(read_dicom(p).pixels))
        for p in files:
            t0 = time.perf_counter()
            img = read_dicom(p)
            t1 = time.perf_counter()
            x = to_tensor(img.pixels)
            t2 = time.perf_counter()
            # the input guard as read_image runs it: the image statistics before the forward
            # pass, the distances after it; both are what the guard adds to the read
            stats = image_statistics(x)
            t3 = time.perf_counter()
            _, _, features = model.infer_with_features(x)
            t4 = time.perf_counter()
            model.check_inputs(x, features, stats)
            t5 = time.perf_counter()
            stages["read"].append(t1 - t0)
            stages["preprocess"].append(t2 - t1)
            stages["forward"].append(t4 - t3)
            stages["guard"].append((t3 - t2) + (t5 - t4))
    for p in files:
        t0 = time.perf_counter()
        predict_file(p, lambda _n: model)
        stages["full"].append(time.perf_counter() - t0)
    return {k: _ms(v) for k, v in stages.items()}


def throughput(name: str, files: list[Path], batch: int = 16) -> float:
    model = load_model(name, device="cpu")
    started = time.perf_counter()
    for _ in classify_batches(model, files, batch=batch):
        pass
    return len(files) / (time.perf_counter() - started)


def predict_peak(folder: Path) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dashboard.cli.main", "predict", str(folder), "--json"],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64, help="images per model")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    runtime = load_model("brain_mri", device="cpu").runtime
    print(
        f"# imaging AI read on {torch.get_num_threads()} threads, {args.n} images per model (256x256), "
        f"forward pass in {runtime}; batch: 16 per forward, files read in a background thread"
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), args.n)
        print(
            f"{'model':<12} {'read ms':>14} {'preproc ms':>14} {'forward ms':>14} {'guard ms':>14} "
            f"{'full read ms':>14} {'batch img/s':>12}"
        )
        print(f"{'':<12}" + f" {'median / p95':>14}" * 5)
        for name, paths in files.items():
            lat = latency(name, paths)
            tput = throughput(name, paths)
            cells = " ".join(
                f"{m:>6.1f} / {p:<5.1f}"
                for m, p in (lat[k] for k in ("read", "preprocess", "forward", "guard", "full"))
            )
            print(f"{name:<12} {cells} {tput:>12.0f}")
        wall, peak = predict_peak(Path(tmp))
        n_all = sum(len(v) for v in files.values())
        print(
            f"\n`oncolens predict` on {n_all} files: {wall:.1f} s wall (process start included), "
            f"{n_all / wall:.0f} images/s, peak RSS {peak:.2f} GiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
