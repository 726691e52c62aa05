"""DICOM studies for the demo clinic: phantoms whose lesion is the size the store says it was.

Why: the Patient and Imaging pages show a patient's images beside the lesion
series in ``measurement``; a demo is only convincing (and only testable) when the
mass in each image measures what the radiology row for that study says. Each
image is drawn by ``models.training.synthetic`` with ``lesion_diameter_mm`` set to the
study's ``lesion_longest_diameter`` and written by ``models.training.synthetic_dicom``
under the study's own StudyInstanceUID, accession number, date and patient.

Choices, and why:

- Mammograms for the breast. The demo clinic is a breast-cancer clinic:
  ``cohort.SITES`` are the three treating locations, not tumour sites. Its
  mammograms (MG: the diagnostic one, showing the primary at its recorded size,
  and yearly surveillance ones after surgery, with no lesion) are the studies
  drawn below; restaging CT and any other modality in the store are left alone,
  except the brain MR studies this writer adds itself (next point).
- Brain MR studies where breast cancer goes. Breast cancer spreads to the brain,
  so a few patients (``brain_patients``, 6 by default) get one or two "MR brain
  with contrast" studies: new ``imaging_study`` rows (MR), one series each
  (body part BRAIN) and one T1 post-contrast slice (``phantoms.brain_mri``).
  Patients are taken, in a seeded shuffle, first among those imaged above who
  have stage IV disease or a recurrence, then other stage IV / recurred
  patients; nobody else (a brain MR is ordered where a brain metastasis is
  plausible, issue 17). The first study restages at recurrence (shortly after
  the recurrence date) or stages stage IV disease (shortly after diagnosis).
  Every date lies in her observation period,
  after diagnosis. About half of the brain patients (rounded up) have a
  metastasis, drawn log-uniformly from ``BRAIN_MET_RANGE_MM``, and only ones
  with stage IV or a recurrence (a brain metastasis *is* distant disease); a
  second study (follow-up, 60-120 days later, when her observation period
  allows) shows the same head with the metastasis smaller after treatment, or
  still no metastasis.
- The brain read goes in ``measurement`` as concept ``BRAIN_CONCEPT``
  ('brain_lesion_longest_diameter', mm, source 'radiology', ``study_uid`` set),
  never as 'lesion_longest_diameter', which is the primary breast tumour series
  that RECIST response and the worklist are computed from. Its value is the
  max Feret diameter of the drawn mask, to 0.1 mm (the radiologist measured this
  very image); a study without metastasis gets a row of value 0 (a negative
  read is a result, as a 0 mm breast lesion is a complete response) so every
  brain study has its read, and "not read" stays distinguishable from "no
  metastasis".
- The brain studies are this writer's own: their UIDs (``brain_study_uid``,
  from the seed and the person) are kept in ``clinic_metadata`` under
  ``BRAIN_STUDIES_KEY``. A re-run deletes the previous run's brain studies with
  their series, instances and measurements (a study it writes again keeps only
  its non-radiology measurements, e.g. an AI read of the same pixels) before
  adding this run's, in the same transaction as the instance rows.
- Few patients, few studies. A patient has about a dozen follow-up studies and
  the clinic thousands of patients; writing them all would take minutes and
  hundreds of megabytes for images nobody opens. ``patients`` (24 by default)
  are drawn with a seeded shuffle, taken in turn from each site so subgroup
  views have images too. Of each patient's studies we write the baseline and
  the three most recent (all of them when there are four or fewer): RECIST
  response is judged against the baseline and the current size, so these are
  the images an oncologist compares.
- One image per study: a craniocaudal view of the diagnosed side
  (``condition_occurrence.laterality``), label 'malignant' (these are cancer
  patients), 'normal' when the lesion measures 0 mm (a surveillance mammogram
  after surgery, or a complete response).
  Each patient's studies share one phantom seed, so the breast is the same
  across visits and only the mass changes.
- Sizes that fit. A phantom reproduces a diameter to about a pixel (0.8 mm),
  cannot draw a mass under three pixels, and cannot draw one wider than about
  half the breast. Patients whose chosen studies need a lesion under
  ``MIN_DRAWABLE_MM`` (but above 0) or over ``MAX_DRAWABLE_MM``, or whose
  phantom still misses the size after ``MAX_ATTEMPTS`` breasts, are passed over
  for the next candidate; every written mask is within ``_tolerance_mm`` of its
  measurement. The measurement is the study's own row (``study_uid``), else
  the nearest non-AI one within ``MAX_DATE_GAP_DAYS``; AI rows are never used,
  since they may have been read from these very images.
- Stable UIDs. The series is the study's existing one (the demo writes one
  per study), else one derived from the study UID; the SOP Instance UID is a
  name-based UUID of the study UID (PS3.5 B.2). Re-running replaces the same
  rows and files instead of adding copies.
- ``dicom_dir`` belongs to this writer. Its manifest
  (``.oncolens-demo-images.json``) lists the files the last run wrote; files
  listed there but not written again (after ``oncolens demo --force`` with
  another seed, or fewer patients) are deleted with their ``imaging_instance``
  rows, so a later ``oncolens ingest`` of the folder never attaches a stale
  image to the patient who now has that MRN. Files not in the manifest are
  never touched.

Files (both modalities): ``dicom_dir/<MRN>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``
with the lesion mask beside it as ``<SOPInstanceUID>_mask.png`` (all zero
without a lesion). The store is read
through one short read-only connection, images are drawn and written with no
connection open, and the rows go in in one short transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analytics import store
from models.training.synthetic import Phantom, brain_mri, mammogram
from models.training.synthetic_dicom import mask_path_for, write_phantom_dicom
from sample_data.demo import DemoError

DEFAULT_PATIENTS = 24
MAX_STUDIES_PER_PATIENT = 4  # the baseline and the three most recent
IMAGE_SIZE = (256, 256)
MG_SPACING_MM = 0.8
MIN_DRAWABLE_MM = 1.5  # a mass is at least 3 pixels (2.4 mm); 1.5 is within 1 mm of it
MAX_DRAWABLE_MM = 110.0  # wider masses rarely fit the phantom breast
MAX_ATTEMPTS = 12  # breasts tried per patient before passing over her
MAX_DATE_GAP_DAYS = 14
MANIFEST_NAME = ".oncolens-demo-images.json"
DEFAULT_BRAIN_PATIENTS = 6
MR_SPACING_MM = 0.9
BRAIN_CONCEPT = "brain_lesion_longest_diameter"
BRAIN_MET_RANGE_MM = (8.0, 30.0)  # first-seen metastasis, log-uniform
BRAIN_FOLLOW_UP_SHRINK = (0.45, 0.85)  # follow-up size / first size, after treatment
BRAIN_MIN_MM = 5.0  # a followed-up metastasis is drawn at least this large
BRAIN_STUDIES_KEY = (
    "demo_imaging_brain_studies"  # clinic_metadata: JSON list of this writer's MR study UIDs
)
BRAIN_SERIES_DESCRIPTION = (
    "T1 SE post-contrast axial"  # as models.training.synthetic_dicom writes it
)
# name-based UUIDs for the demo's image UIDs (PS3.5 B.2: 2.25.<UUID as integer>)
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://oncolens.invalid/demo-imaging")
_SHUFFLE_SALT = 0x494D41  # separates the patient shuffle from the phantom seeds
_BRAIN_SALT = 0x4D5242  # separates the brain patients, dates, sizes and heads from the rest


class DemoImagingError(DemoError):
    """The demo images could not be written; the message says why."""


@dataclass(frozen=True)
class DemoImage:
    person_id: int
    patient_id: str  # the MRN, as in the file's PatientID
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    study_date: dt.date
    measured_mm: float  # the study's lesion_longest_diameter (MG) / BRAIN_CONCEPT (MR)
    drawn_mm: float  # max Feret diameter of the written mask
    path: Path
    modality: str = "MG"  # 'MG' (mammogram) or 'MR' (brain slice)
    body_part: str = "BREAST"  # 'BREAST' or 'BRAIN'


@dataclass(frozen=True)
class ImagingSummary:
    dicom_dir: Path
    seed: int
    person_ids: tuple[int, ...]  # patients with mammograms (``patients`` asks for this many)
    images: tuple[DemoImage, ...]  # mammograms first, then brain MR slices
    passed_over: int  # candidates whose lesions could not be drawn at their size
    removed_files: int  # files of an earlier run that this run did not write again
    seconds: float
    brain_person_ids: tuple[int, ...] = ()  # patients with brain MR studies (may include others)

    @property
    def patients(self) -> int:
        return len(self.person_ids)

    @property
    def all_person_ids(self) -> tuple[int, ...]:
        """Every patient with a demo image: the mammography patients, then brain-only ones."""
        return tuple(dict.fromkeys((*self.person_ids, *self.brain_person_ids)))

    @property
    def brain_images(self) -> tuple[DemoImage, ...]:
        return tuple(im for im in self.images if im.modality == "MR")


@dataclass(frozen=True)
class _Study:
    study_uid: str
    series_uid: str | None
    study_date: dt.date
    description: str
    accession: str
    lesion_mm: float


@dataclass(frozen=True)
class _Patient:
    person_id: int
    mrn: str
    name: str
    birth_date: dt.date
    sex: str
    laterality: str
    studies: tuple[_Study, ...]


def _tolerance_mm(measured_mm: float) -> float:
    """How far a drawn mask may be from its measurement: 1 mm, or 5 % of a large lesion."""
    return max(1.0, 0.05 * measured_mm)


def demo_uid(*parts: object) -> str:
    """A deterministic UUID-derived UID (PS3.5 B.2) for the demo's series and instances."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '/'.join(map(str, parts))).int}"


