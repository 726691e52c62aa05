"""Series in, volumes out (``models.volumes``): reading and assembling a DICOM series.

Why measured: issue 21's target is a 128 x 128 x 64 series read and assembled in <= 300 ms on
2 cores; every 3D path (the viewer, the 3D model, ingest) starts here. Timed: a folder of 64
single-frame CT files (shuffled names), the same slices uploaded as bytes, as a zip, and as one
enhanced multi-frame object (highdicom's legacy converter). The figures go to docs/benchmarks.md.

    python -m bench.bench_volumes [--reps 7] [--size 128] [--slices 64]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from highdicom.legacy import LegacyConvertedEnhancedCTImage
from pydicom.uid import generate_uid

from models.volumes import read_volumes
from models.volumes.write import SeriesHeader, write_series


def _median_ms(fn, reps: int) -> tuple[float, float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=64)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    values = rng.integers(-1000, 1500, (args.slices, args.size, args.size)).astype(np.int16)
    header = SeriesHeader(
        "CT",
        "BENCH",
        "Bench^Volume",
        generate_uid(),
        generate_uid(),
        generate_uid(),
        dt.date(2026, 1, 1),
        "CHEST",
        "bench",
        "axial",
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        t = time.perf_counter()
        paths = write_series(
            values,
            folder,
            header,
            origin_lps=(-100.0, -100.0, 0.0),
            pixel_spacing=(0.8, 0.8),
            slice_spacing=2.5,
        )
        write_s = time.perf_counter() - t
        for k, i in enumerate(rng.permutation(len(paths))):  # names that say nothing of order
            paths[k].rename(folder / f"x{i:04d}")
        files = sorted(folder.iterdir())
        uploads = [(p.name, p.read_bytes()) for p in files]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in uploads:
                zf.writestr(name, data)
        zipped = buf.getvalue()
        multi = LegacyConvertedEnhancedCTImage(
            [pydicom.dcmread(p) for p in files], generate_uid(), 2, generate_uid(), 1
        )
        mbuf = io.BytesIO()
        multi.save_as(mbuf)
        enhanced = mbuf.getvalue()

        def check(src) -> None:
            result = read_volumes(src)
            assert result.ok and result.volumes[0].shape == values.shape

        rows = [
            ("folder of single-frame files", lambda: check([folder])),
            ("uploaded files (bytes)", lambda: check(uploads)),
            ("zip archive (deflated)", lambda: check([("series.zip", zipped)])),
            ("enhanced multi-frame object", lambda: check([("enhanced.dcm", enhanced)])),
        ]
        check([folder])  # warm imports and the file cache
        shape = " x ".join(map(str, values.shape[::-1]))
        print(f"series read and assembled into a volume ({shape} voxels, {args.reps} runs)")
        print(f"{'source':<32} {'median ms':>10} {'best ms':>9}")
        for name, fn in rows:
            median, best = _median_ms(fn, args.reps)
            print(f"{name:<32} {median:>10.1f} {best:>9.1f}")
        print(f"(writing the series: {1e3 * write_s:.0f} ms; target: read <= 300 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
