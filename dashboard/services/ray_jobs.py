"""Batch work on Ray (``--engine ray``): the AI read of many files and the worklist's forecast risks.

Why Ray, and why this shape (docs/scaling.md): past one machine, the two batch jobs that grow
with the archive and the patient base are embarrassingly parallel. Ray runs the *same library
functions* in its workers that the local run uses (``models.inference.batch.read_files``,
``analytics.forecast.patient.cohort_risk``), on a local cluster started for the run or on an
existing one (``address``: ``ray://head:10001``, ``auto``). Results come back to the driver,
which alone writes the store (DuckDB has one writer per file), in the order the local run
would produce them, so the two runs give identical output (tests/dashboard/services/
test_ray_jobs.py).

* Reads: one ``_Reader`` actor per CPU, each loading each model once; chunks of
  ``batch.CHUNK`` files go to whichever actor is free (``ray.util.ActorPool``, results in
  order). Files are read by path: on a real cluster every worker must see them (a shared
  file system or object store mount), as it must see the weights (the same OncoLens installed
  on every node).
* Risks: one task per chunk of ``RISK_CHUNK`` patients, exactly the local run's chunks (each
  chunk's random draws are seeded, so the chunking is part of the result). Each task opens
  the store read-only by path (a shared file system again; DuckDB lets many processes read a
  file that nobody writes) and loads the store's treatment model once per worker.

Nothing here is imported unless ``--engine ray`` is asked for: Ray takes a second to import
and several to start a local cluster.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import ray
from ray.util import ActorPool

import models
from models.inference import batch

__all__ = ["cluster", "predict_files", "risk_map"]


def _code_root() -> str:
    """The folder holding this OncoLens's packages, for a local cluster's workers' PYTHONPATH:
    they then import the very code the driver runs (a checkout, not another installed copy)."""
    return str(Path(models.__file__).resolve().parents[1])


@contextmanager
def cluster(address: str | None = None, workers: int | None = None) -> Iterator[None]:
    """Connected to Ray for the block: ``address`` an existing cluster, else a local one with
    ``workers`` CPUs (default: this machine's cores), no dashboard, shut down at the end. Already
    connected (a test, a notebook): used as it is and left running."""
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    else:
        root = _code_root()
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(
            num_cpus=workers or batch.default_workers(),
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_cpus=1)
class _Reader:
    """One per CPU: a ``ModelLoader`` kept for the actor's life, one thread (as a local worker)."""

    def __init__(self) -> None:
        batch._start_worker()

    def read(self, paths: list[str], requested: str | None) -> list[dict]:
        return batch._read_chunk([Path(p) for p in paths], requested)


def predict_files(
    files: list[Path],
    requested: str | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    chunk: int = batch.CHUNK,
) -> Iterator[dict]:
    """``predict_file``'s result for every file, in input order, read by Ray actors."""
    chunks = [[str(p) for p in files[i : i + chunk]] for i in range(0, len(files), chunk)]
    with cluster(address, workers):
        n = max(1, min(len(chunks), int(ray.available_resources().get("CPU", 1))))
        pool = ActorPool([_Reader.remote() for _ in range(n)])  # type: ignore[attr-defined]
        for results in pool.map(lambda actor, part: actor.read.remote(part, requested), chunks):
            yield from results


# One treatment model per worker process (loading it is a second; a worker runs many chunks).
_clinics: dict[str, object] = {}


def _clinic_for(db_path: str):
    # lazy: analytics only in the workers that compute risks
    from analytics.worklist.stored import clinic_model

    if db_path not in _clinics:
        _clinics[db_path] = clinic_model(Path(db_path))
    return _clinics[db_path]


@ray.remote(num_cpus=1)
def _chunk_risk(
    db_path: str,
    ids: np.ndarray,
    with_clinic: bool,
    prior,
    as_of: dt.date,
    line_start: pd.Series | None,
) -> pd.DataFrame:
    # lazy: analytics only in the workers that compute risks
    from analytics import store
    from analytics.forecast.patient import cohort_risk  # lazy: as above

    clinic = _clinic_for(db_path) if with_clinic else None
    with store.open_store(Path(db_path), read_only=True) as con:
        return cohort_risk(con, ids, prior, clinic, as_of, line_start=line_start)


def risk_map(db_path: Path):
    """A ``risks`` runner (``analytics.worklist.ranking.RiskMap``) that computes each chunk's
    ``cohort_risk`` as a Ray task against the store at ``db_path``; results in the jobs' order."""
    db = str(Path(db_path).expanduser().resolve())

    def run(jobs, prior, as_of, line_start):
        refs = [
            _chunk_risk.remote(  # type: ignore[attr-defined]
                db,
                ids,
                with_clinic,
                prior,
                as_of,
                None if line_start is None else line_start[line_start.index.isin(ids)],
            )
            for ids, with_clinic in jobs
        ]
        return ray.get(refs)

    return run
