"""Which OncoLens produced an output: the installed package's version.

Written into the DICOM objects sent back to a PACS (Software Versions), printed by
``oncolens --version`` and listed in the tumour-board report, so all three agree.
"""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def oncolens_version() -> str:
    """The installed ``oncolens`` distribution's version; ``"unknown"`` in a checkout never installed."""
    try:
        return version("oncolens")
    except PackageNotFoundError:
        return "unknown"


def git_commit() -> str | None:
    """The commit of the source checkout this code runs from; None outside a git checkout.

    Written into a model card's ``lineage`` at training (issue 22), so the card names the code
    that produced its weights. A subprocess, not a git library: git is optional.
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None