def sop_uid_for(study_uid: str) -> str:
    return demo_uid("instance", study_uid, 1)


def series_uid_for(study_uid: str) -> str:
    return demo_uid("series", study_uid, 1)


def brain_study_uid(seed: int, person_id: int, k: int) -> str:
    """The StudyInstanceUID of a patient's ``k``-th (0, 1) demo brain MR study under ``seed``."""
    return demo_uid("brain-study", int(seed), int(person_id), int(k))


def write_demo_images(
    db_path: str | Path,
    dicom_dir: str | Path,
    *,
    patients: int = DEFAULT_PATIENTS,
    seed: int | None = None,
    brain_patients: int | None = None,
    progress: Callable[[str], None] | None = None,
    track: Callable[..., Iterable] | None = None,
) -> ImagingSummary:
    """Write mammograms for ``patients`` demo patients and brain MR studies for ``brain_patients``.

    ``seed`` (default: the clinic's own seed from ``clinic_metadata``) picks the
    patients and draws the phantoms; the same store and seed give the same files.
    ``brain_patients`` (default ``DEFAULT_BRAIN_PATIENTS``, or 0 when
    ``patients`` is 0) get one or two brain MR studies each, added to the store.
    Fewer eligible patients than asked for write what there is; ``patients=0``
    (with ``brain_patients`` left out) writes nothing and removes an earlier
    run's images (and their rows, and the brain studies it added).
    Returns what was written; raises ``DemoImagingError`` for unusable arguments
    and ``analytics.store.StoreError`` for a store that cannot be opened.
    ``track(iterable, description, total)`` may wrap the loop over patients to
    report progress (the CLI passes a progress bar).
    """
    t0 = time.perf_counter()
    for name, value in (("patients", patients), ("brain_patients", brain_patients)):
        if value is None and name == "brain_patients":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise DemoImagingError(
                f"the number of {'brain-imaged' if name == 'brain_patients' else 'imaged'} "
                f"patients must be a whole number >= 0 (got {value!r})"
            )
    if brain_patients is None:
        brain_patients = DEFAULT_BRAIN_PATIENTS if patients > 0 else 0
    say = progress or (lambda _msg: None)
    db_path = Path(db_path).expanduser().absolute()
    dicom_dir = Path(dicom_dir).expanduser().absolute()
    if dicom_dir.exists() and not dicom_dir.is_dir():
        raise DemoImagingError(f"{dicom_dir} is a file; give a folder for the demo DICOM studies")

    with store.open_store(db_path, read_only=True) as con:
        if seed is None:
            row = con.execute("SELECT value FROM clinic_metadata WHERE key = 'seed'").fetchall()
            seed = int(row[0][0]) if row and str(row[0][0]).lstrip("-").isdigit() else 0
        candidates = _candidates(con, int(seed))
        chosen, passed_over = _choose(con, candidates, int(patients), int(seed))
        brain, brain_passed = _choose_brain(
            con, [p.person_id for p, _ in chosen], int(brain_patients), int(seed)
        )
        owned_before = _owned_brain_studies(con)

    try:
        dicom_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoImagingError(f"cannot create folder {dicom_dir}: {exc.strerror or exc}") from exc
    if not os.access(dicom_dir, os.W_OK | os.X_OK):
        raise DemoImagingError(f"cannot write to folder {dicom_dir} (permission denied)")

    manifest = dicom_dir / MANIFEST_NAME
    previous = _read_manifest(manifest, dicom_dir)
    planned = [_relpath(p.mrn, s) for p, _ in (*chosen, *brain) for s in p.studies]
    # every file this run may write is listed before it is written, so an interrupted
    # run is cleaned up by the next one
    _write_manifest(
        manifest, sorted(previous | {f for rel in planned for f in (rel, _mask_rel(rel))})
    )

    say(
        f"writing {len(planned)} demo DICOM images of {len(chosen)} patients (mammograms) and "
        f"{len(brain)} patients (brain MR) to {dicom_dir}"
    )
    images: list[DemoImage] = []
    series_rows: dict[str, tuple[str, str, str, str]] = {}
    imaged = (*chosen, *brain)
    for patient, phantoms in track(imaged, "writing demo images", len(imaged)) if track else imaged:
        for study, phantom in zip(patient.studies, phantoms, strict=True):
            series_uid = study.series_uid or series_uid_for(study.study_uid)
            mr = phantom.modality == "MR"
            if study.series_uid is None:
                series_rows[series_uid] = (
                    study.study_uid,
                    phantom.modality,
                    "BRAIN" if mr else "BREAST",
                    BRAIN_SERIES_DESCRIPTION if mr else f"{phantom.laterality} CC",
                )
            sop_uid = sop_uid_for(study.study_uid)
            path = dicom_dir / _relpath(patient.mrn, study)
            write_phantom_dicom(
                phantom,
                path,
                patient_id=patient.mrn,
                patient_name=patient.name,
                study_uid=study.study_uid,
                series_uid=series_uid,
                sop_instance_uid=sop_uid,
                study_date=study.study_date.strftime("%Y%m%d"),
                accession_number=study.accession,
                study_description=study.description,
                birth_date=patient.birth_date.strftime("%Y%m%d"),
                sex=patient.sex,
            )
            images.append(
                DemoImage(
                    patient.person_id,
                    patient.mrn,
                    study.study_uid,
                    series_uid,
                    sop_uid,
                    study.study_date,
                    study.lesion_mm,
                    float(phantom.lesion_diameter_mm or 0.0),
                    path,
                    phantom.modality,
                    "BRAIN" if mr else "BREAST",
                )
            )

    written = {f for rel in planned for f in (rel, _mask_rel(rel))}
    stale = sorted(previous - written)
    _record(
        db_path,
        images,
        series_rows,
        [str(dicom_dir / rel) for rel in stale],
        brain=brain,
        owned_before=owned_before,
    )
    removed = _remove(dicom_dir, stale)
    _write_manifest(manifest, sorted(written))
    seconds = time.perf_counter() - t0
    say(f"wrote {len(images)} images in {seconds:.1f} s")
    return ImagingSummary(
        dicom_dir,
        int(seed),
        tuple(p.person_id for p, _ in chosen),
        tuple(images),
        passed_over + brain_passed,
        removed,
        seconds,
        brain_person_ids=tuple(p.person_id for p, _ in brain),
    )


