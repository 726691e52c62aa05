"""``dashboard.figures.patient.volume_reads_table``: the one table of 3D reads that the Patient page's
timeline and the Imaging page's list both show (issue 21 leftovers: it was built twice)."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard.figures.patient import VOLUME_READ_COLUMNS, volume_reads_table


def _reads() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series_uid": ["s1", "s2"],
            "study_date": pd.to_datetime(["2024-02-10", "2024-05-22"]),
            "modality": ["MR", "MR"],
            "model_name": ["brain_mets_3d"] * 2,
            "model_version": ["1.1.0"] * 2,
            "weights_sha256": ["0123456789abcdef" * 4, None],
            "label": ["lesion", None],
            "probability": [0.91, None],
            "lesions": [2, 0],
            "total_volume_ml": [1.25, None],
            "refused": [None, "outside the training data"],
            "guard_score": [0.534, 2.71],
            "guard_threshold": [1.5, 1.5],
        }
    )


def test_each_read_in_words_with_its_input_check_and_weights() -> None:
    table = volume_reads_table(_reads(), VOLUME_READ_COLUMNS)
    assert list(table.columns) == list(VOLUME_READ_COLUMNS)
    assert table["read"].tolist() == ["lesion", "refused"]
    assert table["input_check"].tolist() == ["0.53 / 1.50", "2.71 / 1.50"]
    assert table["weights"].tolist() == ["0123456789ab", ""]
    assert [str(d) for d in table["study_date"]] == ["2024-02-10", "2024-05-22"]


def test_the_two_pages_choose_their_columns_in_their_order() -> None:
    imaging = ("study_date", "modality", "model_name", "read", "input_check")
    assert list(volume_reads_table(_reads(), imaging).columns) == list(imaging)
    with pytest.raises(ValueError, match="not a column of the 3D reads table: guard_score"):
        volume_reads_table(_reads(), ("study_date", "guard_score"))
