"""3D reads in the store: one row per series read, one per lesion, lesions linked across time points.

Why a table of its own and not only ``measurement``: a volume read says more than one number (every
lesion's volume and diameter, where it lies, which weights read it, the input check, a refusal),
and the timeline draws each lesion's volume over time, which needs to know which lesion of one
scan is which lesion of the next. What the forecasts and the worklist read is still the one
``measurement`` row per study, written here exactly as a 2D AI read writes it (``source = 'ai'``,
the study it came from, the model, version and weights of the read that gave the value, so that
the sign-off applies to it: analytics.governance.lifecycle.measurements), so they follow 3D reads
without a second path:

- brain MR reads give ``brain_lesion_longest_diameter`` (the concept of the 2D brain model and of
  the radiology record; the forecasts do not fit it, the worklist and the timeline show it);
- CT reads (a registered CT bundle) give ``lesion_longest_diameter``, the target-lesion series the
  growth-inhibition forecast fits.

The value is the RECIST 1.1 sum of the longest axial diameters of the read's two largest lesions
(RECIST takes at most two target lesions per organ). A read that finds no lesion writes no
measurement (the card says the model misses most lesions under 20 mm: "none found" is not
"0 mm"), and a refused read removes an earlier AI measurement of the study, as for 2D reads.

**Linking lesions across time points** (``relink``, rerun for the patient and model on every write,
so the answer never depends on the order in which studies were ingested): the patient's accepted
reads are walked in study-date order; each track keeps its last centroid and diameter; the
lesions of a read are matched to the tracks by the Hungarian algorithm on the distance between
centroids in patient coordinates (LPS mm) among the pairs whose distance is at most
``max(LINK_MIN_MM, LINK_DIAMETER_FRACTION x the larger longest diameter)``; an unmatched lesion
starts a new track. A read without lesions, or a refused one, leaves the tracks as they are (a
lesion missed once is picked up again). Patient coordinates compare across studies only when the
studies share a frame of reference (the same scanner session, or registered images); when they
do not, the link is still made by position but its ``link`` text says so, and the page shows it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.volumes.measure import SeriesRead

LINK_MIN_MM = 10.0
LINK_DIAMETER_FRACTION = 0.75
RECIST_TARGETS_PER_ORGAN = 2
CONCEPT_BY_MODALITY = {
    "MR": "brain_lesion_longest_diameter",
    "CT": "lesion_longest_diameter",
}

__all__ = [
    "CONCEPT_BY_MODALITY",
    "LINK_MIN_MM",
    "link_tracks",
    "patient_volume_lesions",
    "patient_volume_reads",
    "relink",
    "store_series_read",
]


def store_series_read(
    con: duckdb.DuckDBPyConnection,
    read: SeriesRead,
    *,
    person_id: int,
    study_uid: str,
    series_uid: str,
    study_date: dt.date,
    frame_key: str | None,
    now: dt.datetime,
    next_measurement_id: int,
) -> tuple[dict, int]:
    """Write one series' 3D read (inside the caller's transaction); replaces an earlier read of the
    series by the same model. Returns the entry for the ingest report and the next free
    ``measurement_id``."""
    vr = read.read
    assert vr is not None  # the caller stores only reads that were made
    check = vr.input_check
    con.execute(
        "DELETE FROM ai_volume_read WHERE series_uid = ? AND model_name = ?", [series_uid, vr.model]
    )
    con.execute(
        "DELETE FROM ai_volume_lesion WHERE series_uid = ? AND model_name = ?",
        [series_uid, vr.model],
    )
    total = None if vr.label is None else float(sum(m.volume_ml for m in vr.lesions))
    con.execute(
        "INSERT INTO ai_volume_read VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            series_uid, int(person_id), study_uid, study_date, vr.modality, frame_key, vr.model,
            vr.model_version, read.weights_sha256, vr.label, vr.probability, len(vr.lesions),
            total, vr.refused, check.score, check.threshold, json.dumps(check.to_json()), now,
        ],
    )  # fmt: skip
    for k, (m, c) in enumerate(zip(vr.lesions, read.centres_lps_mm, strict=True), start=1):
        con.execute(
            "INSERT INTO ai_volume_lesion VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                series_uid, vr.model, k, int(person_id), study_date, k, m.volume_ml,
                m.longest_axial_diameter_mm, m.probability, c[0], c[1], c[2], "new",
            ],
        )  # fmt: skip
    concept = CONCEPT_BY_MODALITY.get(vr.modality)
    diameter = None
    if concept is not None:
        con.execute(
            "DELETE FROM measurement WHERE study_uid = ? AND source = 'ai' AND concept = ?",
            [study_uid, concept],
        )
        # One AI value per study, from the series of the study that shows the most disease (the
        # largest RECIST sum among its accepted reads), whatever order the series were stored in:
        # an MR study has several series (T1, T1c, FLAIR), and a later "no lesion" or refused
        # read of one must not erase the lesion another one measured.
        diameter, version, weights = _study_recist_sum(con, study_uid, vr.modality, vr.model)
        if diameter is not None:
            con.execute(
                "INSERT INTO measurement (measurement_id, person_id, measurement_date, concept, "
                "value, unit, source, study_uid, model_name, model_version, weights_sha256) "
                "VALUES (?, ?, ?, ?, ?, 'mm', 'ai', ?, ?, ?, ?)",
                [
                    next_measurement_id,
                    int(person_id),
                    study_date,
                    concept,
                    diameter,
                    study_uid,
                    vr.model,
                    version,
                    weights,
                ],  # fmt: skip
            )
            next_measurement_id += 1
    relink(con, int(person_id), vr.model)
    entry = {
        "kind": "volume",
        "person_id": int(person_id),
        "study_uid": study_uid,
        "series_instance_uid": series_uid,
        **{k: v for k, v in vr.to_json().items() if k not in ("kind", "series_instance_uid")},
        "weights_sha256": read.weights_sha256,
        "measurement": None
        if diameter is None
        else {"concept": concept, "value_mm": diameter, "source": "ai"},
    }
    return entry, next_measurement_id


def _study_recist_sum(
    con: duckdb.DuckDBPyConnection, study_uid: str, modality: str, model: str
) -> tuple[float | None, str | None, str | None]:
    """The largest RECIST sum (the ``RECIST_TARGETS_PER_ORGAN`` largest lesions' longest axial
    diameters) among the accepted reads of a study's series of one modality (None without any
    lesion), with the model version and weights of the read that gave it: the measurement is
    that read's, for the sign-off (analytics.governance.lifecycle.measurements)."""
    # one ORDER BY with a tie-break, not two arg_max: on a tie those may name two reads (review)
    row = con.execute(
        """SELECT recist, model_version, weights_sha256
           FROM (
               SELECT sum(l.longest_axial_diameter_mm) AS recist,
                      any_value(r.model_version) AS model_version,
                      any_value(r.weights_sha256) AS weights_sha256
               FROM ai_volume_lesion AS l JOIN ai_volume_read AS r USING (series_uid, model_name)
               WHERE r.study_uid = ? AND r.modality = ? AND r.model_name = ?
                 AND r.refused IS NULL AND l.lesion_number <= ?
               GROUP BY l.series_uid)
           ORDER BY recist DESC NULLS LAST, weights_sha256, model_version
           LIMIT 1""",
        [study_uid, modality, model, RECIST_TARGETS_PER_ORGAN],
    ).fetchone()
    if row is None or row[0] is None:
        return None, None, None
    return round(float(row[0]), 2), row[1], row[2]