# --------------------------------------------------------------------------- choosing patients


def _candidates(con, seed: int) -> np.ndarray:
    """Person ids with a mammogram, seeded shuffle, taken in turn from each site."""
    rows = con.execute(
        "SELECT person_id, site FROM person p WHERE EXISTS ("
        " SELECT 1 FROM imaging_study s WHERE s.person_id = p.person_id AND s.modality = 'MG')"
        " ORDER BY person_id"
    ).fetchnumpy()
    ids = np.asarray(rows["person_id"], dtype=np.int64)
    if ids.size == 0:
        return ids
    order = np.random.default_rng([seed, _SHUFFLE_SALT]).permutation(ids.size)
    ids = ids[order]
    _, site = np.unique(
        np.asarray(rows["site"], dtype=object)[order].astype(str), return_inverse=True
    )
    # rank of each patient within her site, in shuffled order: round robin = sort by (rank, site)
    rank = np.empty(ids.size, dtype=np.int64)
    for s in np.unique(site):
        members = np.flatnonzero(site == s)
        rank[members] = np.arange(members.size)
    return ids[np.lexsort((site, rank))]


def _choose(
    con, candidates: np.ndarray, n: int, seed: int
) -> tuple[list[tuple[_Patient, list[Phantom]]], int]:
    """The first ``n`` candidates whose chosen studies can be drawn at their measured size."""
    chosen: list[tuple[_Patient, list[Phantom]]] = []
    passed_over = 0
    batch = max(4 * n, 64)
    for start in range(0, candidates.size if n else 0, batch):
        for patient in _load(con, candidates[start : start + batch]):
            phantoms = _draw(patient, seed) if _drawable(patient) else None
            if phantoms is None:
                passed_over += 1
                continue
            chosen.append((patient, phantoms))
            if len(chosen) == n:
                return chosen, passed_over
    return chosen, passed_over


