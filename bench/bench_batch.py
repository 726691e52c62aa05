"""Batch reads end to end, and past one machine on Ray (issue 23, items 2 and 4).

1. ``oncolens predict FOLDER --json`` on ``--n`` files (half mammograms, half brain MR), wall
   time, images/s and CPU-seconds per 1,000 files (the command and its workers) of a child
   process, process start included: the single-image path (``predict_file``
   per file, the command before issue 23) on a sample of the files, then the batched path in
   one process (``--workers 1``) and in one process per core (the default). Target: >= 100
   images/s on 1,000 files on 2 cores.
2. Where the time goes (profile of the batched path): process start (imports), then CPU
   milliseconds per image on one thread: decode + sanity gate, preprocessing, the forward pass
   (batches of 8), the input guard, the outline + RECIST + radiomics.
3. ``oncolens ingest FOLDER`` of about ``--n`` demo images (a few hundred patients' studies) into
   a 2,000-patient demo store with a current worklist: one process against one per core, process
   start included, CPU-seconds per 1,000 files (target as for predict); then one process's CPU
   per file: the reads and the de-identified copies (the workers' share) and the writer's
   transaction with the worklist's increment.
4. Ray (``--engine ray``), local cluster of 1 then 2 CPUs: the same reads, and the worklist's
   forecast risks of a ``--patients`` store, with the extrapolation to a 10-million-image
   archive and a 20-million-patient refresh (assumptions printed with the figures).

Timings on a shared machine vary with its load (``os.getloadavg`` is printed with each table);
CPU seconds per image are steadier than wall time there.

    python -m bench.bench_batch [--n 1000] [--patients 40000] [--no-ray] [--no-ingest]
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_inference import write_files
from models.dicom.reader import read_dicom, require_readable
from models.inference import onnx_runner
from models.inference.batch import FORWARD_BATCH
from models.inference.loader import ModelLoader
from models.inference.preprocess import to_input
from models.inference.read import iter_dicom_paths, model_for, read_from_outputs

ROOT = Path(__file__).resolve().parents[1]
CPU_HOUR_USD = (
    0.05  # assumption for the extrapolation: an on-demand cloud vCPU-hour, 2026 list prices
)
SINGLE_SAMPLE = 200  # files the single-image path reads (it is slow; its rate does not depend on n)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} CPUs"


def _cli(*args: str) -> tuple[float, float, int]:
    """(wall s, CPU s of the child and its workers, exit code) of ``oncolens ARGS`` in a fresh process."""
    before = os.times()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dashboard.cli.main", *args],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu, proc.returncode


def _single_path(files: list[Path]) -> tuple[float, float]:
    """(wall s, CPU s) of the single-image path over ``files`` in a fresh process, start included."""
    code = (
        "import sys, json; from pathlib import Path\n"
        "from models.inference.loader import ModelLoader\n"
        "from models.inference.read import predict_file\n"
        "load = ModelLoader()\n"
        "for line in sys.stdin: print(json.dumps(predict_file(Path(line.strip()), load)))\n"
    )
    before = os.times()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        input="\n".join(map(str, files)),
        text=True,
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def predict_table(folder: Path, n: int) -> None:
    files = list(iter_dicom_paths([folder]))
    sample = files[:: max(1, len(files) // SINGLE_SAMPLE)][:SINGLE_SAMPLE]
    print(f"# oncolens predict FOLDER --json, {n} files, process start included ({_load()})")
    print(
        "# CPU s / 1k files: user + system of the command and its workers, per 1,000 files (the "
        "steady figure on a shared machine; target <= 20, i.e. 100 img/s on 2 free cores)"
    )
    print(f"{'path':<44} {'files':>6} {'wall s':>8} {'img/s':>7} {'CPU s/1k files':>15}")
    wall, cpu = _single_path(sample)
    print(
        f"{'single-image (predict_file per file, before)':<44} {len(sample):>6} {wall:>8.1f} "
        f"{len(sample) / wall:>7.0f} {cpu / len(sample) * 1e3:>15.1f}"
    )
    for label, extra in (
        ("batched, one process (--workers 1)", ["--workers", "1"]),
        (f"batched, one process per core ({os.cpu_count()})", []),
    ):
        wall, cpu, _ = _cli("predict", str(folder), "--json", *extra)
        print(
            f"{label:<44} {n:>6} {wall:>8.1f} {n / wall:>7.0f} {cpu / n * 1e3:>15.1f}"
            + ("   target >= 100 img/s" if not extra else "")
        )


def profile_table(folder: Path) -> None:
    """Process start, then CPU ms per image per stage of the batched path on one thread."""

    def child_cpu(code: str) -> tuple[float, str]:
        before = os.times()
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=True,
            capture_output=True,
            text=True,
        )
        after = os.times()
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        return cpu, out.stdout.strip()

    start_cpu, loaded = child_cpu(
        "import sys, dashboard.cli.main, dashboard.cli.imaging, models.inference.batch, "
        "models.inference.read, models.volumes; "
        "print(','.join(m for m in ('torch', 'pandas', 'sklearn', 'monai') if m in sys.modules))"
    )
    torch_cpu, _ = child_cpu("import torch")
    # lazy: the one pass and the series scan (predict ran it before any 2D read until issue 23)
    from models.inference.batch import read_files, scan_and_read
    from models.volumes import scan_series  # lazy: as above

    files = list(iter_dicom_paths([folder]))
    clock = time.process_time
    a = clock()
    scan_series(files)
    scan_ms = (clock() - a) / len(files) * 1e3
    onnx_runner.set_threads(1)
    try:
        load = ModelLoader()
        sample = files[:256]
        read_files(sample[:8], load)  # models loaded before the clocks
        a = clock()
        scan_series(sample)
        for k in range(0, len(sample), 32):
            read_files(sample[k : k + 32], load)
        b = clock()
        for k in range(0, len(sample), 32):
            scan_and_read(sample[k : k + 32], load)
        c = clock()
        two_ms, one_ms = (b - a) / len(sample) * 1e3, (c - b) / len(sample) * 1e3
        files = files[:256]
        spent = dict.fromkeys(("decode", "preprocess", "forward", "guard", "outline"), 0.0)
        items = []
        for f in files:
            a = clock()
            image = read_dicom(f)
            model = model_for(image, load)
            require_readable(image)
            b = clock()
            x = to_input(image.pixels)
            spent["decode"] += b - a
            spent["preprocess"] += clock() - b
            items.append((image, model, x))
        for k in range(0, len(items), FORWARD_BATCH):
            by_model: dict[str, list] = {}
            for item in items[k : k + FORWARD_BATCH]:
                by_model.setdefault(item[1].name, []).append(item)
            for group in by_model.values():
                model, x = group[0][1], np.concatenate([g[2] for g in group])
                a = clock()
                logits, masks, features = model.infer_with_features(x)
                b = clock()
                checks = model.check_inputs(x, features)
                c = clock()
                for j, (image, _, _) in enumerate(group):
                    read_from_outputs(
                        model, image, logits[j : j + 1], masks[j : j + 1], checks[j], 0
                    )
                spent["forward"] += b - a
                spent["guard"] += c - b
                spent["outline"] += clock() - c
    finally:
        onnx_runner.set_threads(None)
    print(f"\n# where the time goes ({_load()})")
    print(
        f"process start (python + imports of predict): {start_cpu:.2f} CPU-s; heavy "
        f"modules loaded: {loaded or 'none'} (`import torch` alone: {torch_cpu:.2f} CPU-s, "
        "which the read no longer pays)"
    )
    print(f"series scan alone (scan_series, headers of every file): {scan_ms:.2f} CPU ms per file")
    print(
        f"scan + 2D read, CPU ms per file on one thread: two passes (scan_series, read_files) "
        f"{two_ms:.1f}, one parse per file (scan_and_read, what predict runs) {one_ms:.1f}"
    )
    cells = "  ".join(f"{k} {v / len(files) * 1e3:.1f}" for k, v in spent.items())
    total = sum(spent.values()) / len(files) * 1e3
    print(f"CPU ms per image on one thread: {cells}  (total {total:.1f})")


INGEST_STORE_PATIENTS = 2000  # the demo clinic the files are ingested into
INGEST_FILES_PER_PATIENT = 2.98  # what the demo writer draws a patient on average (its studies)


def ingest_table(tmp: Path, n: int) -> None:
    """``oncolens ingest FOLDER`` of about ``n`` demo images (several studies of each of a few
    hundred patients: the demo writer's mammograms and brain MR) into a demo store whose worklist
    is current, as ``oncolens demo`` leaves it (the ingest then pays its incremental refresh):
    one process against one per core, process start included; then where one process's CPU goes
    per file (the reads, the de-identified copies, the writer's transaction)."""
    # lazy: the demo generator only for this table
    from analytics.imaging import ingest  # lazy: as above
    from analytics.worklist import stored as worklist_store  # lazy: as above
    from sample_data.demo import write_demo  # lazy: as above
    from sample_data.demo_imaging import write_demo_images  # lazy: as above

    db = tmp / "clinic.duckdb"
    write_demo(db, patients=INGEST_STORE_PATIENTS, seed=7)
    folder = tmp / "ingest"
    patients = max(1, round(n / INGEST_FILES_PER_PATIENT))
    images = write_demo_images(db, folder, patients=patients, seed=3).images
    worklist_store.refresh_store(db, worklist_store.clinic_model(db))
    files = len(images)
    print(
        f"\n# oncolens ingest FOLDER: {files} demo images of {patients} patients into a "
        f"{INGEST_STORE_PATIENTS:,}-patient demo store, process start included ({_load()})"
    )
    print(f"{'workers':<28} {'files':>6} {'wall s':>8} {'img/s':>7} {'CPU s/1k files':>15}")
    for label, extra in (("one process (--workers 1)", ["--workers", "1"]), ("one per core", [])):
        copy = tmp / f"ingest_{len(extra)}.duckdb"
        shutil.copy(db, copy)
        wall, cpu, code = _cli("ingest", str(folder), "--db", str(copy), *extra)
        assert code == 0, f"ingest exited {code}"
        print(
            f"{label:<28} {files:>6} {wall:>8.1f} {files / wall:>7.0f} {cpu / files * 1e3:>15.1f}"
            + ("   target >= 100 img/s" if not extra else "")
        )

    # where one process's CPU goes: the workers' share (parse, scan and AI read; then the
    # de-identified copy), the writer's (the transaction, the worklist increment in it)
    paths = sorted(Path(p) for p in folder.rglob("*.dcm"))
    load = ModelLoader()
    ingest.prepare_and_scan(paths[:8], load)  # models loaded before the clocks
    clock = time.process_time
    spool = tmp / "spool"
    spool.mkdir()
    key = b"k" * 32
    a = clock()
    for k in range(0, len(paths), 32):
        ingest.prepare_and_scan(paths[k : k + 32], load)
    b = clock()
    for k in range(0, len(paths), 32):
        if "key" not in inspect.signature(ingest.prepare_and_scan).parameters:
            break
        ingest.prepare_and_scan(paths[k : k + 32], load, key=key, spool=spool)
    c = clock()
    in_workers = "key" in inspect.signature(ingest.prepare_and_scan).parameters
    if not in_workers:  # before issue 23's last pass: the writer de-identified
        c = b + (b - a)
    refreshed = []
    timed = ingest.refresh_for_writer

    def refresh_clocked(*args, **kwargs):
        started = clock()
        try:
            return timed(*args, **kwargs)
        finally:
            refreshed.append(clock() - started)

    copy = tmp / "ingest_profile.duckdb"
    shutil.copy(db, copy)
    ingest.refresh_for_writer = refresh_clocked  # type: ignore[assignment]
    try:
        d = clock()
        ingest.ingest_files(copy, paths, load, workers=1)
        e = clock()
    finally:
        ingest.refresh_for_writer = timed  # type: ignore[assignment]
    per = 1e3 / len(paths)
    read_ms, deid_ms = (b - a) * per, (c - b - (b - a)) * per
    writer_ms = (e - d - (c - b)) * per
    print(
        f"CPU ms per file, one process ({_load()}): parse + scan + AI read {read_ms:.1f}, "
        + (
            f"de-identified copy {deid_ms:.1f} (both in the workers); "
            if in_workers
            else "(in the workers); "
        )
        + f"the writer {writer_ms:.1f}, of "
        f"which the worklist's increment {refreshed[0] * 1e3:.0f} ms in all "
        f"({refreshed[0] * per:.1f} a file)"
    )


def ray_table(folder: Path, n: int, patients: int, tmp: Path) -> None:
    # lazy: Ray only for this table
    import ray

    from analytics.worklist import stored as worklist_store  # lazy: as above
    from dashboard.services import ray_jobs  # lazy: as above
    from sample_data.demo import write_demo  # lazy: as above

    files = list(iter_dicom_paths([folder]))
    db = tmp / "refresh.duckdb"
    started = time.perf_counter()
    write_demo(db, patients=patients, seed=11)
    print(
        f"\n# Ray, local cluster ({_load()}); store of {patients:,} patients built in "
        f"{time.perf_counter() - started:.0f} s"
    )
    started = time.perf_counter()
    clinic = worklist_store.clinic_model(db)
    local = worklist_store.refresh_store(db, clinic)
    local_s = time.perf_counter() - started
    print(
        f"{'engine':<22} {'reads s':>8} {'img/s':>7} {'refresh s':>10} {'patients/s':>11}"
        "   (reads: the second pass over the folder, actors warm)"
    )
    print(
        f"{'local (this process)':<22} {'':>8} {'':>7} {local_s:>10.1f} "
        f"{local.entries / local_s:>11.0f}"
    )
    rates = {}
    for cpus in (1, 2):
        with ray_jobs.cluster(workers=cpus):
            ray.get(ray.remote(lambda: 0).remote())  # the cluster is up before the clock starts
            # the folder twice in one run: the second pass is the steady rate (actors started,
            # models loaded), which is what an archive of millions of images sees
            started = time.perf_counter()
            first_pass = None
            reads = []
            for result in ray_jobs.predict_files(files + files):
                reads.append(result)
                if len(reads) == n:
                    first_pass = time.perf_counter()
            assert first_pass is not None
            read_s = time.perf_counter() - first_pass
            started = time.perf_counter()
            result = worklist_store.refresh_store(db, clinic, risk_map=ray_jobs.risk_map(db))
            refresh_s = time.perf_counter() - started
        assert len(reads) == 2 * n
        rates[cpus] = (n / read_s, result.entries / refresh_s)
        print(
            f"{f'ray, {cpus} worker(s)':<22} {read_s:>8.1f} {n / read_s:>7.0f} {refresh_s:>10.1f} "
            f"{result.entries / refresh_s:>11.0f}"
        )
    per_worker_img = rates[1][0]
    per_worker_pat = rates[1][1]
    scaling = rates[2][0] / rates[1][0]
    images, people = 10_000_000, 20_000_000
    img_cpu_h = images / per_worker_img / 3600
    pat_cpu_h = people / per_worker_pat / 3600
    print(
        f"\n2 workers / 1 worker: reads x{scaling:.2f}, refresh x{rates[2][1] / rates[1][1]:.2f} "
        f"(2 cores shared with the driver and, here, other work)"
    )
    print(
        "extrapolation (assumptions: Ray workers of one CPU each scale linearly, as the chunks are "
        "independent; files and store on shared storage that keeps up; the driver's DuckDB writes "
        f"are not the bottleneck; ${CPU_HOUR_USD:.2f} per vCPU-hour; the rate per worker measured "
        "above, on this machine):"
    )
    for what, cpu_h in (
        (f"read {images:,} images", img_cpu_h),
        (f"refresh {people:,} patients' risks", pat_cpu_h),
    ):
        print(
            f"  {what}: {cpu_h:,.0f} CPU-hours, about ${cpu_h * CPU_HOUR_USD:,.0f}; "
            f"{cpu_h / 100:.1f} h on 100 workers, {cpu_h / 1000 * 60:.0f} min on 1,000"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="files (half of each model)")
    parser.add_argument("--patients", type=int, default=40_000, help="store for the Ray refresh")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-ingest", action="store_true")
    parser.add_argument(
        "--no-predict", action="store_true", help="skip predict's tables (e.g. for ingest alone)"
    )
    args = parser.parse_args(argv)
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not args.no_predict or not args.no_ray:
            write_files(tmp / "files", args.n // 2)
        if not args.no_predict:
            predict_table(tmp / "files", args.n)
            profile_table(tmp / "files")
        if not args.no_ingest:
            ingest_table(tmp, args.n)
        if not args.no_ray:
            try:
                # lazy: Ray is an optional extra (pip install 'oncolens[ray]')
                import ray  # noqa: F401
            except ImportError:
                print("\n# Ray: not installed (pip install 'oncolens[ray]'); table skipped")
            else:
                ray_table(tmp / "files", args.n, args.patients, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