def link_tracks(lesions: pd.DataFrame) -> pd.DataFrame:
    """``track_id`` and ``link`` for lesion rows (``series_uid``, ``study_date``, ``lesion_number``,
    ``centre_x_mm``, ``centre_y_mm``, ``centre_z_mm``, ``longest_axial_diameter_mm``, ``frame_key``),
    by the rule in the module docstring. Pure: the tests call it on hand-made rows."""
    # lazy: scipy.optimize only where lesions are linked (a write), not when the app reads them
    from scipy.optimize import linear_sum_assignment

    out = lesions.copy()
    out["track_id"] = 0
    out["link"] = "new"
    tracks: list[dict] = []  # id, centre, diameter, date, frame
    order = out.sort_values(["study_date", "series_uid", "lesion_number"])
    for _, scan in order.groupby(["study_date", "series_uid"], sort=False):
        centres = scan[["centre_x_mm", "centre_y_mm", "centre_z_mm"]].to_numpy(float)
        diameters = scan["longest_axial_diameter_mm"].to_numpy(float)
        matched: dict[int, int] = {}
        if tracks:
            last = np.array([t["centre"] for t in tracks])
            dist = np.linalg.norm(centres[:, None, :] - last[None, :, :], axis=2)
            sizes = np.maximum(diameters[:, None], np.array([t["diameter"] for t in tracks])[None])
            allowed = dist <= np.maximum(LINK_MIN_MM, LINK_DIAMETER_FRACTION * sizes)
            # pairs beyond the limit cost more than any allowed set of pairs: never traded for them
            rows, cols = linear_sum_assignment(np.where(allowed, dist, 1e9))
            for r, c in zip(rows, cols, strict=True):
                if allowed[r, c]:
                    matched[r] = c
        for i, idx in enumerate(scan.index):
            frame = scan.at[idx, "frame_key"]
            if i in matched:
                t = tracks[matched[i]]
                d = float(np.linalg.norm(centres[i] - t["centre"]))
                note = f"{d:.1f} mm from lesion {t['id']} of {t['date']:%Y-%m-%d}"
                if frame is None or t["frame"] is None or frame != t["frame"]:
                    note += " (different frames of reference: positions not registered)"
                t.update(centre=centres[i], diameter=diameters[i], date=scan.at[idx, "study_date"])
                t["frame"] = frame
                out.at[idx, "track_id"], out.at[idx, "link"] = t["id"], note
            else:
                tracks.append(
                    {
                        "id": len(tracks) + 1,
                        "centre": centres[i],
                        "diameter": diameters[i],
                        "date": scan.at[idx, "study_date"],
                        "frame": frame,
                    }
                )
                out.at[idx, "track_id"], out.at[idx, "link"] = len(tracks), "new"
    return out


