"""dashboard.figures.formats: one way to write each kind of number, never "None", never "-0"."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from dashboard.figures import formats


def test_missing_values_read_as_a_dash_or_the_callers_words():
    for missing in (None, math.nan, pd.NA, pd.NaT):
        assert formats.pct(missing) == formats.MISSING == "—"
        assert formats.mm(missing) == "—" and formats.date(missing) == "—"
        assert formats.interval(missing, 3) == "—"
    assert formats.pct(None, missing="n/a") == "n/a"
    assert formats.version(None) == "version not recorded" and formats.version("v3") == "v3"


def test_rounding_is_the_same_everywhere_and_never_negative_zero():
    assert formats.pct(0.714) == "71 %" and formats.pct(0.7149, 1) == "71.5 %"
    assert formats.interval(-0.3, 7.2) == "0 to 7"  # "plausible range -0 to 7" never
    assert formats.interval(-2.4, 7.2) == "-2 to 7"
    assert formats.interval(-1.0, 4.0, 1, "mm", floor=0) == "0.0 to 4.0 mm"
    assert formats.mm(-0.01) == "0.0 mm" and formats.mm(30.94) == "30.9 mm"
    assert formats.signed(-0.2) == "0" and formats.signed(3.4) == "+3"
    assert formats.pct_interval(0.62, 0.81) == "62–81 %"


def test_dates_are_iso_whatever_they_arrive_as():
    assert formats.date(dt.date(2026, 5, 18)) == "2026-05-18"
    assert formats.date(pd.Timestamp("2026-05-18 13:00")) == "2026-05-18"
    assert formats.date("2026-05-18") == "2026-05-18"


def test_fill_missing_replaces_missing_text_cells_only():
    frame = pd.DataFrame({"recommended": ["a", None], "n": [1.0, math.nan]})
    shown = formats.fill_missing(frame)
    assert shown["recommended"].tolist() == ["a", "—"]
    assert math.isnan(shown["n"].iloc[1])  # numbers keep their type (the grid leaves them blank)
    assert frame["recommended"].iloc[1] is None  # the input is not changed


def test_fill_missing_shows_dates_as_dates_and_times_to_the_minute():
    """A treatment table's start dates arrive as midnight timestamps: shown as dates, an open end as the
    missing mark, never "2026-03-02 00:00:00" or "None"; real times keep their minute."""
    frame = pd.DataFrame(
        {
            "start_date": pd.to_datetime(["2026-03-02", "2026-04-01"]),
            "end_date": pd.to_datetime(["2026-05-02", None]),
            "read_at": pd.to_datetime(["2026-03-02 14:05:09", None]),
            "day": [dt.date(2026, 3, 2), None],
        }
    )
    shown = formats.fill_missing(frame)
    assert shown["start_date"].tolist() == ["2026-03-02", "2026-04-01"]
    assert shown["end_date"].tolist() == ["2026-05-02", formats.MISSING]
    assert shown["read_at"].tolist() == ["2026-03-02 14:05", formats.MISSING]
    assert shown["day"].tolist() == ["2026-03-02", formats.MISSING]
