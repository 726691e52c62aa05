"""Which OncoLens produced an output: the installed package's version.

Written into the DICOM objects sent back to a PACS (Software Versions), printed by
``oncolens --version`` and listed in the tumour-board report, so all three agree.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def oncolens_version() -> str:
    """The installed ``oncolens`` distribution's version; ``"unknown"`` in a checkout never installed."""
    try:
        return version("oncolens")
    except PackageNotFoundError:
        return "unknown"