def _drawable(patient: _Patient) -> bool:
    return bool(patient.studies) and all(
        s.lesion_mm == 0 or MIN_DRAWABLE_MM <= s.lesion_mm <= MAX_DRAWABLE_MM
        for s in patient.studies
    )


def _load(con, person_ids: np.ndarray) -> list[_Patient]:
    """Patients (in the order given) with their chosen studies and each study's lesion size."""
    ids = [int(v) for v in person_ids]
    people = (
        con.execute(
            """SELECT p.person_id, p.mrn, p.given_name, p.family_name, p.birth_date, p.sex,
                  (SELECT c.laterality FROM condition_occurrence c WHERE c.person_id = p.person_id
                   ORDER BY c.diagnosis_date, c.condition_id LIMIT 1) AS laterality
           FROM person p WHERE p.person_id IN (SELECT unnest(?::BIGINT[]))""",
            [ids],
        )
        .df()
        .set_index("person_id")
    )
    studies = con.execute(
        """SELECT s.person_id, s.study_uid, s.study_date, s.description, s.accession_number,
                  (SELECT min(se.series_uid) FROM imaging_series se
                   WHERE se.study_uid = s.study_uid AND se.modality = s.modality) AS series_uid
           FROM imaging_study s
           WHERE s.modality = 'MG' AND s.person_id IN (SELECT unnest(?::BIGINT[]))
           ORDER BY s.person_id, s.study_date, s.study_uid""",
        [ids],
    ).df()
    meas = con.execute(
        """SELECT person_id, measurement_date, value, study_uid, measurement_id FROM measurement
           WHERE concept = 'lesion_longest_diameter' AND unit = 'mm' AND source <> 'ai'
             AND person_id IN (SELECT unnest(?::BIGINT[]))""",
        [ids],
    ).df()
    studies["lesion_mm"] = _lesion_at(studies, meas)
    studies["lesion_mm"] = studies["lesion_mm"].fillna(_unmeasured_lesion(con, studies))
    studies = studies[studies["lesion_mm"].notna()]
    by_person = dict(tuple(studies.groupby("person_id", sort=False)))

    out = []
    for pid in ids:
        if pid not in people.index or pid not in by_person:
            continue
        person = people.loc[pid]
        rows = by_person[pid]
        if len(rows) > MAX_STUDIES_PER_PATIENT:
            rows = pd.concat([rows.iloc[:1], rows.iloc[-(MAX_STUDIES_PER_PATIENT - 1) :]])
        out.append(
            _Patient(
                person_id=pid,
                mrn=str(person["mrn"]),
                name=f"{person['family_name']}^{person['given_name']}",
                birth_date=pd.Timestamp(person["birth_date"]).date(),
                sex=str(person["sex"]) if person["sex"] in ("F", "M") else "",
                laterality="R" if person["laterality"] == "right" else "L",
                studies=tuple(
                    _Study(
                        r.study_uid,
                        None if pd.isna(r.series_uid) else str(r.series_uid),
                        pd.Timestamp(r.study_date).date(),
                        str(r.description or "")[:64],
                        str(r.accession_number or "")[:16],
                        float(r.lesion_mm),
                    )
                    for r in rows.itertuples(index=False)
                ),
            )
        )
    return out


