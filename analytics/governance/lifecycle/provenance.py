"""What a training records about itself: the code that ran, the data it saw, its drift reference.

Why at training time: lineage reconstructed later is a guess (the store has changed, the code
has moved on). ``training_lineage`` is written into the treatment card by
``analytics.treatment.clinic.train_clinic_model``; ``code_version`` serves the imaging training
too. ``drift_reference`` keeps a seeded sample of the training covariates in the card, the
reference ``drift`` compares later patients against.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE_SAMPLE = 1000  # covariate values kept per feature: enough for PSI deciles and a KS test
_SOURCE_ROOT = Path(__file__).resolve().parents[3]


def code_version() -> dict:
    """The installed OncoLens version and, in a git checkout, the commit (None outside one)."""
    try:
        package = version("oncolens")
    except PackageNotFoundError:
        package = None
    commit = None
    try:
        # a subprocess, not a git library: git is optional and this runs once per training
        out = subprocess.run(
            ["git", "-C", str(_SOURCE_ROOT), "rev-parse", "HEAD"],  # noqa: S607 - git on PATH by design
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if out.returncode == 0 and len(out.stdout.strip()) == 40:
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "oncolens_version": package}


def frame_sha256(frame: pd.DataFrame) -> str:
    """sha256 of a table's values and column names, row order included: the dataset's id."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def training_lineage(table, fingerprint: str, metadata: dict, command: str | None) -> dict:
    """The card's ``lineage`` block for a model trained on ``table`` (a treatment ``SurvivalTable``)."""
    data = table.covariates.copy()
    data["treatment"] = np.asarray(table.treatment, dtype=str)
    data["time_days"] = np.asarray(table.time_days, dtype=float)
    data["event"] = np.asarray(table.event, dtype=bool)
    return {
        "store_fingerprint": fingerprint,
        "dataset_sha256": frame_sha256(data),
        "cohort": table.source
        or "patients with a diagnosis, a first-line option and follow-up, no missing covariate",
        "rows": {
            "patients": len(data),
            "events": int(np.asarray(table.event, dtype=bool).sum()),
            "excluded": list(table.notes),
        },
        "data_cutoff": metadata.get("data_cutoff"),
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        **code_version(),
    }


def drift_reference(table, seed: int) -> dict:
    """A seeded sample (at most ``REFERENCE_SAMPLE`` patients) of the training covariates, per feature."""
    covariates = table.covariates
    rng = np.random.default_rng(seed)
    n = len(covariates)
    rows = (
        np.sort(rng.choice(n, size=min(n, REFERENCE_SAMPLE), replace=False)) if n else np.arange(0)
    )
    sample = covariates.iloc[rows]
    return {
        "what": f"training covariates, {len(sample)} of {n} patients (seed {seed})",
        "n_training": n,
        "values": {
            c: [round(float(v), 4) for v in sample[c].to_numpy(dtype=float)]
            for c in covariates.columns
        },
    }
