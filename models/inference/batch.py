"""The full AI read of many files at full speed: ``oncolens predict FOLDER``, ``ingest``, Ray workers.

Why a batch path beside ``read_image``: one file at a time, a read spends most of its time in
fixed costs that a batch shares (one forward pass per file instead of one per 32, Python
overhead between stages), and a single process keeps only one core busy, because decoding
(pydicom) and post-processing (outline, RECIST, radiomics: scipy, scikit-image) are mostly
Python holding the GIL. Here:

* ``read_files`` reads a list of files in one process: each file is decoded, checked by the
  structural sanity gate and assigned its model exactly as ``predict_file`` does; then one
  forward pass per model runs over all of them, the input guard checks the batch, and every
  image's read is finished by ``read.read_from_outputs``, the very function ``read_image``
  ends with. Results are ``predict_file``'s dicts, in input order: the same keys, labels,
  refusals and errors (tests/models/inference/test_batch.py compares them file by file).
* ``predict_files`` spreads ``read_files`` over worker processes (``concurrent.futures``),
  ``CHUNK`` files per task, results streamed back in input order. Workers are forked from the
  caller after its imports (pydicom, scipy, ONNX Runtime are not imported again; PyTorch is
  not imported at all, the read runs on ONNX Runtime and NumPy) and each runs one thread for
  ONNX Runtime (and PyTorch, where a caller loaded it): two processes with one thread each keep two cores busy,
  where one process with two threads leaves the second core mostly waiting on the GIL and, on
  a loaded machine, loses more to spinning thread pools (bench/bench_batch.py measures both).
  Each worker loads each model once (``ModelLoader``): weights verified against their card,
  the ONNX graph from the cache.

A file that cannot be read gets its error entry and the others go on; a worker that dies
(a decoder crashing the process) costs only its own chunk, whose files are then read again
one by one in a fresh worker so that only the culprit is reported. Batched and single reads
agree to float rounding (ONNX Runtime may sum a batch in another order): probabilities to
1e-6, the same labels and refusals.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.dicom.reader import (
    DicomImage,
    image_from_dataset,
    read_dataset,
    read_dicom,
    require_readable,
)
from models.inference import onnx_runner
from models.inference.guard import image_statistics
from models.inference.loader import ModelLoader
from models.inference.preprocess import to_input
from models.inference.read import (
    READ_ERRORS,
    AIRead,
    error_result,
    model_for,
    read_from_outputs,
    result_json,
)
from models.inference.registry import LoadedModel
from models.volumes.series import SeriesInfo, SeriesScan
from models.volumes.sources import label_for

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "CHUNK",
    "ScannedChunk",
    "default_workers",
    "map_files",
    "parse_and_scan",
    "predict_files",
    "read_decoded",
    "read_files",
    "read_images",
    "scan_and_read",
]

CHUNK = 32  # files per worker task and per forward pass: big enough to share the fixed costs,
# small enough that two workers share 1,000 files evenly and results stream back early
FORWARD_BATCH = 8  # images per forward pass: on one thread ONNX Runtime is fastest per image at
# small batches (its working set stays in cache; 8 about a quarter faster than 32, bench_batch.py)


@dataclass(frozen=True)
class _Decoded:
    index: int
    image: DicomImage
    model: LoadedModel
    x: np.ndarray  # the network input (1, 1, S, S)
    stats: np.ndarray  # the input guard's image statistics (1, 10), measured while x is hot
    read_ms: float  # model choice + sanity gate + preprocessing of this image


ReadOutcome = tuple[AIRead, float] | Exception
"""For one image: (the read, its latency in ms), or why there is none (``NoModelForImageError``,
``ModelUnavailableError``, ``ImplausibleImageError`` from the sanity gate)."""


def read_decoded(
    images: Sequence[DicomImage],
    load: Callable[[str], LoadedModel],
    requested: str | None = None,
) -> list[ReadOutcome]:
    """The AI read of decoded images, in order, with one forward pass per ``FORWARD_BATCH`` images
    of a model: ``read_image``'s steps (model choice, sanity gate, preprocessing, guard, outline,
    RECIST, radiomics) in the same order, finished by the same ``read_from_outputs``."""
    out: list[ReadOutcome] = [ValueError("not read") for _ in images]
    groups: dict[str, list[_Decoded]] = {}
    for i, image in enumerate(images):
        started = time.perf_counter()
        try:
            model = model_for(image, load, requested)
            require_readable(image)  # read_image's first step, in the same order as predict_file
            x = to_input(image.pixels)
            stats = image_statistics(x)  # as read_image does: before the forward pass evicts x
        except READ_ERRORS as exc:
            out[i] = exc
            continue
        groups.setdefault(model.name, []).append(
            _Decoded(i, image, model, x, stats, (time.perf_counter() - started) * 1e3)
        )
    for items in (
        group[k : k + FORWARD_BATCH]
        for group in groups.values()
        for k in range(0, len(group), FORWARD_BATCH)
    ):
        model = items[0].model
        forward_started = time.perf_counter()
        x = np.concatenate([d.x for d in items])
        logits, mask_logits, features = model.infer_with_features(x)
        checks = model.check_inputs(x, features, np.concatenate([d.stats for d in items]))
        shared_ms = (time.perf_counter() - forward_started) * 1e3 / len(items)
        for j, d in enumerate(items):
            finish_started = time.perf_counter()
            ai = read_from_outputs(
                model,
                d.image,
                logits[j : j + 1],
                mask_logits[j : j + 1],
                checks[j],
                finish_started - shared_ms / 1e3,
            )
            latency = d.read_ms + shared_ms + (time.perf_counter() - finish_started) * 1e3
            out[d.index] = (ai, latency)
    return out


def read_images(
    paths: Sequence[Path], load: Callable[[str], LoadedModel], requested: str | None = None
) -> list[tuple[DicomImage, AIRead, float] | dict]:
    """For each path, in order: (image, read, latency ms) or ``predict_file``'s error entry."""
    out: list[tuple[DicomImage, AIRead, float] | dict] = [{} for _ in paths]
    decoded: list[tuple[int, Path, DicomImage, float]] = []
    for i, path in enumerate(paths):
        started = time.perf_counter()
        try:
            image = read_dicom(path)
        except READ_ERRORS as exc:
            out[i] = error_result(Path(path), exc)
            continue
        decoded.append((i, Path(path), image, (time.perf_counter() - started) * 1e3))
    reads = read_decoded([d[2] for d in decoded], load, requested)
    for (i, path, image, read_ms), outcome in zip(decoded, reads, strict=True):
        if isinstance(outcome, Exception):
            out[i] = error_result(path, outcome)
        else:
            out[i] = (image, outcome[0], read_ms + outcome[1])
    return out


