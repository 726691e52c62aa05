"""Output paths that stay inside their folder, whatever the names they are built from.

Why one helper: file names here come from values that an attacker may control (a DICOM
file's UIDs, a patient pseudonym, a study key). Remapping makes them safe in the normal
case; this is the second wall, used by every writer of a file whose name comes from data
(de-identification, ingest): each part must be one plain name, and the resolved target
(symlinks followed) must lie under the resolved folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["UnsafePathError", "inside"]

_MAX_PART = 255  # one path component on the usual file systems


class UnsafePathError(ValueError):
    """A name would leave its folder (separator, '..', NUL, empty) or resolves outside it."""


def inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root/part/part/...`` resolved, refused unless every part is one plain name and the
    result stays under ``root`` (also resolved). Nothing is created."""
    base = Path(root).expanduser().resolve()
    for part in parts:
        text = str(part)
        if (
            not text
            or text in (".", "..")
            or "/" in text
            or "\\" in text
            or "\x00" in text
            or (os.altsep and os.altsep in text)
            or len(text.encode("utf-8", "surrogatepass")) > _MAX_PART
        ):
            raise UnsafePathError(
                f"refused an output name that is not one plain file name: {text[:80]!r}"
            )
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise UnsafePathError(f"refused an output path outside {base}")
    return target