def _unmeasured_lesion(con, studies: pd.DataFrame) -> pd.Series:
    """A mammogram without a target-lesion read: the primary at diagnosis, or no lesion in surveillance.

    Early disease has no target lesion to follow (docs/demo-data.md): the diagnostic mammogram shows
    the primary at its recorded size (``condition_occurrence.tumour_size_mm``), a surveillance
    mammogram after surgery shows none (0 mm, drawn as a normal breast). Any other unread study
    stays unread (NaN) and is not drawn.
    """
    if studies.empty:
        return pd.Series(np.nan, index=studies.index, dtype=float)
    primary = con.execute(
        """SELECT person_id, min(diagnosis_date) AS diagnosis_date, arg_min(tumour_size_mm, diagnosis_date) AS mm
           FROM condition_occurrence WHERE person_id IN (SELECT unnest(?::BIGINT[])) GROUP BY person_id""",
        [[int(v) for v in studies["person_id"].unique()]],
    ).df()
    merged = studies[["person_id", "study_date", "description"]].merge(
        primary, on="person_id", how="left"
    )
    merged.index = studies.index
    at_diagnosis = pd.to_datetime(merged["study_date"]) == pd.to_datetime(merged["diagnosis_date"])
    surveillance = merged["description"].fillna("").str.contains("surveillance", case=False)
    value = pd.Series(np.nan, index=studies.index, dtype=float)
    value[surveillance] = 0.0
    value[at_diagnosis] = merged.loc[at_diagnosis, "mm"].astype(float)
    return value


def _lesion_at(studies: pd.DataFrame, meas: pd.DataFrame) -> pd.Series:
    """Each study's lesion size: its own measurement row, else the nearest within MAX_DATE_GAP_DAYS."""
    if studies.empty or meas.empty:
        return pd.Series(np.nan, index=studies.index, dtype=float)
    meas = meas.sort_values("measurement_id")
    own = meas.dropna(subset=["study_uid"]).drop_duplicates("study_uid", keep="last")
    value = studies["study_uid"].map(own.set_index("study_uid")["value"])
    missing = value.isna()
    if missing.any():
        left = studies.loc[missing, ["person_id", "study_date"]].reset_index()
        pairs = left.merge(
            meas[["person_id", "measurement_date", "value", "measurement_id"]], on="person_id"
        )
        pairs["gap"] = (
            pd.to_datetime(pairs["study_date"]) - pd.to_datetime(pairs["measurement_date"])
        ).abs()
        pairs = pairs[pairs["gap"] <= pd.Timedelta(days=MAX_DATE_GAP_DAYS)]
        nearest = pairs.sort_values(
            ["gap", "measurement_id"], ascending=[True, False]
        ).drop_duplicates("index")
        value.loc[nearest["index"].to_numpy()] = nearest["value"].to_numpy()
    return value.astype(float)


