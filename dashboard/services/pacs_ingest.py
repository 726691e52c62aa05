"""Pull studies from a PACS into the store, and (optionally) send the AI read back as DICOM.

One code path for ``oncolens ingest --dicomweb`` and the Imaging page's PACS
browser. It lives in ``dashboard/`` because it joins the two libraries
(``models.pacs`` retrieves, ``analytics.imaging.ingest`` files), which may not
import each other.

Why through a temporary folder: ``ingest_files`` already reads, runs the AI
read, matches the patient, de-identifies (``models.deid.deidentify``) and files
local files in one short transaction; the PACS's instances are written to a
private temporary folder (mode 0700, removed when the call ends, also on
error), so exactly that code runs and only de-identified copies stay.

Failures are per instance: a study that does not exist, an instance the PACS
sends broken, an image of an unknown patient become error entries and the
other instances are still filed. Wrong credentials or an unreachable PACS stop
the call before anything is written (``models.pacs.check_connection``).

``send_results``: for each filed image with an AI read, a SEG and a TID 1500 SR
(``models.dicom.results``) are built from the instance *as the PACS sent it*
and stored back with STOW-RS into the same study. Each sending is one audit
event (``ai_results_sent``), since it is data leaving OncoLens. A series read in 3D
sends one multi-frame SEG (a segment per lesion) and one volumetric TID 1500 SR
(``models.volumes.results``), built from the series' original files
(``send_volume_results``, which ``oncolens predict --store-to-pacs`` uses too).

The ethics board's sign-off gates both (docs/governance.md): where the admin requires approval and
the read's model version is not approved, nothing is sent (``send_error`` says why) and the
report's entry keeps no label or measurement (``lifecycle.signed_off_entry``), as
``oncolens predict --store-to-pacs`` and the pages do.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from analytics.governance import audit
from analytics.imaging.ingest import IngestReport, ingest_files
from dashboard.services import lifecycle
from models import pacs
from models.dicom.reader import DicomReadError, read_dicom
from models.dicom.results import build_results
from models.inference.read import NoModelForImageError, model_for, read_image
from models.inference.registry import ModelUnavailableError
from models.volumes.measure import SeriesRead
from models.volumes.results import results_for_series


class PacsIngestError(Exception):
    """The pull could not start (no study given, nothing found); a plain message."""


@dataclass
class PacsIngestReport:
    stored: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)  # series read in 3D (and what was sent)


def send_volume_results(
    client,
    series: SeriesRead,
    db_path: Path | None,
    *,
    pacs_url: str,
    actor: str,
    role: str | None = None,
    subject: str | None = None,
) -> dict:
    """STOW the SEG and SR of one series' 3D read; one ``ai_results_sent`` audit event in
    ``db_path`` (when given) after the PACS accepted them. Raises ``ValueError`` (no read, or a
    refused one) and ``pacs.PacsError``."""
    objects = results_for_series(series)
    answer = pacs.store_datasets(client, objects.datasets)
    if answer["failed"]:
        raise pacs.PacsError(f"the PACS refused {len(answer['failed'])} of the result objects")
    read = series.read
    assert read is not None  # results_for_series refused a series without one
    sent = {
        "segmentation_uid": None
        if objects.segmentation is None
        else str(objects.segmentation.SOPInstanceUID),
        "report_uid": str(objects.report.SOPInstanceUID),
        "study_uid": str(objects.report.StudyInstanceUID),
        "lesions": len(read.lesions),
    }
    if db_path is not None:
        audit.record_event(
            db_path,
            actor=actor,
            role=role,
            action="ai_results_sent",
            subject=subject,
            model_name=read.model,
            model_version=read.model_version,
            details={"pacs": pacs_url, "kind": "volume", **sent},
        )
    return sent


def _send(client, original: Path, entry: dict, load: Callable) -> dict:
    """Build and STOW the SEG and SR of one filed image; returns what the PACS stored."""
    image = read_dicom(original)
    # the model ingest chose for this file, asked for by name: the same rule checks it still covers it
    ai = read_image(model_for(image, load, entry["ai"]["model"]), image)
    objects = build_results(pydicom.dcmread(original), ai)
    datasets = [d for d in (objects.segmentation, objects.report) if d is not None]
    answer = pacs.store_datasets(client, datasets)
    if answer["failed"]:
        raise pacs.PacsError(f"the PACS refused {len(answer['failed'])} of the result objects")
    return {
        "segmentation_uid": None
        if objects.segmentation is None
        else str(objects.segmentation.SOPInstanceUID),
        "report_uid": str(objects.report.SOPInstanceUID),
        "study_uid": str(objects.report.StudyInstanceUID),
    }


def ingest_from_pacs(
    db_path: Path,
    config: pacs.PacsConfig,
    load: Callable,
    *,
    study_uids: Iterable[str] = (),
    filters: dict | None = None,
    send_results: bool = False,
    actor: str = "oncolens",
    role: str | None = None,
    now: dt.datetime | None = None,
) -> PacsIngestReport:
    """Retrieve the given studies (or those matching ``filters``, see ``models.pacs.search_studies``),
    file them like ``oncolens ingest`` does, and optionally send the results back.

    At least one study UID or one filter is required: pulling a whole hospital archive by accident
    is not something a default should do.
    """
    uids = [u.strip() for u in study_uids if u and u.strip()]
    filters = {k: v for k, v in (filters or {}).items() if v}
    if not uids and not filters:
        raise PacsIngestError(
            "give --study UID or at least one search filter (date, modality, accession, "
            "patient id); OncoLens does not pull a whole archive"
        )
    client = pacs.connect(config)
    pacs.check_connection(client)
    if not uids:
        uids = [
            s["StudyInstanceUID"]
            for s in pacs.search_studies(client, **filters)
            if s["StudyInstanceUID"]
        ]
        if not uids:
            raise PacsIngestError("no study on the PACS matches these filters")
    report = PacsIngestReport(studies=uids)
    with tempfile.TemporaryDirectory(prefix="oncolens-pacs-") as tmp:  # mkdtemp: mode 0700
        files: list[Path] = []
        origin: dict[str, dict] = {}
        for study_uid in uids:
            for item in pacs.retrieve_study(client, study_uid):
                where = {
                    "study_uid": item.study_uid,
                    "series_uid": item.series_uid,
                    "sop_instance_uid": item.sop_uid,
                }
                if item.error is not None:
                    report.failed.append({"pacs": where, "error": item.error})
                    continue
                path = Path(tmp) / f"{len(files):06d}.dcm"
                path.write_bytes(item.data)
                files.append(path)
                origin[str(path.resolve())] = where
        filed = (
            ingest_files(db_path, files, load, now=now, actor=actor, source="pacs")
            if files
            else IngestReport()
        )
        for entry in filed.failed:
            report.failed.append(
                {
                    "pacs": origin.get(str(Path(entry["file"]).resolve()), {}),
                    "error": entry["error"],
                }
            )
        statuses: dict[tuple, dict] = {}  # one sign-off lookup per model version
        for entry in filed.stored:
            original = Path(entry["file"])
            entry = {**entry, "pacs": origin.get(str(original.resolve()), {})}
            entry.pop("file", None)  # a temporary path, gone when this call returns
            entry = lifecycle.signed_off_entry(db_path, entry, statuses)
            if send_results and entry.get("ai") and "withheld" in entry:
                entry["send_error"] = f"not sent: {entry['withheld']}"
            elif send_results and entry.get("ai"):
                try:
                    entry["sent"] = _send(client, original, entry, load)
                    audit.record_event(
                        db_path,
                        actor=actor,
                        role=role,
                        action="ai_results_sent",
                        subject=str(entry["person_id"]),
                        model_name=entry["ai"]["model"],
                        model_version=entry["ai"]["model_version"],
                        details={"pacs": config.url, **entry["sent"]},
                    )
                except (
                    pacs.PacsError,
                    DicomReadError,
                    NoModelForImageError,
                    ModelUnavailableError,
                    ValueError,
                ) as exc:
                    entry["send_error"] = str(exc)
            report.stored.append(entry)
        for volume_entry, series in zip(filed.volumes_read(), filed.series_reads, strict=True):
            volume_entry = lifecycle.signed_off_entry(db_path, dict(volume_entry), statuses)
            if send_results and "withheld" in volume_entry:
                volume_entry["send_error"] = f"not sent: {volume_entry['withheld']}"
            elif send_results and series.read is not None and series.read.refused is None:
                try:
                    volume_entry["sent"] = send_volume_results(
                        client,
                        series,
                        db_path,
                        pacs_url=config.url,
                        actor=actor,
                        role=role,
                        subject=str(volume_entry["person_id"]),
                    )
                except (pacs.PacsError, ValueError, OSError) as exc:
                    volume_entry["send_error"] = str(exc)
            report.volumes.append(volume_entry)
        report.volumes += [v for v in filed.volumes if "note" in v]
    return report
