"""analytics.forecast.data: series per line of therapy (``lesion_segments``) and the current line chosen
as of a day (``lesion_frame``, ``patient_record``), by hand on a tiny store; a store without lines."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from analytics.forecast.data import (
    clean,
    clean_segments,
    lesion_frame,
    lesion_segments,
    patient_record,
)
from analytics.forecast.tumour import LesionSeries, patient_halves


def _metastatic(tiny) -> None:
    """Patient 1: adjuvant line 1 (2018), recurrence read 2021-04-16, metastatic line 2 from
    2021-05-13, progression read 2021-09-11, line 3 from 2021-10-07."""
    tiny.person(1, diagnosis="2018-03-01", end="2023-01-01")
    tiny.treatment(1, 1, "surgery", None, "2018-04-21", "2018-04-21")
    tiny.treatment(1, 1, "endocrine", "endocrine", "2018-05-21", "2021-04-16")
    tiny.treatment(1, 2, "chemotherapy", None, "2021-05-13", "2021-09-11")
    tiny.treatment(1, 3, "chemotherapy", None, "2021-10-07", None)
    tiny.lesion(
        1,
        ("2021-04-16", 20.0),  # baseline of line 2 (27 days before it)
        ("2021-07-02", 12.0),
        ("2021-09-11", 37.6),  # progression: the last of line 2, the baseline of line 3
        ("2021-11-19", 37.5),
        ("2022-02-08", 41.9),
    )


def test_segments_by_hand(tiny):
    _metastatic(tiny)
    # patient 2: a store without lines of therapy after line 1 (one series from line 1, as before)
    tiny.person(2, end="2023-01-01")
    tiny.treatment(2, 1, "chemotherapy", "chemotherapy", "2020-02-01", None)
    tiny.lesion(2, ("2020-01-20", 30.0), ("2020-04-01", 25.0), ("2020-07-01", 24.0))
    # patient 3: no treatment at all: one series timed from her first reading
    tiny.person(3, end="2023-01-01")
    tiny.lesion(3, ("2020-01-01", 30.0), ("2020-03-01", 31.0))
    seg = lesion_segments(tiny.con, "all")
    one = seg[seg["person_id"] == 1]
    # the line-1 segment held only the reading at recurrence (line 2's baseline): left out
    assert one["line"].tolist() == [2, 2, 2, 3, 3, 3]
    assert one["mm"].tolist() == [20.0, 12.0, 37.6, 37.6, 37.5, 41.9]
    assert seg.loc[seg["person_id"] == 2, "line"].tolist() == [1, 1, 1]
    assert seg.loc[seg["person_id"] == 3, "line"].tolist() == [0, 0]
    assert seg["series_id"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    kept = clean_segments(seg, dt.date(2023, 1, 1))
    line3 = kept[kept["series_id"] == 1]
    assert line3["t_days"].tolist() == [-26.0, 43.0, 124.0]  # days from 2021-10-07
    assert set(kept.loc[kept["person_id"] == 3, "timed_from"]) == {"first_measurement"}
    series = LesionSeries.from_long(kept, by="series_id")
    assert series.person_id.tolist() == [0, 1, 2, 3] and series.patient.tolist() == [1, 1, 2, 3]
    halves = patient_halves(series, seed=5)
    assert halves[0] == halves[1]  # both lines of patient 1 on one side
    # as of a day before line 3 started, line 2 runs on: its segment has no end yet
    early = lesion_segments(tiny.con, "all", as_of=dt.date(2021, 9, 30))
    assert early.loc[early["person_id"] == 1, "line"].tolist() == [2, 2, 2, 2, 2]


def test_the_current_line_is_chosen_as_of_the_day(tiny):
    _metastatic(tiny)
    late = lesion_frame(tiny.con, "all")
    assert late["mm"].tolist() == [37.6, 37.5, 41.9]  # line 3, from its baseline
    assert set(late["treatment_start"]) == {pd.Timestamp("2021-10-07")}
    for as_of in (dt.date(2021, 9, 30), dt.date(2021, 10, 6)):  # line 3 not started yet
        frame = lesion_frame(tiny.con, "all", as_of=as_of)
        assert frame["mm"].tolist()[:3] == [20.0, 12.0, 37.6]
        assert set(frame["treatment_start"]) == {pd.Timestamp("2021-05-13")}
        one = lesion_frame(tiny.con, "one", (1,), as_of)
        assert one["mm"].tolist() == frame["mm"].tolist()
        record = patient_record(tiny.con, 1, as_of)
        assert record is not None and record.mm.tolist() == frame["mm"].tolist()
        day = (np.datetime64("2021-05-13") - np.datetime64("1970-01-01")).astype(int)
        assert record.treatment_start_day == float(day)
    on_day = lesion_frame(tiny.con, "all", as_of=dt.date(2021, 10, 7))  # started that day
    assert set(on_day["treatment_start"]) == {pd.Timestamp("2021-10-07")}
    kept, _ = clean(on_day, dt.date(2021, 10, 7))
    assert kept["mm"].tolist() == [37.6] and isinstance(kept, pd.DataFrame)
