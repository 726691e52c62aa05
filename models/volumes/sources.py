"""Where the files of a series come from: a folder, several uploaded files, or a zip archive.

Each input becomes an ``Item``: a label for messages and its bytes (or a path read later). A
label is text to show, never a path: a zip member called ``../../etc/passwd`` is read from the
archive into memory and only ever *named* that, so nothing is written, opened or created from a
name found in the input (docs/security.md).

Zip archives are read member by member, in memory, under limits checked before a byte is
inflated and again while inflating (the declared sizes of a crafted archive lie):

- at most ``MAX_MEMBERS`` members and ``MAX_TOTAL_BYTES`` uncompressed in all;
- no member over ``MAX_MEMBER_BYTES``;
- no member inflating more than ``MAX_RATIO`` times its compressed size (a zip bomb: DICOM
  rarely compresses beyond 20:1, even CT with its uniform air; bombs reach 1000:1);
- encrypted members, nested archives and anything that is not a regular file are skipped with
  the reason; an archive that breaks these limits is refused as a whole (``UnsafeArchiveError``).
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_FILES",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "Item",
    "Skipped",
    "UnsafeArchiveError",
    "collect",
    "is_zip",
    "label_for",
]

MAX_FILES = 20_000
"""Files taken from one folder (a whole-body CT has about 2,000 slices)."""
MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 512 << 20
MAX_TOTAL_BYTES = 2 << 30
MAX_RATIO = 200.0
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # an archive without members starts with its end record
_LABEL_CHARS = 120


class UnsafeArchiveError(ValueError):
    """A zip archive that would not be safe to read (too large, too many members, a bomb)."""


@dataclass(frozen=True)
class Item:
    """One candidate file: ``label`` to show, and either ``data`` or a ``path`` to read."""

    label: str
    data: bytes | None = None
    path: Path | None = None


@dataclass(frozen=True)
class Skipped:
    """An input that is not part of any series, and why (not DICOM, encrypted, unreadable...)."""

    label: str
    reason: str

    def to_json(self) -> dict:
        return {"file": self.label, "error": self.reason}


Upload = tuple[str, bytes]
Source = str | os.PathLike[str] | Upload


def label_for(name: str) -> str:
    """Printable text for a name from the input: control characters dropped, length bounded."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in str(name))
    return clean if len(clean) <= _LABEL_CHARS else "..." + clean[-(_LABEL_CHARS - 3) :]


def collect(sources: Iterable[Source]) -> tuple[list[Item], list[Skipped]]:
    """Every candidate file from folders (walked, links not followed), files, zips and uploads.

    An upload is ``(name, bytes)``; a file or upload whose bytes start like a zip archive is
    opened as one. Hidden files (a leading dot) and the demo's ``*_mask.png`` are left out.
    Raises ``UnsafeArchiveError`` for an archive past the limits and ``ValueError`` for a folder
    with more than ``MAX_FILES`` files or ``MAX_TOTAL_BYTES`` bytes.
    """
    items: list[Item] = []
    skipped: list[Skipped] = []
    for src in sources:
        if isinstance(src, tuple):
            name, data = src
            _add_bytes(label_for(name), bytes(data), items, skipped)
            continue
        path = Path(src)
        if path.is_dir():
            _walk(path, items, skipped)
        elif not path.exists():
            skipped.append(Skipped(label_for(str(path)), "file not found"))
        elif _is_zip_file(path):
            items.extend(_zip_items(path, label_for(str(path)), skipped))
        else:
            items.append(Item(label_for(str(path)), path=path))
    return items, skipped


def _walk(folder: Path, items: list[Item], skipped: list[Skipped]) -> None:
    """Regular files under ``folder``, at most ``MAX_FILES`` and ``MAX_TOTAL_BYTES`` (every file of
    the folder is held in memory until its series is stacked)."""
    found = total = 0
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith("_mask.png") or name.endswith(".nii.gz"):
                continue
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except OSError as exc:
                skipped.append(Skipped(label_for(str(path)), f"cannot read: {exc.strerror}"))
                continue
            if not stat.S_ISREG(mode):
                continue  # links and devices: never followed
            found += 1
            total += path.stat().st_size
            if total > MAX_TOTAL_BYTES:
                raise ValueError(
                    f"{label_for(str(folder))} holds more than {MAX_TOTAL_BYTES / 2**30:.0f} GiB of "
                    "files; give one study's or one series' folder"
                )
            if found > MAX_FILES:
                raise ValueError(
                    f"{label_for(str(folder))} holds more than {MAX_FILES:,} files; "
                    "give one study's folder"
                )
            if _is_zip_file(path):
                items.extend(_zip_items(path, label_for(str(path)), skipped))
            else:
                items.append(Item(label_for(str(path)), path=path))


def _is_zip_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return is_zip(f.read(4))
    except OSError:
        return False


def is_zip(data: bytes) -> bool:
    """Whether bytes start like a zip archive (one with members, or an empty one)."""
    return data[:4] in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)


def _add_bytes(label: str, data: bytes, items: list[Item], skipped: list[Skipped]) -> None:
    if is_zip(data):
        items.extend(_zip_items(io.BytesIO(data), label, skipped))
    else:
        items.append(Item(label, data=data))


def _zip_items(source: Path | io.BytesIO, label: str, skipped: list[Skipped]) -> list[Item]:
    """The archive's regular members, read into memory under the module's limits."""
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        skipped.append(Skipped(label, f"not a readable zip archive ({exc})"))
        return []
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnsafeArchiveError(
                f"{label} has {len(infos):,} members; at most {MAX_MEMBERS:,} are read"
            )
        declared = sum(i.file_size for i in infos)
        if declared > MAX_TOTAL_BYTES:
            raise UnsafeArchiveError(
                f"{label} would inflate to {declared / 2**30:.1f} GiB; at most "
                f"{MAX_TOTAL_BYTES / 2**30:.0f} GiB are read"
            )
        out: list[Item] = []
        total = 0
        if not infos:
            skipped.append(Skipped(label, "an empty zip archive"))
        for info in infos:
            name = label_for(f"{label}:{info.filename}")
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                skipped.append(Skipped(name, "encrypted zip member; not read"))
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                raise UnsafeArchiveError(
                    f"{name} would inflate to {info.file_size / 2**20:.0f} MiB; at most "
                    f"{MAX_MEMBER_BYTES / 2**20:.0f} MiB per file"
                )
            if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > 1 << 20:
                raise UnsafeArchiveError(
                    f"{name} inflates {info.file_size / max(info.compress_size, 1):,.0f} times "
                    f"(over {MAX_RATIO:.0f}): refused as a possible zip bomb"
                )
            try:
                with zf.open(info) as member:
                    data = member.read(info.file_size + 1)  # never more than declared + 1
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                skipped.append(Skipped(name, f"cannot read this zip member ({exc})"))
                continue
            if len(data) > info.file_size:
                raise UnsafeArchiveError(f"{name} inflates past its declared size: refused")
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise UnsafeArchiveError(f"{label} inflates past {MAX_TOTAL_BYTES / 2**30:.0f} GiB")
            if data[:4] == _ZIP_MAGIC:
                skipped.append(Skipped(name, "a zip inside a zip; not opened"))
                continue
            out.append(Item(name, data=data))
        return out