# --------------------------------------------------------------------------- drawing


def _draw(patient: _Patient, seed: int) -> list[Phantom] | None:
    """One phantom per study, all from one breast; None if no breast in MAX_ATTEMPTS fits every lesion."""
    for attempt in range(MAX_ATTEMPTS):
        entropy = [seed, patient.person_id, attempt]
        phantoms = []
        for study in patient.studies:
            rng = np.random.default_rng(entropy)  # the same breast at every visit
            size = study.lesion_mm
            phantom = mammogram(
                rng,
                "malignant" if size > 0 else "normal",
                size=IMAGE_SIZE,
                spacing_mm=MG_SPACING_MM,
                lesion_diameter_mm=size if size > 0 else None,
                laterality=patient.laterality,
            )
            drawn = phantom.lesion_diameter_mm or 0.0
            if not math.isclose(drawn, size, abs_tol=_tolerance_mm(size)):
                break
            phantoms.append(phantom)
        else:
            return phantoms
    return None


# --------------------------------------------------------------------------- brain MR studies


def _owned_brain_studies(con) -> set[str]:
    """The brain study UIDs an earlier run added (``clinic_metadata``), empty if none or unreadable."""
    rows = con.execute(
        "SELECT value FROM clinic_metadata WHERE key = ?", [BRAIN_STUDIES_KEY]
    ).fetchall()
    try:
        uids = json.loads(rows[0][0]) if rows else []
    except (TypeError, ValueError):
        return set()
    return {u for u in uids if isinstance(u, str)} if isinstance(uids, list) else set()


