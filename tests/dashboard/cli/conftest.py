"""Fixtures for the CLI tests: the expensive runs that several test files read, made once per run.

Why: ``oncolens validate imaging`` (every 2D and 3D model, fresh phantoms, bootstrap intervals)
and a 150-patient ``oncolens demo`` that trains the treatment model each take a minute or more on
two busy cores, and two files each ran their own. ``build_once`` (tests/conftest.py) makes each
once per run, whichever xdist worker asks first; every check on them is the one the files made.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BuildOnce

VALIDATE_N = 80  # fresh phantoms per 2D model: the figures test_cli_imaging bounds were set at 80


@pytest.fixture(scope="session")
def validated_imaging(build_once: BuildOnce) -> dict:
    """``oncolens validate imaging --n 80 --json`` with a registered copy of the built-in 3D bundle
    ("ours") beside it: the 2D models, ``brain_mets_3d`` and ``ours``, as the command prints them."""

    def build(folder: Path) -> dict:
        # lazy, as in the tests that read this: the CLI loads torch and the models
        from dashboard.cli.main import main
        from models.volumes import bundle as bundles

        shutil.copytree(bundles.BUILTIN_DIR, folder / "ours")
        out = io.StringIO()
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
            mp.setenv("ONCOLENS_MODELS", str(folder / "models"))
            assert main(["models", "add", str(folder / "ours")]) == 0
            out.seek(0), out.truncate()
            assert main(["validate", "imaging", "--n", str(VALIDATE_N), "--json"]) == 0
        return json.loads(out.getvalue())

    return build_once("validate-imaging", build)


@pytest.fixture(scope="session")
def demo_150(build_once: BuildOnce) -> dict:
    """``oncolens demo --patients 150 --images 0 --json`` (the treatment model trained, the worklist
    ranked with it), run as a user runs it: ``{"db": path, "summary": the printed JSON}``. Tests
    that write copy it first (``copy_clinic``)."""

    def build(folder: Path) -> dict:
        db = folder / "clinic.duckdb"
        r = subprocess.run(
            [sys.executable, "-m", "dashboard.cli.main", "demo", "--patients", "150"]
            + ["--images", "0", "--db", str(db), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        return {"db": str(db), "summary": json.loads(r.stdout)}

    return build_once("demo-150", build)


def copy_clinic(db: Path, folder: Path) -> Path:
    """A copy of the store ``db`` and of its model folder (``<stem>_models``) into ``folder``."""
    copy = Path(shutil.copy(db, folder / db.name))
    models = db.with_name(f"{db.stem}_models")
    if models.is_dir():
        shutil.copytree(models, folder / models.name)
    return copy
