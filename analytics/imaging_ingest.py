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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from analytics import store
from models.dicom import DicomReadError, read_dicom, read_header
from models.inference import AIRead, NoModelForImageError, model_for, read_image
from models.registry import LoadedModel, ModelUnavailableError
from models.tasks import TASKS, select_task

STORE_MODALITIES = {"MG", "MR", "CT", "US", "PT"}


@dataclass
class IngestReport:
    stored: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)


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
    study_description: str | None
    series_description: str | None
    accession: str | None
    rows: int
    columns: int
    spacing_mm: float | None
    ai: AIRead | None
    ai_note: str | None


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime(str(text or "").strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _prepare(path: Path, load: Callable[[str], LoadedModel]) -> _Prepared:
    image = read_dicom(path)
    header = read_header(path)
    missing = [k for k, v in (("PatientID", image.patient_id), ("StudyInstanceUID", image.study_uid),
                              ("SeriesInstanceUID", image.series_uid), ("SOPInstanceUID", image.sop_instance_uid))
               if not v]  # fmt: skip
    if missing:
        raise DicomReadError(f"cannot file this image: {', '.join(missing)} missing from the header")
    study_date = _date(image.study_date) or _date(getattr(header, "SeriesDate", None))
    if study_date is None:
        raise DicomReadError("cannot file this image: no valid StudyDate in the header")
    ai = note = None
    task, why = select_task(image.modality, image.body_part, str(getattr(header, "StudyDescription", "")))
    if task is None:
        note = why
    else:
        try:
            ai = read_image(model_for(image, {task.name: load(task.name)}, task.name), image)
        except (NoModelForImageError, ModelUnavailableError) as exc:
            note = str(exc)
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
        study_description=str(getattr(header, "StudyDescription", "") or "") or None,
        series_description=str(getattr(header, "SeriesDescription", "") or "") or None,
        accession=str(getattr(header, "AccessionNumber", "") or "") or None,
        rows=image.rows,
        columns=image.columns,
        spacing_mm=float(spacing[0]) if spacing else None,
        ai=ai,
        ai_note=note,
    )


def ingest_files(
    db_path: Path, paths: Iterable[Path], load: Callable[[str], LoadedModel], *, now: dt.datetime | None = None
) -> IngestReport:
    """Read, run the AI read, and store every file; bad files are reported, never stored half."""
    report = IngestReport()
    prepared: list[_Prepared] = []
    for path in paths:
        try:
            prepared.append(_prepare(Path(path), load))
        except FileNotFoundError:
            report.failed.append({"file": str(path), "error": "file not found"})
        except (DicomReadError, OSError) as exc:
            report.failed.append({"file": str(path), "error": str(exc)})
    if not prepared:
        return report
    now = now or dt.datetime.now()
    with store.open_store(db_path) as con:
        keys = sorted({p.patient_key for p in prepared})
        found = con.execute(
            "SELECT k, person_id FROM (SELECT unnest(?::VARCHAR[]) AS k) q JOIN person "
            "ON person.mrn = q.k OR CAST(person.person_id AS VARCHAR) = q.k",
            [keys],
        ).fetchall()
        person_of = dict(found)
        con.execute("BEGIN TRANSACTION")
        try:
            next_finding = con.execute("SELECT coalesce(max(finding_id), 0) + 1 FROM ai_finding").fetchone()[0]
            next_meas = con.execute("SELECT coalesce(max(measurement_id), 0) + 1 FROM measurement").fetchone()[0]
            for p in prepared:
                person_id = person_of.get(p.patient_key)
                if person_id is None:
                    report.failed.append({
                        "file": str(p.file),
                        "error": f"patient '{p.patient_key}' is not in the store (matched on MRN or id); "
                        "import the patient first",
                    })
                    continue
                owner = con.execute(
                    "SELECT person_id FROM imaging_study WHERE study_uid = ?", [p.study_uid]
                ).fetchone()
                if owner and owner[0] != person_id:
                    report.failed.append({
                        "file": str(p.file),
                        "error": f"study {p.study_uid} belongs to another patient in the store; not stored",
                    })
                    continue
                if not owner:
                    con.execute(
                        "INSERT INTO imaging_study VALUES (?, ?, ?, ?, ?, ?)",
                        [p.study_uid, person_id, p.study_date, p.modality, p.study_description, p.accession],
                    )
                con.execute("DELETE FROM imaging_series WHERE series_uid = ?", [p.series_uid])
                con.execute(
                    "INSERT INTO imaging_series VALUES (?, ?, ?, ?, ?)",
                    [p.series_uid, p.study_uid, p.modality, p.body_part, p.series_description],
                )
                con.execute("DELETE FROM imaging_instance WHERE sop_instance_uid = ?", [p.sop_uid])
                con.execute(
                    "INSERT INTO imaging_instance VALUES (?, ?, ?, ?, ?, ?)",
                    [p.sop_uid, p.series_uid, str(p.file), p.rows, p.columns, p.spacing_mm],
                )
                entry: dict = {"file": str(p.file), "person_id": int(person_id), "study_uid": p.study_uid,
                               "sop_instance_uid": p.sop_uid, "ai": None, "note": p.ai_note}
                if p.ai is not None:
                    ai = p.ai
                    con.execute(
                        "DELETE FROM ai_finding WHERE sop_instance_uid = ? AND model_name = ?",
                        [p.sop_uid, ai.model],
                    )
                    diameter = ai.lesion.longest_diameter_mm if (ai.lesion and p.spacing_mm) else None
                    con.execute(
                        "INSERT INTO ai_finding VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [next_finding, person_id, p.sop_uid, ai.model, ai.model_version, ai.label,
                         ai.confidence, diameter, now],
                    )
                    next_finding += 1
                    concept = TASKS[ai.model].measurement_concept
                    con.execute(
                        "DELETE FROM measurement WHERE study_uid = ? AND source = 'ai' AND concept = ?",
                        [p.study_uid, concept],
                    )
                    if diameter is not None:
                        con.execute(
                            "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, "
                            "value, unit, source, study_uid) VALUES (?, ?, ?, ?, ?, 'mm', 'ai', ?)",
                            [next_meas, person_id, p.study_date, concept, round(diameter, 2), p.study_uid],
                        )
                        next_meas += 1
                    entry["ai"] = {"model": ai.model, "model_version": ai.model_version, "label": ai.label,
                                   "probability": round(ai.confidence, 4), "longest_diameter_mm": diameter}
                report.stored.append(entry)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return report
