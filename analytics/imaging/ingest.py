"""DICOM files into the store: study, series and instance metadata, the AI finding, the lesion size.

Why the AI read is stored with the image: the patient timeline and the
worklist read lesion sizes from ``measurement``; an AI-measured diameter goes
there with ``source = 'ai'`` and the study it came from, so a clinician can
always tell it apart from a radiologist's measurement and open the image it
was read from.

Files are read and the models run before the store is opened; the store is
then held for one short transaction (docs/architecture.md, "short writers").
A file that cannot be read, or whose patient is not in the store, gets an
error entry and is not stored; the other files still are. Re-ingesting an
instance replaces its earlier rows instead of duplicating them.

De-identification (docs/governance.md): the DICOM PatientID is matched to the
store's MRN or person id first; then the file is de-identified with the
store's key (``models.deid.deidentify``, PS3.15 Annex E Basic Profile) with the
person id as its PatientID, and only that copy is kept, under
``<store>_images/<person id>/<study>/<instance>.dcm``; the store's rows point
to it. The original file is read, never copied or changed. UIDs are remapped
with the store's key, so a re-ingest maps to the same rows. The copy is made where the file is
read, in the worker processes, with a placeholder pseudonym that the writer swaps for the person
id once it has matched her (``models.deid.deferred``: the same bytes as de-identifying in the
writer, which it still does where a copy cannot be deferred; issue 23). One exception
keeps the record whole: a study whose original UID the store already lists
for the same patient (the demo clinic's own studies) keeps that study row, so
its radiology measurements and the AI read stay on one study.

A read the input guard refused (``models.inference.guard``) is stored as such, in
``ai_refusal`` (model, version, score, threshold, reason), with no finding and no measurement;
the image itself is filed as usual. The entry says ``refused`` and carries the ``input_check``
that ``oncolens predict --json`` prints for the same file.

Series that are volumes (3 or more parallel positioned images: ``models.volumes.measure.volume_files``'s rule) are
read once in 3D by the model of their modality, never slice by slice by a 2D model; their images
are filed like any other, and the read goes in the same transaction to ``ai_volume_read`` and
``ai_volume_lesion``, with the lesions linked across the patient's time points and one AI
``measurement`` per study (``analytics.imaging.volumes``). The report lists each such series in
``volumes`` (a series no 3D model reads is listed with the reason, and its images are still filed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import glob
import hashlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from analytics import store
from analytics.governance.chain import append_event, chained_transaction
from analytics.governance.lifecycle.tables import STAT_COLUMNS
from analytics.imaging import volumes as volume_store
from analytics.imaging.rows import PendingRows
from analytics.worklist.stored import refresh_for_writer, source_fingerprint
from models.deid import deferred
from models.deid import deidentify as deid
from models.dicom.reader import DicomImage, DicomReadError, image_from_dataset, read_dataset
from models.inference.batch import map_files, parse_and_scan, read_decoded
from models.inference.read import AIRead, NoModelForImageError
from models.inference.registry import LoadedModel, ModelUnavailableError
from models.inference.tasks import TASKS
from models.paths import UnsafePathError, inside
from models.volumes.measure import SeriesRead, read_series
from models.volumes.series import SeriesInfo, scan_series

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

STORE_MODALITIES = {"MG", "MR", "CT", "US", "PT"}

# What the store keeps of a study or series description: one body-part term of this vocabulary
# (the terms the models' choice looks for, and common others), never the free text, which can
# hold names, dates or accession numbers (issue 24). The model choice itself runs on the original
# header before de-identification; this term lets a later read of the de-identified copy choose
# the same model (dashboard/app_pages/imaging.py reads it as the study description).
BODY_PART_TERMS = tuple(
    sorted(
        {bp for task in TASKS.values() for bp in (task.body_parts or ())}
        | {
            "BREAST",
            "BRAIN",
            "HEAD",
            "CHEST",
            "ABDOMEN",
            "PELVIS",
            "SPINE",
            "NECK",
            "LIVER",
            "LUNG",
        }
    )
)


@dataclass
class IngestReport:
    stored: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)  # one per series read in 3D (or why not)
    # the reads themselves (not JSON): a caller holding the original files builds the SEG and SR
    series_reads: list[SeriesRead] = field(default_factory=list, repr=False)

    def volumes_read(self) -> list[dict]:
        """The ``volumes`` entries of series that were read (in ``series_reads``' order)."""
        return [v for v in self.volumes if "note" not in v]


SERIES_NOTE = "read as a 3D series (ai_volume_read), not slice by slice"


@dataclass(frozen=True)
class _Prepared:
    file: Path
    patient_key: str
    study_uid: str
    series_uid: str
    sop_uid: str
    study_date: dt.date
    modality: str
    body_part: str | None
    study_description: str | None  # a BODY_PART_TERMS term, never the free text
    series_description: str | None  # the same
    sha256: str  # of the original file: the audit event names what was ingested without copying it
    rows: int
    columns: int
    spacing_mm: float | None
    ai: AIRead | None
    ai_note: str | None
    deid: _Deidentified | None = None  # made in the worker; None: the writer de-identifies


@dataclass(frozen=True)
class _Deidentified:
    """A file's de-identified copy, made where it was read (``models.deid.deferred``: the person id
    goes in at the writer), or why there is none. ``copy`` holds no bytes: they are in the file
    ``spooled`` (a folder of this ingest's), so the writer never holds a whole folder's copies in
    memory. ``error``: de-identification refused the file; ``write_error``: the copy could not be
    written (``to_bytes``); the writer reports either where it reported them before."""

    report: deid.DeidReport | None = None
    copy: deferred.DeferredCopy | None = None
    spooled: str | None = None
    error: str | None = None
    write_error: str | None = None


def _deidentify_here(
    path: Path, key: bytes, spool: Path, parsed: Dataset | None = None
) -> _Deidentified | None:
    """``path`` de-identified with ``deferred.PLACEHOLDER`` as its pseudonym and written to
    ``spool``, or None where the writer has to do it in full (the copy's pseudonym cannot be
    swapped, or an error the writer raises or reports on its own).

    ``parsed``: the file's data set as the read parsed it, de-identified in place (and so used up)
    where it is what ``deidentify`` would parse itself: a conforming file (preamble and 'DICM',
    which ``deidentify`` requires, and then ``read_dataset`` parses it the same way) within
    ``deid.MAX_FILE_BYTES``; any other file is parsed again from ``path``."""
    source: Dataset | Path = path
    if parsed is not None:
        with contextlib.suppress(OSError):  # the writer meets it again and says so
            with open(path, "rb") as f:
                head = f.read(132)
                size = f.seek(0, os.SEEK_END)
            if head[128:132] == b"DICM" and size <= deid.MAX_FILE_BYTES:
                source = parsed
    try:
        ds, report = deid.deidentify(
            source, key, patient_id=deferred.PLACEHOLDER, in_place=source is parsed
        )
    except deid.DeidentificationError as exc:
        return _Deidentified(error=str(exc))
    except Exception:  # noqa: BLE001 - the writer meets it again (file gone, unreadable) and says so
        return None
    try:
        data = deid.to_bytes(ds)
    except deid.DeidentificationError as exc:
        return _Deidentified(report=report, write_error=str(exc))
    copy = deferred.deferred(ds, data, report)
    if copy is None:
        return None
    spooled = spool / f"{uuid.uuid4().hex}.dcm"
    spooled.write_bytes(data)
    return _Deidentified(
        report=report, copy=dataclasses.replace(copy, data=b""), spooled=str(spooled)
    )


def coded_term(*texts: str | None) -> str | None:
    """The first ``BODY_PART_TERMS`` term found in the texts (upper-cased), or None: what the store
    keeps instead of a free-text description."""
    for text in texts:
        upper = str(text or "").upper()
        for term in BODY_PART_TERMS:
            if term in upper:
                return term
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(text or "").strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _checked(path: Path, ds: Dataset | None = None) -> tuple[DicomImage, Dataset, dt.date]:
    """The decoded image, its header and study date, or a ``DicomReadError`` saying why it cannot
    be filed. ``ds``: the file already parsed (``read_dataset``); the header is that dataset (one
    parse per file: it holds every attribute a header-only parse holds, issue 23)."""
    if ds is None:
        ds = read_dataset(path)[0]
    image = image_from_dataset(ds)
    header = ds
    missing = [
        k
        for k, v in (
            ("PatientID", image.patient_id),
            ("StudyInstanceUID", image.study_uid),
            ("SeriesInstanceUID", image.series_uid),
            ("SOPInstanceUID", image.sop_instance_uid),
        )
        if not v
    ]
    if missing:
        raise DicomReadError(
            f"cannot file this image: {', '.join(missing)} missing from the header"
        )
    study_date = _date(image.study_date) or _date(getattr(header, "SeriesDate", None))
    if study_date is None:
        raise DicomReadError("cannot file this image: no valid StudyDate in the header")
    return image, header, study_date


def _prepared(
    path: Path, image: DicomImage, header: Dataset, study_date: dt.date, outcome
) -> _Prepared:
    """What the store keeps of one read file: its identifiers and coded terms, the AI read (or the
    note why there is none), the sha256 of the original."""
    ai = note = None
    if isinstance(outcome, str):  # a slice of a volume: its series is read in 3D
        note = outcome
    elif isinstance(outcome, NoModelForImageError | ModelUnavailableError):
        note = str(outcome)
    elif isinstance(outcome, Exception):
        raise outcome  # the sanity gate refused the pixels: not filed (DicomReadError)
    else:
        ai = outcome[0]
    assert image.study_uid and image.series_uid and image.sop_instance_uid  # checked by _checked
    spacing = image.spacing_mm
    return _Prepared(
        file=path.resolve(),
        patient_key=str(image.patient_id).strip(),
        study_uid=image.study_uid,
        series_uid=image.series_uid,
        sop_uid=image.sop_instance_uid,
        study_date=study_date,
        modality=image.modality.upper() if image.modality.upper() in STORE_MODALITIES else "OT",
        body_part=image.body_part,
        study_description=coded_term(
            image.body_part, str(getattr(header, "StudyDescription", "") or "")
        ),
        series_description=coded_term(str(getattr(header, "SeriesDescription", "") or "")),
        sha256=_sha256(path),
        rows=image.rows,
        columns=image.columns,
        spacing_mm=float(spacing[0]) if spacing else None,
        ai=ai,
        ai_note=note,
    )


def _failed(path: Path, exc: BaseException) -> dict:
    if isinstance(exc, FileNotFoundError):
        return {"file": str(path), "error": "file not found"}
    return {"file": str(path), "error": str(exc)}


def prepare_files(
    paths: list[Path],
    load: Callable[[str], LoadedModel],
    requested: str | None = None,
    *,
    read: bool = True,
) -> list[_Prepared | dict]:
    """Each file read, checked and AI-read, ready for the store (or its failure entry), in order.

    The AI read is the batched one (``models.inference.batch.read_decoded``: one forward pass per
    few images, the same results as ``read_image``); ``ingest_files`` runs this in worker
    processes (``map_files``), which is why it takes a list and returns plain values."""
    out: list[_Prepared | dict] = [{} for _ in paths]
    decoded: list[tuple[int, Path, DicomImage, Dataset, dt.date]] = []
    for i, path in enumerate(paths):
        try:
            decoded.append((i, Path(path), *_checked(Path(path))))
        except (DicomReadError, OSError) as exc:
            out[i] = _failed(Path(path), exc)
    outcomes = (
        read_decoded([d[2] for d in decoded], load, requested)
        if read
        else [SERIES_NOTE] * len(decoded)
    )
    for (i, path, image, header, study_date), outcome in zip(decoded, outcomes, strict=True):
        try:
            out[i] = _prepared(path, image, header, study_date, outcome)
        except (DicomReadError, OSError) as exc:
            out[i] = _failed(path, exc)
    return out


@dataclass(frozen=True)
class _PreparedChunk:
    """``prepare_and_scan``'s answer for one chunk: the series scan of its files (by resolved
    path) and each file's entry as a 2D image (``prepare_files``), or as a slice of a volume
    (``prepare_files`` without the 2D read) where its series is a stack within the chunk already;
    ``as_slice[i]``: the slice entry where the 2D one is a failure that only the 2D read caused
    (the sanity gate), else None."""

    infos: list[SeriesInfo]
    owner: dict[str, str]
    resolved: list[str]
    entries: list[_Prepared | dict]
    as_slice: list[_Prepared | dict | None]
    stacked: list[bool]  # entries[i] is already the slice entry
    scan_failed: bool


def prepare_and_scan(
    paths: list[Path],
    load: Callable[[str], LoadedModel],
    requested: str | None = None,
    *,
    key: bytes | None = None,
    spool: Path | None = None,
) -> list[_PreparedChunk]:
    """The series scan and ``prepare_files`` of ``paths`` from one parse of each file (a
    one-element list, for ``map_files``' worker processes). Before issue 23 an ingest parsed each
    file three times before the writer: the scan (in the parent, one core), the read and the
    header; ``ingest_files`` merges the chunks' scans and picks each file's entry from them.

    ``key`` and ``spool``: each entry's file is de-identified here too, its copy written to
    ``spool`` with the person id left to the writer (``_deidentify_here``): the writer's serial
    de-identification was half of an ingest's time (issue 23). Without them the writer does it."""
    resolved = [str(Path(p).resolve()) for p in paths]
    scan_failed = False
    try:
        scan, parsed = parse_and_scan(paths, resolved)
        infos = scan.infos()
        owner = scan.owner
    except (OSError, ValueError):  # as the scan before: no series then (an unsafe zip among them)
        scan_failed, infos, owner = True, [], {}
        parsed = [ValueError("not parsed")] * len(paths)
    stacked_uids = {i.series_instance_uid for i in infos if i.looks_like_volume}
    stacked = [owner.get(r) in stacked_uids for r in resolved]
    entries: list[_Prepared | dict] = [{} for _ in paths]
    as_slice: list[_Prepared | dict | None] = [None] * len(paths)
    decoded: list[tuple[int, Path, DicomImage, Dataset, dt.date]] = []
    for i, (raw, entry) in enumerate(zip(paths, parsed, strict=True)):
        path = Path(raw)
        try:
            if scan_failed:
                decoded.append((i, path, *_checked(path)))
            elif isinstance(entry, Exception):
                raise entry
            else:
                decoded.append((i, path, *_checked(path, entry[0])))
        except (DicomReadError, OSError) as exc:
            entries[i] = _failed(path, exc)
    del parsed
    flat = [d for d in decoded if not stacked[d[0]]]
    outcomes = read_decoded([d[2] for d in flat], load, requested)
    for (i, path, image, header, study_date), outcome in zip(flat, outcomes, strict=True):
        try:
            entries[i] = _prepared(path, image, header, study_date, outcome)
        except (DicomReadError, OSError) as exc:
            entries[i] = _failed(path, exc)
            if isinstance(outcome, DicomReadError):  # the 2D read's refusal, not the file's
                try:
                    as_slice[i] = _prepared(path, image, header, study_date, SERIES_NOTE)
                except (DicomReadError, OSError) as again:
                    as_slice[i] = _failed(path, again)
    for i, path, image, header, study_date in decoded:
        if stacked[i]:
            try:
                entries[i] = _prepared(path, image, header, study_date, SERIES_NOTE)
            except (DicomReadError, OSError) as exc:
                entries[i] = _failed(path, exc)
    if key is not None and spool is not None:
        headers = {d[0]: d[3] for d in decoded}
        del decoded
        for i, (filed, slice_entry) in enumerate(zip(entries, as_slice, strict=True)):
            if isinstance(filed, _Prepared) or isinstance(slice_entry, _Prepared):
                made = _deidentify_here(Path(paths[i]), key, spool, headers.pop(i, None))
                if isinstance(filed, _Prepared):
                    entries[i] = dataclasses.replace(filed, deid=made)
                if isinstance(slice_entry, _Prepared):
                    as_slice[i] = dataclasses.replace(slice_entry, deid=made)
    return [_PreparedChunk(infos, owner, resolved, entries, as_slice, stacked, scan_failed)]


def _prepare_in_one_pass(
    paths: list[Path],
    workers: int | None,
    load: Callable[[str], LoadedModel] | None,
    lost: dict[str, list[Path]] | None = None,
    key: bytes | None = None,
    spool: Path | None = None,
) -> tuple[list[_Prepared | dict], dict[str, list[Path]]]:
    """``ingest_files``' entries (the 2D images first, then the slices of volumes, each in input
    order, as the two passes gave them) and its volume series (``volume_files``' answer), from
    one parse of each file in ``workers`` processes (de-identified there too with ``key`` into
    ``spool``, ``prepare_and_scan``).

    ``lost`` (filled when given): per volume series, its files whose worker crashed (a decoder
    that killed the process). Their headers are read here (``scan_series``: headers only, no
    decoder runs), so the series is still routed by all of its images, and its gap check still
    knows them: a crashed end slice leaves no gap in the positions of the others, and the series
    would have been read one slice short without a word (``ingest_files`` refuses it instead)."""
    merged: dict[str, SeriesInfo] = {}
    owner: dict[str, str] = {}
    scan_failed = False
    per_file: list[tuple[str | None, _Prepared | dict, _Prepared | dict | None, bool]] = []
    crashed: list[Path] = []
    prepare = functools.partial(prepare_and_scan, key=key, spool=spool)
    for part in map_files(prepare, paths, workers=workers, load=load):
        if isinstance(part, dict):  # a file that crashed its worker: a failure, as before
            per_file.append((None, part, None, False))
            crashed.append(Path(part["file"]))
            continue
        scan_failed |= part.scan_failed
        owner.update(part.owner)
        for info in part.infos:
            seen = merged.get(info.series_instance_uid)
            merged[info.series_instance_uid] = info if seen is None else seen.merged(info)
        per_file.extend(zip(part.resolved, part.entries, part.as_slice, part.stacked, strict=True))
    crashed_in: dict[str, list[Path]] = {}
    if crashed:  # their headers, read here: which series they belong to (their pixels are not read)
        infos, crashed_owner, _ = scan_series(crashed)
        for info in infos:
            seen = merged.get(info.series_instance_uid)
            merged[info.series_instance_uid] = info if seen is None else seen.merged(info)
        for path in crashed:
            uid = crashed_owner.get(str(path))
            if uid is not None:
                crashed_in.setdefault(uid, []).append(path)
    wanted = (
        set() if scan_failed else {uid for uid, info in merged.items() if info.looks_like_volume}
    )
    if lost is not None:
        lost.update({uid: files for uid, files in crashed_in.items() if uid in wanted})
    series: dict[str, list[Path]] = {}
    flat: list[_Prepared | dict] = []
    slices: list[_Prepared | dict] = []
    redo: list[tuple[int, Path]] = []  # read as a slice in its chunk, but no volume is read
    for path, (resolved, entry, slice_entry, stacked) in zip(paths, per_file, strict=True):
        uid = owner.get(resolved) if resolved is not None else None
        if uid not in wanted:
            if stacked:  # only where another chunk's scan failed (then no series at all)
                redo.append((len(flat), path))
            flat.append(entry)
            continue
        assert resolved is not None and uid is not None
        series.setdefault(uid, []).append(Path(resolved))
        if stacked:
            slices.append(entry)
        elif isinstance(entry, _Prepared):
            slices.append(dataclasses.replace(entry, ai=None, ai_note=SERIES_NOTE))
        else:
            slices.append(entry if slice_entry is None else slice_entry)
    if redo:  # the 2D read they did not get (rare: an unsafe zip among the files)
        again = map_files(prepare_files, [p for _, p in redo], workers=workers, load=load)
        for (k, _), entry in zip(redo, again, strict=True):
            flat[k] = entry
    return [*flat, *slices], series


def _incomplete(uid: str, files: list[Path], crashed: list[Path]) -> SeriesRead:
    """A volume series with files its reader crashed on: not read in 3D, and the reason names
    them (their slices are missing from the volume, wherever they lie: at an end no gap shows)."""
    n = len(crashed)
    names = ", ".join(p.name for p in crashed[:3]) + (f" and {n - 3} more" if n > 3 else "")
    return SeriesRead(
        uid,
        tuple(str(p) for p in files),
        error=f"incomplete series: {n} of its {len(files) + n} images could not be read (the "
        f"reader process crashed on {names}), so the volume would miss their slices; it is "
        "not read in 3D",
        error_type="IncompleteSeriesError",
    )


def _store_volumes(
    con,
    reads: list[SeriesRead],
    filed: dict[str, tuple[int, str, str, dt.date]],
    key: bytes,
    now: dt.datetime,
    report: IngestReport,
) -> None:
    """The 3D reads of series whose images were filed in this transaction."""
    next_meas = store.one_row(
        con.execute("SELECT coalesce(max(measurement_id), 0) + 1 FROM measurement")
    )[0]
    for sr in reads:
        where = [filed[f] for f in sr.files if f in filed]
        if not where:
            continue  # none of its images was filed: their errors are in the report already
        person_id, study_uid, series_uid, study_date = where[0]
        if sr.read is None:
            report.volumes.append(
                {
                    "kind": "volume",
                    "person_id": person_id,
                    "study_uid": study_uid,
                    "series_instance_uid": series_uid,
                    "note": sr.error,  # its images are filed: a note, as for a 2D image no model reads
                    "note_type": sr.error_type,
                }
            )
            continue
        frame = sr.volume.frame_of_reference_uid if sr.volume is not None else ""
        entry, next_meas = volume_store.store_series_read(
            con,
            sr,
            person_id=person_id,
            study_uid=study_uid,
            series_uid=series_uid,
            study_date=study_date,
            frame_key=deid.remap_uid(frame, key) if frame else None,
            now=now,
            next_measurement_id=next_meas,
        )
        report.volumes.append(entry)
        report.series_reads.append(sr)


def _read_input_row(p: _Prepared, person_id: int, now: dt.datetime) -> tuple:
    """What the read saw (guard score, image statistics), for drift monitoring (issue 22): an
    ``ai_read_input`` row."""
    ai = p.ai
    assert ai is not None and ai.input_check is not None  # the caller checks
    check = ai.input_check
    stats = (
        list(check.statistics)
        if len(check.statistics) == len(STAT_COLUMNS)
        else [None] * len(STAT_COLUMNS)
    )
    return (
        p.sop_uid,
        person_id,
        ai.model,
        ai.model_version,
        p.study_date,
        now,
        ai.refused is not None,
        check.score,
        check.feature_distance,
        check.statistics_distance,
        *stats,
    )


def images_dir_for(db_path: Path) -> Path:
    """Where the store keeps its de-identified image files: ``<store stem>_images`` beside it."""
    db_path = Path(db_path).expanduser()
    return db_path.with_name(f"{db_path.stem}_images")


def _pending(target: Path) -> Path:
    return target.with_name(target.name + ".pending")


def _stage_deidentified(
    made: _Deidentified | Dataset | None,
    rep: deid.DeidReport,
    p: _Prepared,
    person_id: int,
    images_dir: Path,
    key: bytes,
) -> tuple[Path, str]:
    """Write the de-identified copy (and its phantom mask, if any) beside its final name as
    ``.pending``; ``_publish`` renames it after the commit, so a rolled-back ingest never replaces
    or deletes an image stored earlier. Every name passes ``models.paths.inside``. ``made``: the
    worker's copy, finished here with the person id (``models.deid.deferred.fill_in``), or the
    data set the writer de-identified. Returns the final name and the sha256 of the copy.
    ``key``: the store's, to de-identify the file here in full where the worker's copy cannot be
    finished (``fill_in`` found its elements missed): the bytes of the writer's own path."""
    target = inside(images_dir, str(int(person_id)), rep.study_uid, f"{rep.sop_instance_uid}.dcm")
    if isinstance(made, _Deidentified):
        if made.write_error is not None:
            raise deid.DeidentificationError(made.write_error)
        assert made.copy is not None and made.spooled is not None  # set wherever there is no error
        copy = dataclasses.replace(made.copy, data=Path(made.spooled).read_bytes())
        finished = deferred.fill_in(copy, str(int(person_id)))
        if finished is None:  # the splice missed: de-identified here in full, as without a copy
            data = deid.to_bytes(deid.deidentify(p.file, key, patient_id=str(int(person_id)))[0])
        else:
            data = finished[0]
    else:
        assert made is not None  # the writer de-identified it (``deid.deidentify``)
        data = deid.to_bytes(made)
    deid.write_bytes_atomically(data, _pending(target))
    mask = p.file.with_name(f"{p.file.stem}_mask.png")
    if (
        mask.exists()
    ):  # a phantom's ground-truth outline (no identifiers): the viewer shows it beside the image
        shutil.copyfile(mask, _pending(target.with_name(f"{target.stem}_mask.png")))
    return target, hashlib.sha256(data).hexdigest()


def _publish(target: Path) -> None:
    for final in (target, target.with_name(f"{target.stem}_mask.png")):
        if _pending(final).exists():
            os.replace(_pending(final), final)


def _discard(target: Path) -> None:
    for final in (target, target.with_name(f"{target.stem}_mask.png")):
        _pending(final).unlink(missing_ok=True)


def ingest_files(
    db_path: Path,
    paths: Iterable[Path],
    load: Callable[[str], LoadedModel],
    *,
    now: dt.datetime | None = None,
    images_dir: Path | None = None,
    actor: str = "system",
    source: str = "files",
    workers: int | None = 1,
) -> IngestReport:
    """Read, run the AI read, de-identify and store every file; bad files are reported, never stored half.

    ``images_dir``: where the de-identified copies go (default ``images_dir_for(db_path)``).
    ``actor`` and ``source`` (``files``, ``pacs``) go into the ``ingest`` audit event written in the
    same transaction as the rows: who, from where, how many stored and failed, and the sha256 of
    every stored original and its de-identified copy (never a name or a UID of the original).

    ``workers``: processes that read the files and run the AI read before the store is opened
    (``models.inference.batch.map_files``; None: one per core, as ``oncolens ingest`` does). The
    default reads here: the app calls this from a server process that should not fork.

    A file whose SOP Instance UID or series is already stored for another patient is refused with
    a message and changes nothing (a crafted file used to replace another patient's image and
    delete her rows); so is the second of two files of different patients sharing an instance UID.
    """
    db_path = Path(db_path).expanduser()
    # the store's key before the reads, which de-identify with it (``prepare_and_scan``); only for
    # a store that exists (opening a missing one fails below, and should leave no key behind)
    key = deid.load_or_create_key(deid.key_path_for_store(db_path)) if db_path.exists() else None
    with _spool(db_path if key is not None else None) as spool:
        return _ingest_files(
            db_path,
            [Path(p) for p in paths],  # failures name a file as it was given
            load,
            now=now,
            images_dir=images_dir,
            actor=actor,
            source=source,
            workers=workers,
            key=key,
            spool=spool,
        )


@contextlib.contextmanager
def _spool(db_path: Path | None) -> Iterator[Path | None]:
    """A private folder beside the store for the workers' de-identified copies (removed after the
    ingest, whatever happens): on the images' file system, and never a whole folder in memory.

    Its name carries this host and process id, so that the next ingest removes the folder of an
    ingest killed before it could (SIGKILL, a power cut): ``_remove_stale_spools``.
    """
    if db_path is None:
        yield None
        return
    _remove_stale_spools(db_path)
    with tempfile.TemporaryDirectory(
        prefix=f"{_spool_prefix(db_path)}{os.getpid()}-", dir=db_path.parent
    ) as d:
        yield Path(d)


def _spool_prefix(db_path: Path) -> str:
    """``.<store>_ingest-<host>+``: a "+" ends the host's name, since none is left in it, so that
    host "worker" never reads host "worker-12"'s folders as its own (review of 2026-12-04)."""
    host = "".join(c if c.isalnum() or c in ".-" else "_" for c in socket.gethostname())
    return f".{db_path.stem}_ingest-{host}+"


def _remove_stale_spools(db_path: Path) -> None:
    """Remove the spool folders beside ``db_path`` left by ingests of this host that no longer run.

    Why only this host's: a process id says nothing about another machine sharing the folder, whose
    ingest may still be writing there. A folder whose process is alive (or whose id was reused)
    stays; that errs on the side of an ingest still running.
    """
    prefix = _spool_prefix(db_path)
    for folder in db_path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = folder.name[len(prefix) :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _ingest_files(
    db_path: Path,
    paths: list[Path],
    load: Callable[[str], LoadedModel],
    *,
    now: dt.datetime | None,
    images_dir: Path | None,
    actor: str,
    source: str,
    workers: int | None,
    key: bytes | None,
    spool: Path | None,
) -> IngestReport:
    """``ingest_files`` with the store's key (None: not created yet) and the workers' spool."""
    report = IngestReport()
    prepared: list[_Prepared] = []
    paths = [Path(p) for p in paths]  # failures name a file as it was given
    lost: dict[str, list[Path]] = {}  # per volume series, its files whose reader crashed
    outcomes, series = _prepare_in_one_pass(paths, workers, load, lost, key=key, spool=spool)
    for outcome in outcomes:
        if isinstance(outcome, dict):
            report.failed.append(outcome)
        else:
            prepared.append(outcome)
    if not prepared:
        return report
    # the 3D reads, like the 2D ones, before the store is opened (the write lock stays short)
    reads = read_series({u: f for u, f in series.items() if u not in lost}) if series else []
    reads += [_incomplete(uid, series[uid], lost[uid]) for uid in series if uid in lost]
    filed: dict[str, tuple[int, str, str, dt.date]] = {}
    now = now or dt.datetime.now()
    images_dir = Path(images_dir) if images_dir is not None else images_dir_for(db_path)
    source_of: dict[Path, Path] = {}
    with store.open_store(db_path) as con:
        if key is None:
            key = deid.load_or_create_key(deid.key_path_for_store(db_path))
        keys = sorted({p.patient_key for p in prepared})
        found = con.execute(
            "SELECT k, person_id FROM (SELECT unnest(?::VARCHAR[]) AS k) q JOIN person "
            "ON person.mrn = q.k OR CAST(person.person_id AS VARCHAR) = q.k",
            [keys],
        ).fetchall()
        person_of = dict(found)
        staged: list[Path] = []
        try:
            with chained_transaction(con):
                sources_before = source_fingerprint(con)
                next_finding = store.one_row(
                    con.execute("SELECT coalesce(max(finding_id), 0) + 1 FROM ai_finding")
                )[0]
                next_meas = store.one_row(
                    con.execute("SELECT coalesce(max(measurement_id), 0) + 1 FROM measurement")
                )[0]
                # the owner checks' rows, loaded for the UIDs the files will have once
                # de-identified (remapped with the store's key): three queries, not three a file
                rows = PendingRows(con)
                remap = {
                    uid: deid.remap_uid(uid, key)
                    for p in prepared
                    for uid in (p.study_uid, p.series_uid, p.sop_uid)
                }
                rows.preload(
                    sops=[remap[p.sop_uid] for p in prepared],
                    series=[remap[p.series_uid] for p in prepared],
                    studies=[uid for p in prepared for uid in (p.study_uid, remap[p.study_uid])],
                )
                for p in prepared:
                    person_id = person_of.get(p.patient_key)
                    if person_id is None:
                        report.failed.append(
                            {
                                "file": str(p.file),
                                "error": "the patient in this file is not in the store (matched on MRN or id); "
                                "import the patient first",
                            }
                        )
                        continue
                    known = rows.study_owner(p.study_uid)
                    if known is not None and known != person_id:
                        report.failed.append(
                            {
                                "file": str(p.file),
                                "error": "this file's study belongs to another patient in the store; not stored",
                            }
                        )
                        continue
                    made, ds = p.deid, None
                    try:
                        if made is None:
                            ds, deid_report = deid.deidentify(
                                p.file, key, patient_id=str(int(person_id))
                            )
                        elif made.error is not None:
                            raise deid.DeidentificationError(made.error)
                        else:
                            assert made.report is not None  # set wherever there is no error
                            deid_report = dataclasses.replace(
                                made.report, patient_pseudonym=str(int(person_id))
                            )
                    except deid.DeidentificationError as exc:
                        report.failed.append(
                            {"file": str(p.file), "error": f"not de-identified, not stored: {exc}"}
                        )
                        continue
                    inst_owner = rows.instance_owner(deid_report.sop_instance_uid)
                    series_owner = rows.series_owner(deid_report.series_uid)
                    if (inst_owner is not None and inst_owner != person_id) or (
                        series_owner is not None and series_owner != person_id
                    ):
                        what = (
                            "SOP Instance UID" if inst_owner not in (None, person_id) else "series"
                        )
                        report.failed.append(
                            {
                                "file": str(p.file),
                                "error": f"this file's {what} is already stored for another patient; "
                                "not stored, nothing changed",
                            }
                        )
                        continue
                    study_key = p.study_uid if known is not None else deid_report.study_uid
                    owner = rows.study_owner(study_key)
                    if owner is not None and owner != person_id:
                        report.failed.append(
                            {
                                "file": str(p.file),
                                "error": "this file's study belongs to another patient in the store; not stored",
                            }
                        )
                        continue
                    try:
                        stored_file, copy_sha = _stage_deidentified(
                            made or ds, deid_report, p, person_id, images_dir, key
                        )
                    except (deid.DeidentificationError, UnsafePathError, OSError) as exc:
                        report.failed.append(
                            {"file": str(p.file), "error": f"not de-identified, not stored: {exc}"}
                        )
                        continue
                    staged.append(stored_file)
                    source_of[stored_file] = p.file
                    p = dataclasses.replace(
                        p,
                        file=stored_file,
                        study_uid=study_key,
                        series_uid=deid_report.series_uid,
                        sop_uid=deid_report.sop_instance_uid,
                    )
                    if owner is None:
                        rows.add_study(
                            (
                                p.study_uid,
                                person_id,
                                p.study_date,
                                p.modality,
                                p.study_description,
                                None,  # the accession number is an identifier: never stored (issue 24)
                            )
                        )
                    rows.replace_series(
                        (p.series_uid, p.study_uid, p.modality, p.body_part, p.series_description)
                    )
                    rows.replace_instance(
                        (p.sop_uid, p.series_uid, str(p.file), p.rows, p.columns, p.spacing_mm)
                    )
                    entry: dict = {
                        "file": str(source_of[stored_file]),
                        "stored_file": str(p.file),
                        "person_id": int(person_id),
                        "study_uid": p.study_uid,
                        "sop_instance_uid": p.sop_uid,
                        "ai": None,
                        "note": p.ai_note,
                        "deidentification": deid_report.as_dict(),
                        "sha256": p.sha256,
                        "stored_sha256": copy_sha,
                    }
                    if p.ai is not None:
                        rows.set_refusal(p.sop_uid, p.ai.model, None)
                    if p.ai is not None and p.ai.refused is not None:
                        ai, check = p.ai, p.ai.input_check
                        assert check is not None  # a refused read always carries its check
                        # an earlier read of this instance by this model is no longer what it says,
                        # nor is the lesion size it measured
                        rows.set_finding(p.sop_uid, ai.model, None)
                        rows.set_measurement(p.study_uid, TASKS[ai.model].measurement_concept, None)
                        rows.set_refusal(
                            p.sop_uid,
                            ai.model,
                            (
                                p.sop_uid,
                                person_id,
                                ai.model,
                                ai.model_version,
                                check.score,
                                check.threshold,
                                check.reason,
                                now,
                            ),
                        )
                        entry["refused"] = ai.refused
                        entry["input_check"] = check.to_json()
                    elif p.ai is not None:
                        ai = p.ai
                        diameter = (
                            ai.lesion.longest_diameter_mm if (ai.lesion and p.spacing_mm) else None
                        )
                        rows.set_finding(
                            p.sop_uid,
                            ai.model,
                            (
                                next_finding,
                                person_id,
                                p.sop_uid,
                                ai.model,
                                ai.model_version,
                                ai.label,
                                ai.confidence,
                                diameter,
                                now,
                                ai.weights_sha256,
                            ),
                        )
                        next_finding += 1
                        concept = TASKS[ai.model].measurement_concept
                        rows.set_measurement(p.study_uid, concept, None)
                        if diameter is not None:
                            rows.set_measurement(
                                p.study_uid,
                                concept,
                                (
                                    next_meas,
                                    person_id,
                                    p.study_date,
                                    concept,
                                    round(diameter, 2),
                                    p.study_uid,
                                    ai.model,
                                    ai.model_version,
                                    ai.weights_sha256,
                                ),
                            )
                            next_meas += 1
                        entry["ai"] = {
                            "model": ai.model,
                            "model_version": ai.model_version,
                            "label": ai.label,
                            "probability": round(ai.confidence, 4),
                            "longest_diameter_mm": diameter,
                        }
                        entry["input_check"] = (
                            None if ai.input_check is None else ai.input_check.to_json()
                        )
                    if p.ai is not None and p.ai.input_check is not None:
                        rows.replace_read_input(_read_input_row(p, person_id, now))
                    report.stored.append(entry)
                    filed[str(source_of[stored_file])] = (
                        int(person_id),
                        p.study_uid,
                        p.series_uid,
                        p.study_date,
                    )
                rows.flush()  # one statement per table (analytics.imaging.rows)
                if reads:
                    _store_volumes(con, reads, filed, key, now, report)
                touched = sorted({e["person_id"] for e in report.stored})
                if touched:  # new lesion sizes move the worklist's flags and risks (analytics.worklist.stored)
                    refresh_for_writer(con, db_path, touched, sources_before)
                append_event(
                    con,
                    actor=actor,
                    action="ingest",
                    details={
                        "source": source,
                        "stored": len(report.stored),
                        "failed": len(report.failed),
                        "volumes": len(report.volumes),
                        "patients": touched,
                        "files": [
                            {
                                "sha256": e["sha256"],
                                "stored_sha256": e["stored_sha256"],
                                "person_id": e["person_id"],
                            }
                            for e in report.stored
                        ],
                    },
                )
        except BaseException:
            for path in staged:  # no row points to them: leave no de-identified orphan behind
                _discard(path)
            raise
        for path in staged:
            _publish(path)
    return report