def read_files(
    paths: Sequence[Path], load: Callable[[str], LoadedModel], requested: str | None = None
) -> list[dict]:
    """``predict_file``'s result for each path, in order, with one forward pass per model."""
    return [
        entry if isinstance(entry, dict) else result_json(Path(path), *entry)
        for path, entry in zip(paths, read_images(paths, load, requested), strict=True)
    ]


@dataclass(frozen=True)
class ScannedChunk:
    """``scan_and_read``'s answer for one chunk of files: the series scan of its headers (what
    ``scan_series`` of these files returns) and the 2D read of each file (``read_files``' entry),
    None for a file whose series is a stack of slices within this chunk already (a volume: read
    in 3D, never slice by slice)."""

    files: list[str]
    infos: list[SeriesInfo]
    owner: dict[str, str]
    results: list[dict | None]


_ZIP_MAGIC = b"PK\x03\x04"


def parse_and_scan(
    paths: Sequence[Path], keys: Sequence[str] | None = None
) -> tuple[SeriesScan, list[tuple[Dataset, float] | Exception]]:
    """Each file parsed once (``read_dataset``: header and pixel bytes, nothing decoded), or why
    not, and the series scan of the lot (``SeriesScan``: what ``scan_series`` of these files
    finds), the file known as ``keys[i]`` (default ``str(path)``) in its file -> series map.

    The scan sees exactly what ``scan_series`` sees: a file the reader parsed as a conforming
    DICOM file is scanned from that dataset; any other (not found, damaged, a zip, a DICOMDIR,
    a file without the preamble, which the reader still tries with ``force``) is scanned by
    ``SeriesScan.add_sources``, i.e. by ``scan_series``' own parse. The float is the parse's ms."""
    scan = SeriesScan()
    parsed: list[tuple[Dataset, float] | Exception] = []
    for k, raw in enumerate(paths):
        path = Path(raw)
        key = str(path) if keys is None else keys[k]
        started = time.perf_counter()
        try:
            ds, conforming = read_dataset(path)
        except READ_ERRORS as exc:
            parsed.append(exc)
            scan.add_sources([Path(key)])
            continue
        if (
            conforming
            and (ds.preamble or b"")[:4] != _ZIP_MAGIC  # a DICOM file that is a zip too
            and "DirectoryRecordSequence" not in ds
        ):
            scan.add(label_for(key), key, ds)
        else:
            scan.add_sources([Path(key)])
        parsed.append((ds, (time.perf_counter() - started) * 1e3))
    return scan, parsed


