"""An upload of several DICOM files or a zip, de-identified, then sorted into volumes and 2D images.

Why one function for the Imaging page's upload: the page must show nothing of an upload before
it is de-identified, must route a series by the same rule as a stored one (``SeriesInfo.
looks_like_volume``: at least 3 positioned, parallel images of one matrix size) and must never let
one broken series stop the others. ``read_upload`` does the three in that order on bytes held in
memory (nothing is written: an upload is stored only when it is ingested):

1. every file is de-identified with the store's key (``models.deid``; the same UIDs as an
   ingest of the same study would give); a file that is not DICOM, carries no image or cannot be
   de-identified is skipped with the reason;
2. the de-identified headers are grouped into series (``scan_series``, headers only);
3. each series that is a volume is assembled (``read_volumes``: refused series come back as
   ``SeriesFailure`` with the reason); every other image is a 2D image, read one by one.

The identity check against the open patient reads the identifiers, so it runs on the raw files
before this function (``dashboard.panels.uploads``); nothing here keeps an identifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.deid import deidentify as deid
from models.volumes.series import SeriesFailure, Volume, read_volumes, scan_series
from models.volumes.sources import Item, Skipped, label_for

__all__ = ["UploadContents", "read_upload", "series_sha256"]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True, eq=False)
class UploadContents:
    """What an upload holds, de-identified: ``volumes`` (assembled series), ``failures`` (series
    that are volumes by the rule but cannot be assembled, with the reason), ``images`` (2D images:
    label and de-identified bytes), ``skipped`` (files not read, with the reason) and ``reports``
    (label and ``DeidReport`` of every de-identified file). ``volume_sha256`` maps a volume's
    series UID to the hash of its de-identified files (``series_sha256``: the audit's input hash)."""

    volumes: tuple[Volume, ...] = ()
    failures: tuple[SeriesFailure, ...] = ()
    images: tuple[tuple[str, bytes], ...] = ()
    skipped: tuple[Skipped, ...] = ()
    reports: tuple[tuple[str, deid.DeidReport], ...] = ()
    volume_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing to show: no volume, no refused series and no 2D image."""
        return not (self.volumes or self.failures or self.images)


def series_sha256(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over the files' own sha256s, in label order: one input hash for a series however
    its files were given (a folder, several files, a zip)."""
    outer = hashlib.sha256()
    for _, data in sorted(files, key=lambda f: f[0]):
        outer.update(hashlib.sha256(data).digest())
    return outer.hexdigest()


def _unique(label: str, seen: set[str]) -> str:
    """Labels name files in messages and route them to their series: two uploads of one name
    (``IM0001`` from two folders) must stay two files."""
    out, n = label_for(label), 1
    while out in seen:
        n += 1
        out = label_for(f"{label} ({n})")  # bounded as every label, the suffix kept
    seen.add(out)
    return out


def read_upload(items: Iterable[Item], key: bytes) -> UploadContents:
    """De-identify ``items`` (``sources.collect`` of the uploads) with ``key``, then sort them into
    volumes, refused series and 2D images. Never raises for one bad file or series."""
    clean: list[tuple[str, bytes]] = []
    reports: list[tuple[str, deid.DeidReport]] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for item in items:
        label = _unique(item.label, seen)
        data = item.data
        if data is None and item.path is not None:
            try:
                data = item.path.read_bytes()
            except OSError as exc:
                skipped.append(Skipped(label, f"cannot read: {exc.strerror or exc}"))
                continue
        if not data:
            skipped.append(Skipped(label, "an empty file"))
            continue
        try:
            ds, report = deid.deidentify(data, key)
        except deid.DeidentificationError as exc:
            text = str(exc)
            why = "not a DICOM file" if text.startswith("not a readable DICOM") else text
            skipped.append(Skipped(label, why))
            continue
        if "DirectoryRecordSequence" in ds:
            skipped.append(Skipped(label, "a DICOMDIR (an index of files), not an image"))
            continue
        if not any(k in ds for k in _PIXEL_KEYWORDS):
            skipped.append(Skipped(label, "a DICOM object without an image (a report, a list)"))
            continue
        try:
            clean.append((label, deid.to_bytes(ds)))
        except deid.DeidentificationError as exc:
            skipped.append(Skipped(label, str(exc)))
            continue
        reports.append((label, report))
    infos, owner, _ = scan_series(clean)
    volume_uids = {i.series_instance_uid for i in infos if i.looks_like_volume}
    stacks = [f for f in clean if owner.get(f[0]) in volume_uids]
    images = tuple(f for f in clean if owner.get(f[0]) not in volume_uids)
    found = read_volumes(stacks) if stacks else None
    by_series: dict[str, list[tuple[str, bytes]]] = {}
    for f in stacks:
        by_series.setdefault(str(owner[f[0]]), []).append(f)
    return UploadContents(
        volumes=found.volumes if found else (),
        failures=found.failures if found else (),
        images=images,
        skipped=(*skipped, *(found.skipped if found else ())),
        reports=tuple(reports),
        volume_sha256={uid: series_sha256(files) for uid, files in by_series.items()},
    )
