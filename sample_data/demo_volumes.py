"""3D demo studies: brain MR and thorax CT volumes of demo patients, at the sizes their records say.

Why: the 3D path (series in, volumes out; the viewer and the 3D model that come next) needs
volumes with real anatomy and known truth, of the clinic's own patients, so that a lesion
tracked across time points in 3D matches the readings the store holds for those very studies.

Who and what:

- **Brain MR** for patients who have brain MR studies in the clinic's record (``records``: after
  the progression that was a new brain metastasis, every 12-15 weeks, each with
  ``brain_lesion_longest_diameter``). Every such study of a patient, up to ``MAX_TIME_POINTS``
  (the first and the most recent), becomes a post-contrast T1 volume on the MNI152 template with
  the metastasis drawn at the study's recorded diameter (``models.volumes.phantoms.brain_mr``):
  one site and shape per patient, so growth and shrinkage follow her course. Studies that
  ``demo_imaging`` added for its 2D slices are not used (they are not part of the course).
- **Thorax CT** for patients with restaging CT (``lesion_longest_diameter``, the target lesion of
  the metastatic course): the first and the most recent studies, up to ``MAX_TIME_POINTS``, each
  with the target lesion in a lung at its recorded size and two small non-target nodules that
  do not change.
- Patients are taken in a seeded shuffle, those with two or more such studies first (a lesion
  is tracked only across time points); ``patients`` of each kind (opt-in: ``oncolens demo
  --volumes N``; one of each writes 5-8 volumes in about 10-15 s on 2 shared cores).

Files: ``volumes_dir/dicom/<MRN>/<StudyInstanceUID>/<SeriesInstanceUID>/slice_NNNN.dcm`` (CT or
MR Image Storage, ``models.volumes.write``), under the study's own UID, date, accession number
and the patient's demo identifiers, a new series UID derived from the study's; the hidden truth
beside them in ``volumes_dir/truth/<MRN>/<StudyInstanceUID>/<SeriesInstanceUID>_labels.nii.gz``
(NIfTI, RAS, the labels in ``phantoms.BRAIN_LABELS`` / ``CT_LABELS``; a tree of its own, so that
``oncolens predict volumes_dir/dicom`` or an ingest of it never meets the truth) and one
``volumes.json`` manifest listing every
series with its recorded and drawn diameters and per-label volumes (mL). The store is not
changed: the series are found through the manifest or by reading the folder; registering them
as store series comes with the 3D model (issue 21, items 3-4). ``volumes_dir`` belongs to this
writer: a rerun replaces it whole (written beside, then swapped in), and a folder that holds
anything but an earlier run's output is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analytics import store
from models.paths import inside
from models.volumes import geometry, phantoms
from models.volumes.write import SeriesHeader, write_series
from sample_data.demo import DemoError
from sample_data.demo_imaging import BRAIN_CONCEPT, BRAIN_STUDIES_KEY, demo_uid

DEFAULT_PATIENTS = 2
MAX_TIME_POINTS = 4  # the first study and the three most recent
MANIFEST_NAME = "volumes.json"
CT_CONCEPT = "lesion_longest_diameter"
_SALT = 0x564F4C  # 'VOL': separates these draws from the rest of the demo


class DemoVolumesError(DemoError):
    """The demo volumes could not be written; the message says why."""


@dataclass(frozen=True)
class VolumeStudy:
    """One written series and its truth."""

    person_id: int
    patient_id: str
    modality: str
    study_uid: str
    series_uid: str
    study_date: dt.date
    recorded_mm: float  # the store's reading for this study
    drawn_mm: float  # longest axial diameter of the drawn lesion
    volume_ml: dict[str, float]  # per label
    folder: Path
    labels_path: Path

    def to_json(self, root: Path) -> dict:
        return {
            "person_id": self.person_id,
            "patient_id": self.patient_id,
            "modality": self.modality,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "study_date": self.study_date.isoformat(),
            "recorded_mm": self.recorded_mm,
            "drawn_mm": self.drawn_mm,
            "volume_ml": self.volume_ml,
            "folder": self.folder.relative_to(root).as_posix(),
            "labels": self.labels_path.relative_to(root).as_posix(),
        }


@dataclass(frozen=True)
class VolumesSummary:
    volumes_dir: Path
    seed: int
    studies: tuple[VolumeStudy, ...]
    seconds: float

    @property
    def person_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(s.person_id for s in self.studies))


def write_demo_volumes(
    db_path: str | Path,
    volumes_dir: str | Path,
    *,
    patients: int = DEFAULT_PATIENTS,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> VolumesSummary:
    """Write brain MR volumes of ``patients`` patients and thorax CT volumes of as many others.

    ``seed`` defaults to the clinic's own (``clinic_metadata``). Raises ``DemoVolumesError`` for
    unusable arguments or a folder this writer does not own, ``store.StoreError`` for the store.
    """
    t0 = time.perf_counter()
    if isinstance(patients, bool) or not isinstance(patients, int) or patients < 0:
        raise DemoVolumesError(
            f"the number of patients must be a whole number >= 0 (got {patients!r})"
        )
    say = progress or (lambda _msg: None)
    root = Path(volumes_dir).expanduser().absolute()
    if root.exists() and (
        not root.is_dir() or (any(root.iterdir()) and not (root / MANIFEST_NAME).is_file())
    ):
        raise DemoVolumesError(
            f"{root} exists and was not written by `oncolens demo`; give an empty or new folder"
        )
    with store.open_store(Path(db_path).expanduser().absolute(), read_only=True) as con:
        if seed is None:
            row = con.execute("SELECT value FROM clinic_metadata WHERE key = 'seed'").fetchall()
            seed = int(row[0][0]) if row and str(row[0][0]).lstrip("-").isdigit() else 0
        brain = _plan(con, "MR", BRAIN_CONCEPT, patients, int(seed))
        chest = _plan(con, "CT", CT_CONCEPT, patients, int(seed), exclude=set(brain.person_id))
    plan = pd.concat([brain, chest], ignore_index=True)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    say(
        f"writing {len(plan)} demo volumes of {plan.person_id.nunique()} patients "
        f"(brain MR and thorax CT) to {root}"
    )
    try:
        studies = [
            study
            for _, rows in plan.groupby(["modality", "person_id"], sort=False)
            for study in _write_patient(rows, tmp, root, int(seed))
        ]
        manifest = {
            "written_by": "oncolens demo",
            "seed": int(seed),
            "labels": {"MR": phantoms.BRAIN_LABELS, "CT": phantoms.CT_LABELS},
            "series": [s.to_json(root) for s in studies],
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        old = root.with_name(f".{root.name}.{os.getpid()}.old")
        if root.exists():
            os.replace(root, old)
        os.replace(tmp, root)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t0
    say(f"wrote {len(studies)} volumes in {seconds:.1f} s")
    return VolumesSummary(root, int(seed), tuple(studies), seconds)


def _plan(
    con, modality: str, concept: str, n: int, seed: int, exclude: set[int] | None = None
) -> pd.DataFrame:
    """The studies to draw: per chosen patient, the first and the latest (MAX_TIME_POINTS in all)."""
    if n == 0:
        return pd.DataFrame(columns=["person_id", "study_uid", "study_date", "modality", "mm"])
    owned = con.execute(
        "SELECT value FROM clinic_metadata WHERE key = ?", [BRAIN_STUDIES_KEY]
    ).fetchall()
    skip = json.loads(owned[0][0]) if owned else []
    rows = con.execute(
        """SELECT s.person_id, s.study_uid, s.study_date, s.modality, s.description, s.accession_number,
                  m.value AS mm, p.mrn, p.given_name, p.family_name, p.birth_date, p.sex
           FROM imaging_study s
           JOIN measurement m ON m.study_uid = s.study_uid AND m.concept = ? AND m.source = 'radiology'
           JOIN person p ON p.person_id = s.person_id
           WHERE s.modality = ? AND s.study_uid NOT IN (SELECT unnest(?::VARCHAR[]))
           ORDER BY s.person_id, s.study_date""",
        [concept, modality, skip],
    ).df()
    rows = rows[~rows.person_id.isin(exclude or set())]
    counts = rows.groupby("person_id").size()
    rng = np.random.default_rng([seed, _SALT, ord(modality[0])])
    people = counts.index.to_numpy()[rng.permutation(len(counts))]
    # patients followed over several studies first: a lesion is tracked only across time points
    tracked = counts.loc[people].to_numpy() >= 2
    chosen = set(np.concatenate([people[tracked], people[~tracked]])[:n].tolist())
    rows = rows[rows.person_id.isin(chosen)]
    k = rows.groupby("person_id").cumcount()
    n_rows = rows.groupby("person_id").person_id.transform("size")
    keep = (k == 0) | (k >= n_rows - (MAX_TIME_POINTS - 1))
    return rows[keep].reset_index(drop=True)


def _write_patient(rows: pd.DataFrame, tmp: Path, root: Path, seed: int) -> list[VolumeStudy]:
    first = rows.iloc[0]
    pid, modality = int(first.person_id), str(first.modality)
    mr = modality == "MR"
    rng = np.random.default_rng([seed, _SALT, pid, 1])  # the patient's anatomy and lesion site
    largest = float(rows.mm.max())
    site = phantoms.brain_lesion(rng, largest) if mr else phantoms.thorax_lesion(rng, largest)
    others = (
        ()
        if mr
        else tuple(
            (phantoms.thorax_lesion(rng, 8.0), float(rng.uniform(4.0, 7.0))) for _ in range(2)
        )
    )
    frame_uid = demo_uid("volume-frame", seed, pid, modality)
    out = []
    for k, row in enumerate(rows.itertuples(index=False)):
        scan_rng = np.random.default_rng([seed, _SALT, pid, 2, k])
        mm = float(row.mm)
        vol = (
            phantoms.brain_mr(scan_rng, site, mm)
            if mr
            else phantoms.thorax_ct(scan_rng, site, mm, others)
        )
        series_uid = demo_uid("volume-series", row.study_uid)
        # names from the store pass through _safe, then models.paths.inside (docs/security.md)
        parts = ("dicom", _safe(str(row.mrn)), _safe(str(row.study_uid)), series_uid)
        rel = inside(tmp, *parts).relative_to(tmp.resolve())
        header = SeriesHeader(
            modality=modality,
            patient_id=str(row.mrn),
            patient_name=f"{row.family_name}^{row.given_name}",
            study_uid=str(row.study_uid),
            series_uid=series_uid,
            frame_of_reference_uid=frame_uid,
            study_date=pd.Timestamp(row.study_date).date(),
            body_part="BRAIN" if mr else "CHEST",
            study_description=str(row.description or ""),
            series_description="AX T1 3D post-contrast (demo volume)"
            if mr
            else "Thorax 3 mm (demo volume)",
            series_number=301 if mr else 2,
            accession_number=str(row.accession_number or "")[:16],
            birth_date=pd.Timestamp(row.birth_date).date(),
            sex=str(row.sex) if row.sex in ("F", "M") else "",
            window=(600.0, 1200.0) if mr else (-500.0, 1500.0),
            contrast_agent="gadoterate" if mr else "iohexol",
        )
        write_series(
            vol.values,
            tmp / rel,
            header,
            origin_lps=vol.origin_lps,
            pixel_spacing=(vol.spacing_mm[1], vol.spacing_mm[2]),
            slice_spacing=vol.spacing_mm[0],
        )
        truth = Path("truth", *rel.parts[1:-1], f"{series_uid}_labels.nii.gz")
        (tmp / truth).parent.mkdir(parents=True, exist_ok=True)
        _write_labels(vol, tmp / truth)
        out.append(
            VolumeStudy(
                pid,
                str(row.mrn),
                modality,
                str(row.study_uid),
                series_uid,
                pd.Timestamp(row.study_date).date(),
                round(mm, 1),
                vol.lesion_diameter_mm,
                vol.lesion_volume_ml,
                root / rel,
                root / truth,
            )
        )
    return out


def _write_labels(vol: phantoms.PhantomVolume, path: Path) -> None:
    # lazy: nibabel is needed only when the demo writes volumes
    import nibabel as nib

    affine = geometry.affine_lps(
        np.asarray(vol.origin_lps),
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        (vol.spacing_mm[1], vol.spacing_mm[2]),
        np.array([0.0, 0.0, vol.spacing_mm[0]]),
    )
    data, ras = geometry.nifti_layout(vol.labels, affine)
    img = nib.Nifti1Image(np.ascontiguousarray(data), ras)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def _safe(text: str) -> str:
    """A folder name from an MRN: letters, digits, '-', '_' and '.' kept, anything else '_'."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip(".")
    return cleaned or "_"
