"""Series in, volumes out (``models.volumes``): reading and assembling a DICOM series.

Why measured: issue 21's target is a 128 x 128 x 64 series read and assembled in <= 300 ms on
2 cores; every 3D path (the viewer, the 3D model, ingest) starts here. Timed: a folder of 64
single-frame CT files (shuffled names), the same slices uploaded as bytes, as a zip, and as one
enhanced multi-frame object (highdicom's legacy converter). Then the 3D read (issue 21 item 3,
target <= 1 s): the built-in MONAI bundle on a demo brain MR volume (94 x 116 x 98 at 2 mm),
split into its steps (preparation with MONAI transforms, input guard, sliding-window
segmentation, measurement). The figures go to docs/benchmarks.md.

    python -m bench.bench_volumes [--reps 7] [--size 128] [--slices 64] [--no-model]
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
    parser.add_argument("--no-model", action="store_true", help="skip the 3D read")
    parser.add_argument("--no-saliency", action="store_true", help="skip the 3D saliency maps")
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
    if not args.no_model:
        _bench_3d_read(args.reps)
        if not args.no_saliency:
            _bench_3d_saliency(args.reps)
    return 0


def _bench_3d_read(reps: int) -> None:
    """The 3D read of a brain MR volume by the built-in bundle, whole and by step."""
    import torch  # lazy: only the 3D part needs torch, MONAI and the bundle

    from models.volumes import bundle as bundles  # lazy: as above
    from models.volumes import geometry, phantoms, segment  # lazy: as above
    from models.volumes.series import Volume  # lazy: as above

    torch.set_num_threads(2)
    rng = np.random.default_rng([4242, 9])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 20.0), 20.0)
    lps = geometry.affine_lps(
        np.asarray(vol.origin_lps),
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        (2.0, 2.0),
        np.array([0.0, 0.0, 2.0]),
    )
    volume = Volume(
        "1.2.3", "1.2", "1.2.4", "BENCH", "MR", "BRAIN", "bench", vol.values, lps, vol.spacing_mm,
        (600.0, 1200.0), (), (), False,
    )  # fmt: skip
    t = time.perf_counter()
    b = bundles.load_bundle()
    load_s = time.perf_counter() - t
    c = b.contract
    segment.read_volume(volume, b)  # warm-up
    prepared, _, _ = segment.prepare(
        volume.pixels, volume.affine_ras, axcodes=c.axcodes, spacing_mm=c.spacing_mm
    )
    mask, p = segment.segment(b.network, prepared, c.spatial_shape)
    rows = [
        ("whole read (read_volume)", lambda: segment.read_volume(volume, b)),
        ("  preparation (MONAI)", lambda: segment.prepare(volume.pixels, volume.affine_ras, axcodes=c.axcodes, spacing_mm=c.spacing_mm)),
        ("  input guard", lambda: b.guard.check(prepared, b.title)),
        ("  sliding-window segmentation", lambda: segment.segment(b.network, prepared, c.spatial_shape)),
        ("  components and measures", lambda: segment.measure(mask, p, c.spacing_mm)),
    ]  # fmt: skip
    shape = " x ".join(map(str, vol.values.shape))
    print(
        f"\n3D read, built-in bundle {b.name} {b.version} ({shape} voxels, 2 threads, {reps} runs)"
    )
    print(f"{'step':<32} {'median ms':>10} {'best ms':>9}")
    for name, fn in rows:
        median, best = _median_ms(fn, reps)
        print(f"{name:<32} {median:>10.1f} {best:>9.1f}")
    print(f"(loading and verifying the bundle once: {1e3 * load_s:.0f} ms; target: read <= 1 s)")


def _bench_3d_saliency(reps: int) -> None:
    """3D Grad-CAM and integrated gradients (issue 21 item 5, target: Grad-CAM <= 1.5 s) of the
    read's lesion on the same brain; the network always runs on its whole 96 x 128 x 104 window,
    so a 128 x 128 x 64 series (1.05 M voxels) costs the same as this 94 x 116 x 98 brain."""
    import torch  # lazy: only the 3D part needs torch, MONAI and the bundle

    from models.saliency import volume as sv  # lazy: as above
    from models.volumes import bundle as bundles  # lazy: as above
    from models.volumes import geometry, phantoms, segment  # lazy: as above

    torch.set_num_threads(2)
    rng = np.random.default_rng([4242, 9])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 20.0), 20.0)
    b = bundles.load_bundle()
    c = b.contract
    affine = geometry.LPS_TO_RAS @ geometry.affine_lps(
        np.asarray(vol.origin_lps), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (2.0, 2.0),
        np.array([0.0, 0.0, 2.0]),
    )  # fmt: skip
    prepared, _, _ = segment.prepare(vol.values, affine, axcodes=c.axcodes, spacing_mm=c.spacing_mm)
    mask, p = segment.segment(b.network, prepared, c.spatial_shape)
    mask, _ = segment.measure(mask, p, c.spacing_mm, b.min_probability)
    region, _ = sv.target_region(mask, p)
    sv.explain_prepared(b.network, prepared, c.spatial_shape, region, "gradcam")  # warm-up
    print(f"\n3D saliency of the read's lesion ({region.sum()} voxels), 2 threads")
    print(f"{'map':<32} {'median ms':>10} {'best ms':>9}")
    median, best = _median_ms(
        lambda: sv.explain_prepared(b.network, prepared, c.spatial_shape, region, "gradcam"), reps
    )
    print(f"{'Grad-CAM (last decoder block)':<32} {median:>10.1f} {best:>9.1f}")
    ig = sv.VolumeParams()
    median, best = _median_ms(
        lambda: sv.explain_prepared(
            b.network, prepared, c.spatial_shape, region, "integrated_gradients", ig
        ),
        1,
    )
    print(
        f"{f'integrated gradients, {ig.n_steps} steps':<32} {median:>10.1f} {best:>9.1f}  (1 run)"
    )
    print("(target: Grad-CAM <= 1.5 s; integrated gradients on request only)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
