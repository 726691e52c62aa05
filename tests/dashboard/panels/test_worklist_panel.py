"""The Patient page's "what changed" lines (dashboard.panels.worklist): each kind said as what it is."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from analytics.worklist.changes import RecordChanges
from dashboard.panels import worklist as panel


def _changes(ai_reads: pd.DataFrame) -> RecordChanges:
    empty = pd.DataFrame()
    return RecordChanges(
        since=None,
        window_start=dt.datetime(2026, 4, 1),
        as_of=dt.date(2026, 6, 30),
        readings=pd.DataFrame(columns=["measurement_date", "concept", "value", "unit"]),
        ai_reads=ai_reads,
        events=pd.DataFrame(columns=["event_date", "event_type"]),
        decisions=pd.DataFrame(columns=["decided_at", "chosen", "actor"]),
        counts={"ai_reads": len(ai_reads), "readings": 0, "events": 0, "decisions": len(empty)},
    )


def test_a_3d_read_says_what_it_measured_not_its_uncalibrated_voxel_probability():
    """A 3D read's probability is its most confident voxel (1.0 on any clear lesion): shown as
    "100 %" beside the 2D reads' calibrated figures it read as certainty. It now says the volume
    and the study; a 2D read keeps its calibrated probability, said to be calibrated."""
    reads = pd.DataFrame(
        {
            "created_at": [pd.Timestamp("2026-06-02 10:00"), pd.Timestamp("2026-06-01 09:00")] * 2,
            "model_name": ["brain_mets_3d", "brain_mets_3d", "mammography", "brain_mets_3d"],
            "predicted_class": ["lesion", "no lesion", "malignant", "lesion"],
            "probability": [0.99996, 0.31, 0.87, 0.9],
            "volume_read": [True, True, False, True],
            "study_date": [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-09-01"), pd.NaT]
            + [pd.Timestamp("2025-01-01")],
            "total_volume_ml": [2.4512, None, None, None],
        }
    )
    lines = panel._change_lines(_changes(reads))
    assert lines[0] == (
        "3D AI read **lesion**, 2.45 mL in total (brain_mets_3d, series of the study of "
        "2024-03-01) on 2026-06-02 10:00 UTC"
    )
    assert lines[1].startswith(
        "3D AI read **no lesion** (brain_mets_3d, series of the study of 2024-09-01)"
    )
    assert lines[2] == "AI read **malignant** (87% calibrated, mammography) on 2026-06-02 10:00 UTC"
    assert "mL" not in lines[3]  # a lesion read without a stored volume says none
    assert not any("%" in line for line in (lines[0], lines[1], lines[3]))