def _choose_brain(
    con, imaged: list[int], n: int, seed: int
) -> tuple[list[tuple[_Patient, list[Phantom]]], int]:
    """Up to ``n`` patients with their brain studies planned and drawn (see the module notes)."""
    if n == 0:
        return [], 0
    rows = con.execute(
        """SELECT c.person_id, c.diagnosis_date, c.stage_iv, r.recurrence_date, o.end_date
           FROM (SELECT person_id, min(diagnosis_date) AS diagnosis_date, bool_or(stage = 'IV') AS stage_iv
                 FROM condition_occurrence GROUP BY person_id) AS c
           JOIN observation_period AS o USING (person_id)
           LEFT JOIN (SELECT person_id, min(event_date) AS recurrence_date FROM outcome_event
                      WHERE event_type = 'recurrence' GROUP BY person_id) AS r USING (person_id)
           WHERE o.end_date >= c.diagnosis_date AND c.person_id IN (SELECT person_id FROM person)
           ORDER BY c.person_id"""
    ).df()
    if rows.empty:
        return [], 0
    rec = pd.to_datetime(rows["recurrence_date"])
    rows["recurrence_date"] = rec.where(
        (rec >= pd.to_datetime(rows["diagnosis_date"])) & (rec <= pd.to_datetime(rows["end_date"]))
    )
    rows = rows.iloc[np.random.default_rng([seed, _BRAIN_SALT]).permutation(len(rows))]
    advanced = (
        rows["stage_iv"].fillna(False).astype(bool) | rows["recurrence_date"].notna()
    ).to_numpy()
    # brain MR only where a brain metastasis is plausible: distant disease (stage IV or recurrence)
    tier = np.where(advanced, 0, 2) + np.where(rows["person_id"].isin(imaged).to_numpy(), 0, 1)
    order = np.argsort(tier, kind="stable")[: min(n, int(advanced.sum()))]
    rows, advanced = rows.iloc[order].reset_index(drop=True), advanced[order]
    # about half get a metastasis, only among those with distant disease
    n_mets = min((len(rows) + 1) // 2, int(advanced.sum()))
    with_met = set(
        np.random.default_rng([seed, _BRAIN_SALT, 1]).permutation(np.flatnonzero(advanced))[:n_mets]
    )

    people = _people(con, rows["person_id"].tolist())
    chosen, passed_over = [], 0
    for i, row in enumerate(rows.itertuples(index=False)):
        pid = int(row.person_id)
        plan = _plan_brain(row, i in with_met, seed)
        phantoms = _draw_brain(pid, [mm for _, _, mm in plan], seed)
        if phantoms is None or pid not in people:
            passed_over += 1
            continue
        mrn, name, birth, sex = people[pid]
        studies = []
        for k, ((date, description, _), phantom) in enumerate(zip(plan, phantoms, strict=True)):
            uid = brain_study_uid(seed, pid, k)
            studies.append(
                _Study(
                    uid,
                    None,
                    date,
                    description,
                    f"MRB{int(uid.rsplit('.', 1)[1]) % 10**13:013d}",
                    round(float(phantom.lesion_diameter_mm or 0.0), 1),
                )
            )
        chosen.append((_Patient(pid, mrn, name, birth, sex, "", tuple(studies)), phantoms))
    return chosen, passed_over


def _people(con, ids: list[int]) -> dict[int, tuple[str, str, dt.date, str]]:
    rows = con.execute(
        "SELECT person_id, mrn, given_name, family_name, birth_date, sex FROM person "
        "WHERE person_id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    ).fetchall()
    return {
        int(pid): (
            str(mrn),
            f"{family}^{given}",
            pd.Timestamp(birth).date(),
            sex if sex in ("F", "M") else "",
        )
        for pid, mrn, given, family, birth, sex in rows
    }


def _plan_brain(row, metastasis: bool, seed: int) -> list[tuple[dt.date, str, float]]:
    """(date, description, metastasis diameter or 0) of each of one patient's brain studies.

    Restaging at recurrence or staging of stage IV disease shortly after the event;
    for a patient with neither, a study for neurological symptoms later in follow-up.
    A follow-up 60-120 days later when the observation period allows (half the time).
    """
    rng = np.random.default_rng([seed, _BRAIN_SALT, int(row.person_id)])
    delay, gap, second, d1, shrink = (
        int(rng.integers(3, 22)),
        int(rng.integers(60, 121)),
        rng.random() < 0.5,
        float(np.exp(rng.uniform(*np.log(BRAIN_MET_RANGE_MM)))),
        float(rng.uniform(*BRAIN_FOLLOW_UP_SHRINK)),
    )
    dx, end = pd.Timestamp(row.diagnosis_date).date(), pd.Timestamp(row.end_date).date()
    if not pd.isna(row.recurrence_date):
        start, why = pd.Timestamp(row.recurrence_date).date(), "restaging at recurrence"
    elif row.stage_iv:
        start, why = dx, "staging"
    else:
        start, why = dx + dt.timedelta(days=min(180, (end - dx).days // 2)), "neurological symptoms"
    first = start + dt.timedelta(days=min(delay, (end - start).days))
    plan = [(first, f"MR brain with contrast ({why})", d1 if metastasis else 0.0)]
    if second and first + dt.timedelta(days=gap) <= end:
        d2 = max(BRAIN_MIN_MM, d1 * shrink) if metastasis else 0.0
        plan.append((first + dt.timedelta(days=gap), "MR brain with contrast (follow-up)", d2))
    return plan


def _draw_brain(person_id: int, sizes: list[float], seed: int) -> list[Phantom] | None:
    """One slice per study, all of one head; None if no head in MAX_ATTEMPTS fits every size."""
    for attempt in range(MAX_ATTEMPTS):
        phantoms = []
        for size in sizes:
            rng = np.random.default_rng(
                [seed, _BRAIN_SALT, person_id, 1, attempt]
            )  # the same head each time
            phantom = brain_mri(
                rng,
                size > 0,
                size=IMAGE_SIZE,
                spacing_mm=MR_SPACING_MM,
                lesion_diameter_mm=size if size > 0 else None,
            )
            if not math.isclose(
                phantom.lesion_diameter_mm or 0.0, size, abs_tol=_tolerance_mm(size)
            ):
                break
            phantoms.append(phantom)
        else:
            return phantoms
    return None


# --------------------------------------------------------------------------- files and rows


def _relpath(mrn: str, study: _Study) -> str:
    return f"{_safe(mrn)}/{study.study_uid}/{sop_uid_for(study.study_uid)}.dcm"


def _mask_rel(rel: str) -> str:
    return mask_path_for(Path(rel)).as_posix()


def _safe(text: str) -> str:
    """A folder name from an MRN: letters, digits, '-', '_' and '.' kept, anything else '_'."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip(".")
    return cleaned or "_"


def _read_manifest(path: Path, root: Path) -> set[str]:
    """Files (relative to ``root``) listed by an earlier run; entries outside ``root`` are ignored."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    out = set()
    for rel in entries:
        if not isinstance(rel, str) or not (rel.endswith(".dcm") or rel.endswith("_mask.png")):
            continue
        target = (root / rel).resolve()
        if target.is_relative_to(root.resolve()) and not Path(rel).is_absolute():
            out.add(Path(rel).as_posix())
    return out


def _write_manifest(path: Path, files: list[str]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(
            json.dumps({"written_by": "oncolens demo", "files": files}, indent=0), encoding="utf-8"
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _record(
    db_path: Path,
    images: list[DemoImage],
    series_rows: dict[str, tuple[str, str, str, str]],
    stale_paths: list[str],
    *,
    brain: list[tuple[_Patient, list[Phantom]]] = (),
    owned_before: set[str] = frozenset(),
) -> None:
    """One short transaction: (re)place this run's rows, drop those of files about to go.

    Instance rows of this run replace their namesakes; those of stale files go. The
    brain studies of the previous run (``owned_before``) go with their series,
    instances and measurements, and this run's are added with their radiology read.
    Rows travel as list parameters unnested in SQL (a hundred rows, one statement each).
    """
    sop = [im.sop_instance_uid for im in images]
    spacing = [MR_SPACING_MM if im.modality == "MR" else MG_SPACING_MM for im in images]
    instances = [
        sop,
        [im.series_uid for im in images],
        [str(im.path) for im in images],
        [IMAGE_SIZE[0]] * len(images),
        [IMAGE_SIZE[1]] * len(images),
        spacing,
    ]
    series = [list(series_rows), *([row[i] for row in series_rows.values()] for i in range(4))]
    brain_studies = [(p.person_id, s) for p, _ in brain for s in p.studies]
    new_uids = [s.study_uid for _, s in brain_studies]
    dropped = sorted(owned_before - set(new_uids))
    gone = sorted(owned_before | set(new_uids))
    study_rows = [
        new_uids,
        [pid for pid, _ in brain_studies],
        [s.study_date for _, s in brain_studies],
        [s.description for _, s in brain_studies],
        [s.accession for _, s in brain_studies],
    ]
    with store.open_store(db_path) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                "DELETE FROM imaging_instance WHERE sop_instance_uid IN (SELECT unnest(?::VARCHAR[]))",
                [sop],
            )
            if stale_paths:
                con.execute(
                    "DELETE FROM imaging_instance WHERE file_path IN (SELECT unnest(?::VARCHAR[]))",
                    [stale_paths],
                )
            if gone:
                con.execute(
                    "DELETE FROM imaging_instance WHERE series_uid IN (SELECT series_uid FROM imaging_series "
                    " WHERE study_uid IN (SELECT unnest(?::VARCHAR[])))",
                    [gone],
                )
                con.execute(
                    "DELETE FROM imaging_series WHERE study_uid IN (SELECT unnest(?::VARCHAR[]))",
                    [gone],
                )
                con.execute(
                    "DELETE FROM measurement WHERE study_uid IN (SELECT unnest(?::VARCHAR[]))",
                    [dropped],
                )
                con.execute(
                    "DELETE FROM measurement WHERE study_uid IN (SELECT unnest(?::VARCHAR[])) "
                    "AND concept = ? AND source = 'radiology'",
                    [new_uids, BRAIN_CONCEPT],
                )
                con.execute(
                    "DELETE FROM imaging_study WHERE modality = 'MR' "
                    "AND study_uid IN (SELECT unnest(?::VARCHAR[]))",
                    [gone],
                )
            if brain_studies:
                con.execute(
                    "INSERT INTO imaging_study SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::DATE[]),"
                    " 'MR', unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
                    study_rows,
                )
                first_id = con.execute(
                    "SELECT coalesce(max(measurement_id), 0) + 1 FROM measurement"
                ).fetchall()[0][0]
                con.execute(
                    "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, value, unit,"
                    " source, study_uid) SELECT unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::DATE[]), ?,"
                    " unnest(?::DOUBLE[]), 'mm', 'radiology', unnest(?::VARCHAR[])",
                    [
                        list(range(first_id, first_id + len(new_uids))),
                        study_rows[1],
                        study_rows[2],
                        BRAIN_CONCEPT,
                        [s.lesion_mm for _, s in brain_studies],
                        new_uids,
                    ],
                )
            if series_rows:
                con.execute(
                    "INSERT INTO imaging_series SELECT uid, study, modality, body_part, description FROM ("
                    " SELECT unnest(?::VARCHAR[]) AS uid, unnest(?::VARCHAR[]) AS study,"
                    " unnest(?::VARCHAR[]) AS modality, unnest(?::VARCHAR[]) AS body_part,"
                    " unnest(?::VARCHAR[]) AS description) WHERE uid NOT IN (SELECT series_uid FROM imaging_series)",
                    series,
                )
            if images:
                con.execute(
                    "INSERT INTO imaging_instance SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),"
                    " unnest(?::VARCHAR[]), unnest(?::INTEGER[]), unnest(?::INTEGER[]), unnest(?::DOUBLE[])",
                    instances,
                )
            con.execute("DELETE FROM clinic_metadata WHERE key = ?", [BRAIN_STUDIES_KEY])
            if new_uids:
                con.execute(
                    "INSERT INTO clinic_metadata VALUES (?, ?)",
                    [BRAIN_STUDIES_KEY, json.dumps(new_uids)],
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _remove(root: Path, stale: list[str]) -> int:
    """Delete files of an earlier run and the folders they leave empty; returns how many files went."""
    removed = 0
    folders = set()
    for rel in stale:
        path = root / rel
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        folders.update(p for p in path.parents if p != root and p.is_relative_to(root))
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty
    return removed
