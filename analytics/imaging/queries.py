"""Which images the store knows a file for, and what the AI said about them.

Why a separate query from the patient summary: the Imaging page needs file
paths and the latest AI finding per instance, which the patient record
(timeline, treatments) does not; keeping them apart keeps both queries small.
"""

from __future__ import annotations

import duckdb
import pandas as pd

_IMAGES = """
    SELECT s.person_id, s.study_date, se.modality, s.description AS study_description,
           se.body_part, i.sop_instance_uid, i.file_path, i.rows, i.columns, i.pixel_spacing_mm,
           f.model_name, f.model_version, f.predicted_class, f.probability,
           f.longest_diameter_mm AS ai_longest_diameter_mm, s.study_uid
    FROM {studies} AS s
    JOIN imaging_series AS se USING (study_uid)
    JOIN imaging_instance AS i USING (series_uid)
    LEFT JOIN (
        SELECT * FROM ai_finding
        QUALIFY row_number() OVER (PARTITION BY sop_instance_uid ORDER BY created_at DESC, finding_id DESC) = 1
    ) AS f USING (sop_instance_uid)
    WHERE i.file_path IS NOT NULL
"""


def patient_images(con: duckdb.DuckDBPyConnection, person_id: int) -> pd.DataFrame:
    """A patient's images with a file on record, newest study first, with the latest AI finding if any."""
    sql = _IMAGES.format(studies="(SELECT * FROM imaging_study WHERE person_id = ?)")
    return con.execute(
        sql + " ORDER BY s.study_date DESC, i.sop_instance_uid", [int(person_id)]
    ).df()


def recent_images(con: duckdb.DuckDBPyConnection, limit: int = 30) -> pd.DataFrame:
    """The clinic's most recent images with a file on record (for a page with no patient chosen)."""
    limit = max(1, min(int(limit), 500))
    sql = _IMAGES.format(studies="imaging_study")
    return con.execute(
        sql + " ORDER BY s.study_date DESC, i.sop_instance_uid LIMIT ?", [limit]
    ).df()


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