def scan_and_read(
    paths: Sequence[Path], load: Callable[[str], LoadedModel], requested: str | None = None
) -> list[ScannedChunk]:
    """The series scan and the 2D read of ``paths`` from one parse of each file (a one-element
    list, so that ``map_files`` can run it in worker processes, one chunk per task).

    Why: ``oncolens predict`` needs every file's header to tell volumes from 2D images before
    it reads, and then the read parsed each file again; one parse saves ~1.5 ms a file (issue
    23). Whether a series is a volume is only known once every chunk is in (``SeriesScan``
    merged by the caller); a file whose series is already a stack within its chunk (which more
    files only confirm) is not read in 2D, any other is, and the caller drops the reads of files
    that turn out to be in a volume (at most a few slices at each chunk boundary of a series)."""
    scan, parsed = parse_and_scan(paths)
    infos = scan.infos()
    stacked = {i.series_instance_uid for i in infos if i.looks_like_volume}
    results: list[dict | None] = [None] * len(parsed)
    decoded: list[tuple[int, Path, DicomImage, float]] = []
    for i, (raw, entry) in enumerate(zip(paths, parsed, strict=True)):
        path = Path(raw)
        if isinstance(entry, Exception):
            results[i] = error_result(path, entry)
            continue
        if scan.owner.get(str(path)) in stacked:
            continue
        started = time.perf_counter()
        try:
            image = image_from_dataset(entry[0])
        except READ_ERRORS as exc:
            results[i] = error_result(path, exc)
            continue
        decoded.append((i, path, image, entry[1] + (time.perf_counter() - started) * 1e3))
    del parsed  # the chunk's datasets (pixel bytes included) are not needed past the decode
    reads = read_decoded([d[2] for d in decoded], load, requested)
    for (i, path, image, read_ms), outcome in zip(decoded, reads, strict=True):
        results[i] = (
            error_result(path, outcome)
            if isinstance(outcome, Exception)
            else result_json(path, image, outcome[0], read_ms + outcome[1])
        )
    return [ScannedChunk([str(Path(p)) for p in paths], infos, scan.owner, results)]


def default_workers() -> int:
    """The cores this process may use (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity call
        return max(1, os.cpu_count() or 1)


# One loader per worker process, set by ``_start_worker``: a worker reads many chunks, and loading
# (sha256 of the weights, the ONNX session) once per process instead of once per chunk is the point.
_worker_loader: ModelLoader | None = None


def _start_worker() -> None:
    global _worker_loader
    # Objects inherited from the parent are never collected here: a garbage ONNX Runtime session of
    # the parent's (a test's, an app's) would run its destructor in this process, whose thread pool
    # threads do not exist after a fork, and hang it (seen: pthread_cond_destroy, forever). The
    # parent collects its garbage before forking (``_in_workers``); this keeps the rest out of reach.
    gc.freeze()
    onnx_runner.set_threads(1)  # one core per process
    torch = sys.modules.get("torch")  # PyTorch, where the caller loaded it (the read does not)
    if torch is not None:
        torch.set_num_threads(1)
    _worker_loader = ModelLoader()


ChunkReader = Callable[[list[Path], Callable[[str], LoadedModel], str | None], list]
"""``func(paths, load, requested) -> one result per path``: ``read_files``, or ``ingest``'s preparation
of files for the store. A module-level function, so that a worker process can be handed it."""


def _run_chunk(func: ChunkReader, paths: list[Path], requested: str | None) -> list:
    assert _worker_loader is not None, "_start_worker runs first in every worker"
    return func(paths, _worker_loader, requested)


def _read_chunk(paths: list[Path], requested: str | None) -> list[dict]:
    return _run_chunk(read_files, paths, requested)


def _context() -> multiprocessing.context.BaseContext:
    """Fork where the platform has it: workers start in milliseconds with the caller's modules
    already imported. Elsewhere (macOS, Windows) spawn, which imports them again."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _crashed(path: Path) -> dict:
    return {
        "file": str(path),
        "error": "the reader process stopped while decoding this file (a crash in a decoder); "
        "nothing was read from it",
        "error_type": "ReaderCrashed",
    }


