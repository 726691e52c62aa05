"""An upload of a series on the Imaging page, before the viewer: what the user waits for.

Why measured: a series uploaded as files or a zip is de-identified file by file, sorted into series
and assembled (``models.volumes.uploads.read_upload``) and then read in 3D, where a stored series
is only rebuilt; the page caches both per upload, so this is the first view's cost. Timed on the
demo's brain MR (94 x 116 x 98 at 2 mm, a 26 mm metastasis) as a zip: taking the files out of the
zip (``collect``), de-identification + sorting + assembly, and the 3D read (``read_volume``); wall
time and the process's CPU seconds (user + sys), with the load average.

    python -m bench.bench_upload [--reps 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import resource
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from models.volumes import phantoms
from models.volumes.sources import collect
from models.volumes.uploads import read_upload
from models.volumes.write import SeriesHeader, write_series


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn, reps: int) -> tuple[float, float, object]:
    """Median wall and median CPU seconds of ``fn()`` over ``reps`` runs, and its last result."""
    walls, cpus, out = [], [], None
    for _ in range(reps):
        c, t = _cpu(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return statistics.median(walls), statistics.median(cpus), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    # lazy: MONAI and torch only once the series is written (their import is not the upload's)
    from models.volumes.bundle import bundle_for
    from models.volumes.segment import read_volume

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng([4242, 1])
        vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 26.0), 26.0)
        header = SeriesHeader(
            "MR", "BENCH-1", "BENCH^UPLOAD", generate_uid(), generate_uid(), generate_uid(),
            dt.date(2026, 1, 5), "BRAIN", "brain mr", "axial",
        )  # fmt: skip
        files = write_series(
            vol.values, Path(tmp) / "s", header, origin_lps=vol.origin_lps,
            pixel_spacing=(2.0, 2.0), slice_spacing=2.0,
        )  # fmt: skip
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.writestr(p.name, p.read_bytes())
        archive = buf.getvalue()
    key = b"b" * 32
    bundle = bundle_for("MR")
    load0 = os.getloadavg()[0]
    w_zip, c_zip, (items, _) = _timed(lambda: collect([("series.zip", archive)]), args.reps)
    w_up, c_up, contents = _timed(lambda: read_upload(items, key), args.reps)
    (volume,) = contents.volumes
    w_read, c_read, read = _timed(lambda: read_volume(volume, bundle), args.reps)
    load1 = os.getloadavg()[0]
    print(
        f"brain MR series, {len(files)} files, zip {len(archive) / 2**20:.1f} MiB; {args.reps} runs"
    )
    print(f"{'step':<44} {'wall (median)':>14} {'CPU s (median)':>15}")
    for name, w, c in (
        ("files out of the zip (collect)", w_zip, c_zip),
        ("de-identify + sort + assemble (read_upload)", w_up, c_up),
        (f"3D read ({bundle.name} {bundle.version})", w_read, c_read),
    ):
        print(f"{name:<44} {w * 1e3:>11.0f} ms {c:>15.2f}")
    print(f"read: {read.label}; load average {load0:.1f} -> {load1:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
