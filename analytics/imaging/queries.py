"""Which images the store knows a file for, and what the AI said about them.

Why a separate query from the patient summary: the Imaging page needs file
paths and the latest AI finding per instance, which the patient record
(timeline, treatments) does not; keeping them apart keeps both queries small.

What the page offers (``offered``): a 2D image once, and a series that is a volume (the rule of
docs/volumes.md, decided by ``models.volumes`` from the files' headers, or known from its 3D read
in ``ai_volume_read``) once, as a series for the 3D read, never as its N slices.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from analytics import store

_IMAGES = """
    SELECT s.person_id, s.study_date, se.modality, s.description AS study_description,
           se.body_part, i.sop_instance_uid, i.file_path, i.rows, i.columns, i.pixel_spacing_mm,
           f.model_name, f.model_version, f.predicted_class, f.probability,
           f.longest_diameter_mm AS ai_longest_diameter_mm, s.study_uid, se.series_uid
    FROM {studies} AS s
    JOIN imaging_series AS se USING (study_uid)
    JOIN imaging_instance AS i USING (series_uid)
    LEFT JOIN (
        SELECT * FROM ai_finding
        QUALIFY row_number() OVER (PARTITION BY sop_instance_uid ORDER BY created_at DESC, finding_id DESC) = 1
    ) AS f USING (sop_instance_uid)
    WHERE i.file_path IS NOT NULL
"""

# the clinic's most recent series with a file on record (a series counts once, whatever its size)
_RECENT_SERIES = """
    AND se.series_uid IN (
        SELECT se2.series_uid FROM imaging_study AS s2
        JOIN imaging_series AS se2 USING (study_uid)
        JOIN imaging_instance AS i2 USING (series_uid)
        WHERE i2.file_path IS NOT NULL
        GROUP BY se2.series_uid
        ORDER BY max(s2.study_date) DESC, se2.series_uid
        LIMIT ?
    )
"""


def patient_images(con: duckdb.DuckDBPyConnection, person_id: int) -> pd.DataFrame:
    """A patient's images with a file on record, newest study first, with the latest AI finding if any."""
    sql = _IMAGES.format(studies="(SELECT * FROM imaging_study WHERE person_id = ?)")
    return con.execute(
        sql + " ORDER BY s.study_date DESC, i.sop_instance_uid", [int(person_id)]
    ).df()


def recent_images(con: duckdb.DuckDBPyConnection, limit: int = 30) -> pd.DataFrame:
    """The images with a file on record of the clinic's ``limit`` most recent series (for a page
    with no patient chosen), newest first: a series is counted once, so a volume of 94 slices
    does not crowd out the 29 studies before it (``offered`` then lists it once)."""
    limit = max(1, min(int(limit), 500))
    sql = _IMAGES.format(studies="imaging_study")
    return con.execute(
        sql + _RECENT_SERIES + " ORDER BY s.study_date DESC, i.sop_instance_uid", [limit]
    ).df()


def series_read_in_3d(con: duckdb.DuckDBPyConnection, series_uids: list[str]) -> set[str]:
    """Which of ``series_uids`` have a 3D read on record (``ai_volume_read``): ingest read them as
    volumes by the same rule, so their files need no second look."""
    if not series_uids:
        return set()
    if not store.has_table(con, "ai_volume_read"):  # a store before schema 14, opened read-only
        return set()
    rows = con.execute(
        "SELECT DISTINCT series_uid FROM ai_volume_read WHERE list_contains(?, series_uid)",
        [list(series_uids)],
    ).fetchall()
    return {str(r[0]) for r in rows}


def offered(images: pd.DataFrame, volume_series: set[str]) -> pd.DataFrame:
    """What a picker offers, in the order of ``images``: each image of a 2D series as it is, and
    each series in ``volume_series`` once (its first row), with ``is_volume`` and ``images`` (the
    number of its files) so the page opens it as a series for the 3D read.

    Why here and not in the page: the Imaging page's patient and clinic lists and any later
    picker must agree on what is one input, as ``oncolens predict`` does for a folder."""
    out = images.assign(
        is_volume=images["series_uid"].isin(volume_series) if len(images) else False,
        images=1,
    )
    if not out["is_volume"].any():
        return out.reset_index(drop=True)
    counts = out.loc[out["is_volume"], "series_uid"].value_counts()
    first = ~out["is_volume"] | ~out.duplicated("series_uid")
    out = out.loc[first].reset_index(drop=True)
    out.loc[out["is_volume"], "images"] = out.loc[out["is_volume"], "series_uid"].map(counts)
    return out


def patient_identity(con: duckdb.DuckDBPyConnection, person_id: int) -> dict[str, str | None]:
    """The identifiers an uploaded file is checked against (never shown): MRN, id, name, birth date, sex."""
    row = con.execute(
        "SELECT mrn, given_name, family_name, strftime(birth_date, '%Y%m%d'), sex "
        "FROM person WHERE person_id = ?",
        [int(person_id)],
    ).fetchone()
    if row is None:
        return {}
    mrn, given, family, birth, sex = row
    return {
        "person_id": str(int(person_id)),
        "mrn": mrn,
        "given_name": given,
        "family_name": family,
        "birth_date": birth,
        "sex": sex,
    }


def _norm(value: object) -> str:
    return " ".join(str(value or "").replace("^", " ").upper().split())


def identity_mismatches(
    identity: dict[str, str | None],
    *,
    patient_id: str | None,
    patient_name: str | None,
    birth_date: str | None,
    sex: str | None,
) -> list[str]:
    """Which identifiers of a file (read BEFORE de-identification) contradict the open patient.

    Why before: de-identification replaces them, after it every file "matches". The file's
    PatientID must be the patient's MRN or id (ingest's rule); its name (DICOM "FAMILY^GIVEN"),
    birth date (YYYYMMDD) and sex must agree where both sides have one. A file without a
    PatientID cannot be matched and is listed as ``patient id missing``. Returns field names,
    never values (the page and the audit trail show the names only).
    """
    out = []
    pid = str(patient_id or "").strip()
    if not pid:
        out.append("patient id missing")
    elif pid not in {str(identity.get("mrn") or ""), str(identity.get("person_id") or "")}:
        out.append("patient id")
    name = _norm(patient_name)
    if name and (identity.get("family_name") or identity.get("given_name")):
        expected = {_norm(identity.get("family_name")), _norm(identity.get("given_name"))} - {""}
        if not expected <= set(name.split()) and not all(e in name for e in expected):
            out.append("patient name")
    birth = str(birth_date or "").strip()
    if birth and identity.get("birth_date") and birth != identity["birth_date"]:
        out.append("birth date")
    s = str(sex or "").strip().upper()
    if s in ("F", "M") and str(identity.get("sex") or "").upper() in ("F", "M"):
        if s != str(identity["sex"]).upper():
            out.append("sex")
    return out


def series_files(con: duckdb.DuckDBPyConnection, person_id: int, series_uid: str) -> list[str]:
    """The files on record of one of her series (the Imaging page rebuilds its volume from them to
    show a 3D read); empty when the series is not hers or has no file."""
    rows = con.execute(
        "SELECT i.file_path FROM imaging_instance AS i "
        "JOIN imaging_series AS se USING (series_uid) JOIN imaging_study AS s USING (study_uid) "
        "WHERE s.person_id = ? AND i.series_uid = ? AND i.file_path IS NOT NULL "
        "ORDER BY i.file_path",
        [int(person_id), str(series_uid)],
    ).fetchall()
    return [str(r[0]) for r in rows]