def _one_by_one(func: ChunkReader, paths: list[Path], requested: str | None) -> Iterator:
    """A chunk whose worker died, read again one file per task: only the culprit fails (a fresh
    worker replaces one that died)."""
    pool: ProcessPoolExecutor | None = None
    try:
        for path in paths:
            if pool is None:
                gc.collect()  # as in _in_workers
                pool = ProcessPoolExecutor(1, mp_context=_context(), initializer=_start_worker)
            try:
                yield from pool.submit(_run_chunk, func, [path], requested).result()
            except BrokenProcessPool:
                yield _crashed(path)
                pool.shutdown(wait=True)
                pool = None
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _in_workers(
    func: ChunkReader, chunks: list[list[Path]], requested: str | None, workers: int
) -> Iterator:
    """Every chunk's results in order. When a worker dies the pool is lost with every chunk not
    yet returned: the first of them is read again file by file (it, or the one beside it,
    crashed), the rest go to a new pool."""
    while chunks:
        gc.collect()  # the parent's garbage goes here, not in a forked worker (``_start_worker``)
        pool = ProcessPoolExecutor(
            min(workers, len(chunks)), mp_context=_context(), initializer=_start_worker
        )
        done = 0
        try:
            futures: list[Future[list]] = [
                pool.submit(_run_chunk, func, part, requested) for part in chunks
            ]
            for future in futures:
                results = future.result()
                done += 1
                yield from results
        except BrokenProcessPool:
            pass
        finally:
            # a caller that stops early (Ctrl-C, an error) does not wait for the rest of the folder
            pool.shutdown(wait=True, cancel_futures=True)
        if done == len(chunks):
            return
        yield from _one_by_one(func, chunks[done], requested)
        chunks = chunks[done + 1 :]


def map_files(
    func: ChunkReader,
    paths: Iterable[Path],
    requested: str | None = None,
    *,
    workers: int | None = None,
    chunk: int = CHUNK,
    load: Callable[[str], LoadedModel] | None = None,
) -> Iterator:
    """``func``'s result for every path, in input order, computed ``chunk`` paths at a time by
    ``workers`` processes (default: one per core). One chunk or one worker: computed here, with
    ``load`` (default a new ``ModelLoader``), so a few files never pay for starting processes.
    A file whose worker crashed gets ``{"file", "error", "error_type": "ReaderCrashed"}``."""
    paths = [Path(p) for p in paths]
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    workers = min(default_workers() if workers is None else workers, len(chunks))
    if workers <= 1:
        loader = load or ModelLoader()
        for part in chunks:
            yield from func(part, loader, requested)
        return
    if onnx_runner.wanted():
        try:
            # lazy: imported before the fork so that workers do not each import it again (the
            # registry imports it on first load otherwise); only where ONNX Runtime is used
            import onnxruntime  # noqa: F401
        except ImportError:
            pass  # the registry falls back to PyTorch and says so
    yield from _in_workers(func, chunks, requested, workers)


def predict_files(
    paths: Iterable[Path],
    requested: str | None = None,
    *,
    workers: int | None = None,
    chunk: int = CHUNK,
    load: Callable[[str], LoadedModel] | None = None,
) -> Iterator[dict]:
    """``predict_file``'s result for every path, in input order (``map_files`` of ``read_files``)."""
    return map_files(read_files, paths, requested, workers=workers, chunk=chunk, load=load)