def relink(con: duckdb.DuckDBPyConnection, person_id: int, model_name: str) -> None:
    """Recompute ``track_id`` and ``link`` of every lesion of the patient read by ``model_name``."""
    rows = con.execute(
        "SELECT l.series_uid, l.lesion_number, l.study_date, l.centre_x_mm, l.centre_y_mm, "
        "l.centre_z_mm, l.longest_axial_diameter_mm, r.frame_key "
        "FROM ai_volume_lesion l JOIN ai_volume_read r USING (series_uid, model_name) "
        "WHERE l.person_id = ? AND l.model_name = ?",
        [int(person_id), model_name],
    ).df()
    if rows.empty:
        return
    rows["study_date"] = pd.to_datetime(rows["study_date"])
    rows["frame_key"] = rows["frame_key"].astype(object).where(rows["frame_key"].notna(), None)
    linked = link_tracks(rows)
    con.executemany(
        "UPDATE ai_volume_lesion SET track_id = ?, link = ? "
        "WHERE series_uid = ? AND model_name = ? AND lesion_number = ?",
        [
            [int(t), str(link), str(s), model_name, int(n)]
            for t, link, s, n in zip(
                linked["track_id"],
                linked["link"],
                linked["series_uid"],
                linked["lesion_number"],
                strict=True,
            )
        ],
    )


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """False for a store not yet at schema 14 opened read-only (reads never migrate)."""
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_name = 'ai_volume_lesion'"
        ).fetchall()[0][0]
    )


_READ_COLUMNS = [
    "series_uid", "study_uid", "study_date", "modality", "model_name", "model_version",
    "weights_sha256", "label", "probability", "lesions", "total_volume_ml", "refused",
    "guard_score", "guard_threshold", "read_at",
]  # fmt: skip
_LESION_COLUMNS = [
    "model_name", "model_version", "track_id", "study_date", "series_uid", "lesion_number",
    "volume_ml", "longest_axial_diameter_mm", "probability", "centre_x_mm", "centre_y_mm",
    "centre_z_mm", "link",
]  # fmt: skip


def patient_volume_reads(con: duckdb.DuckDBPyConnection, person_id: int) -> pd.DataFrame:
    """Her 3D reads, oldest first: series, study date, model, version, weights, label, probability,
    lesions, total volume, refusal, guard score and threshold."""
    if not _has_tables(con):
        return pd.DataFrame(columns=_READ_COLUMNS)
    return con.execute(
        "SELECT series_uid, study_uid, study_date, modality, model_name, model_version, "
        "weights_sha256, label, probability, lesions, total_volume_ml, refused, guard_score, "
        "guard_threshold, read_at FROM ai_volume_read WHERE person_id = ? "
        "ORDER BY study_date, series_uid, model_name",
        [int(person_id)],
    ).df()


def patient_volume_lesions(con: duckdb.DuckDBPyConnection, person_id: int) -> pd.DataFrame:
    """Her lesions of every 3D read, by model, track and date."""
    if not _has_tables(con):
        return pd.DataFrame(columns=_LESION_COLUMNS)
    return con.execute(
        "SELECT l.model_name, r.model_version, l.track_id, l.study_date, l.series_uid, "
        "l.lesion_number, l.volume_ml, l.longest_axial_diameter_mm, l.probability, "
        "l.centre_x_mm, l.centre_y_mm, l.centre_z_mm, l.link "
        "FROM ai_volume_lesion l JOIN ai_volume_read r USING (series_uid, model_name) "
        "WHERE l.person_id = ? ORDER BY l.model_name, l.track_id, l.study_date",
        [int(person_id)],
    ).df()
