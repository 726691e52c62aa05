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
  caller after its imports (torch, pydicom, scipy are not imported again) and each runs one
  thread for PyTorch and ONNX Runtime: two processes with one thread each keep two cores busy,
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

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import torch

from models.dicom.reader import DicomImage, read_dicom, require_readable
from models.inference import onnx_runner
from models.inference.loader import ModelLoader
from models.inference.preprocess import to_tensor
from models.inference.read import (
    READ_ERRORS,
    AIRead,
    error_result,
    model_for,
    read_from_outputs,
    result_json,
)
from models.inference.registry import LoadedModel

__all__ = ["CHUNK", "default_workers", "predict_files", "read_files", "read_images"]

CHUNK = 32  # files per worker task and per forward pass: big enough to share the fixed costs,
# small enough that two workers share 1,000 files evenly and results stream back early
FORWARD_BATCH = 8  # images per forward pass: on one thread ONNX Runtime is fastest per image at
# small batches (its working set stays in cache; 8 about a quarter faster than 32, bench_batch.py)


@dataclass(frozen=True)
class _Decoded:
    index: int
    path: Path
    image: DicomImage
    model: LoadedModel
    x: torch.Tensor
    read_ms: float  # decode + sanity gate + preprocessing of this file


def read_images(
    paths: Sequence[Path], load: Callable[[str], LoadedModel], requested: str | None = None
) -> list[tuple[DicomImage, AIRead, float] | dict]:
    """For each path, in order: (image, read, latency ms) or ``predict_file``'s error entry.

    ``ingest`` uses the images and reads; ``read_files`` turns them into the CLI's JSON."""
    out: list[tuple[DicomImage, AIRead, float] | dict] = [{} for _ in paths]
    groups: dict[str, list[_Decoded]] = {}
    for i, path in enumerate(paths):
        started = time.perf_counter()
        try:
            image = read_dicom(path)
            model = model_for(image, load, requested)
            require_readable(image)  # read_image's first step, in the same order as predict_file
            x = to_tensor(image.pixels).to(model.device)
        except READ_ERRORS as exc:
            out[i] = error_result(Path(path), exc)
            continue
        groups.setdefault(model.name, []).append(
            _Decoded(i, Path(path), image, model, x, (time.perf_counter() - started) * 1e3)
        )
    with torch.inference_mode():
        for items in (
            group[k : k + FORWARD_BATCH]
            for group in groups.values()
            for k in range(0, len(group), FORWARD_BATCH)
        ):
            model = items[0].model
            forward_started = time.perf_counter()
            x = torch.cat([d.x for d in items])
            logits, mask_logits, features = model.infer_with_features(x)
            checks = model.check_inputs(x, features)
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
                out[d.index] = (d.image, ai, latency)
    return out


def read_files(
    paths: Sequence[Path], load: Callable[[str], LoadedModel], requested: str | None = None
) -> list[dict]:
    """``predict_file``'s result for each path, in order, with one forward pass per model."""
    return [
        entry if isinstance(entry, dict) else result_json(Path(path), *entry)
        for path, entry in zip(paths, read_images(paths, load, requested), strict=True)
    ]


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
    torch.set_num_threads(1)  # one core per process; ONNX Runtime follows (onnx_runner.OnnxNetwork)
    _worker_loader = ModelLoader()


def _read_chunk(paths: list[Path], requested: str | None) -> list[dict]:
    assert _worker_loader is not None, "_start_worker runs first in every worker"
    return read_files(paths, _worker_loader, requested)


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


def _one_by_one(paths: list[Path], requested: str | None) -> Iterator[dict]:
    """A chunk whose worker died, read again one file per task: only the culprit fails (a fresh
    worker replaces one that died)."""
    pool: ProcessPoolExecutor | None = None
    try:
        for path in paths:
            pool = pool or ProcessPoolExecutor(1, mp_context=_context(), initializer=_start_worker)
            try:
                yield from pool.submit(_read_chunk, [path], requested).result()
            except BrokenProcessPool:
                yield _crashed(path)
                pool.shutdown(wait=True)
                pool = None
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


def _in_workers(chunks: list[list[Path]], requested: str | None, workers: int) -> Iterator[dict]:
    """Every chunk's results in order. When a worker dies the pool is lost with every chunk not
    yet returned: the first of them is read again file by file (it, or the one beside it,
    crashed), the rest go to a new pool."""
    while chunks:
        with ProcessPoolExecutor(
            min(workers, len(chunks)), mp_context=_context(), initializer=_start_worker
        ) as pool:
            futures: list[Future[list[dict]]] = [
                pool.submit(_read_chunk, part, requested) for part in chunks
            ]
            done = 0
            try:
                for future in futures:
                    results = future.result()
                    done += 1
                    yield from results
            except BrokenProcessPool:
                pass
        if done == len(chunks):
            return
        yield from _one_by_one(chunks[done], requested)
        chunks = chunks[done + 1 :]


def predict_files(
    paths: Iterable[Path],
    requested: str | None = None,
    *,
    workers: int | None = None,
    chunk: int = CHUNK,
    load: Callable[[str], LoadedModel] | None = None,
) -> Iterator[dict]:
    """``predict_file``'s result for every path, in input order, read by ``workers`` processes
    (default: one per core). One chunk or one worker: read here, with ``load`` (default a new
    ``ModelLoader``), so a few files never pay for starting processes."""
    paths = [Path(p) for p in paths]
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    workers = min(default_workers() if workers is None else workers, len(chunks))
    if workers <= 1:
        loader = load or ModelLoader()
        for part in chunks:
            yield from read_files(part, loader, requested)
        return
    if onnx_runner.wanted():
        try:
            # lazy: imported before the fork so that workers do not each import it again (the
            # registry imports it on first load otherwise); only where ONNX Runtime is used
            import onnxruntime  # noqa: F401
        except ImportError:
            pass  # the registry falls back to PyTorch and says so
    yield from _in_workers(chunks, requested, workers)
