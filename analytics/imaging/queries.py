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
