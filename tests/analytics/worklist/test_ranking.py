"""analytics.worklist.ranking: RECIST flags, eligibility, forecast-risk order, regrowth ratio, filters and paging."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from analytics.worklist import buckets
from analytics.worklist import ranking as worklist


def _rows(con, **kwargs) -> pd.DataFrame:
    return worklist.worklist(con, limit=100, **kwargs).rows.set_index("person_id")


def test_progression_needs_twenty_percent_and_five_mm(tiny):
    # nadir 25 -> 30: +20 % and +5 mm exactly: progression (both bounds inclusive)
    tiny.person(1)
    tiny.lesion(1, ("2020-01-01", 40.0), ("2020-04-01", 25.0), ("2020-07-01", 30.0))
    # nadir 25 -> 29.9: +19.6 %, +4.9 mm: not yet
    tiny.person(2)
    tiny.lesion(2, ("2020-01-01", 40.0), ("2020-04-01", 25.0), ("2020-07-01", 29.9))
    # nadir 20 -> 24: +20 % but only +4 mm: the absolute rule holds it back
    tiny.person(3)
    tiny.lesion(3, ("2020-01-01", 30.0), ("2020-04-01", 20.0), ("2020-07-01", 24.0))
    # nadir 50 -> 59: +9 mm but only +18 %: the relative rule holds it back
    tiny.person(4)
    tiny.lesion(4, ("2020-01-01", 50.0), ("2020-07-01", 59.0))
    rows = _rows(tiny.con)
    assert rows.loc[1, "progression"]
    assert not rows.loc[2, "progression"]
    assert not rows.loc[3, "progression"]
    assert not rows.loc[4, "progression"]
    assert rows.loc[1, "nadir_mm"] == 25.0 and rows.loc[1, "latest_mm"] == 30.0
    assert rows.loc[1, "baseline_mm"] == 40.0
    assert rows.loc[1, "change_from_nadir_pct"] == pytest.approx(20.0)
    assert rows.loc[4, "change_from_baseline_pct"] == pytest.approx(18.0)


def test_response_needs_thirty_percent_below_baseline(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2020-01-01", 40.0), ("2020-06-01", 28.0))  # -30 % exactly: response
    tiny.person(2)
    tiny.lesion(2, ("2020-01-01", 40.0), ("2020-06-01", 28.1))  # -29.75 %: no
    tiny.person(3)
    tiny.lesion(
        3, ("2020-01-01", 50.0), ("2020-03-01", 30.0), ("2020-06-01", 35.0)
    )  # -30 %, regrowing
    rows = _rows(tiny.con)
    assert rows.loc[1, "response"] and not rows.loc[2, "response"]
    assert rows.loc[3, "response"] and not rows.loc[3, "progression"]  # 35 < 1.2 * 30 = 36


def test_series_order_comes_from_dates_not_insertion(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2021-01-01", 33.0), ("2020-01-01", 20.0), ("2020-06-01", 22.0))
    tiny.measurement(1, "2021-06-01", "ca15_3", 900.0, "U/mL")  # other concepts are ignored
    row = _rows(tiny.con).loc[1]
    assert (row["baseline_mm"], row["nadir_mm"], row["latest_mm"]) == (20.0, 20.0, 33.0)
    assert row["n_measurements"] == 3
    assert str(row["latest_date"].date()) == "2021-01-01"
    assert row["progression"]  # +13 mm, +65 %


def test_only_living_followed_patients_are_listed_recurrence_included(tiny):
    tiny.person(1)
    tiny.lesion(1, ("2020-01-01", 20.0))
    tiny.person(2)  # recurrence recorded: listed (recurrence is what the care team must see)
    tiny.lesion(2, ("2020-01-01", 20.0))
    tiny.event(2, "recurrence", "2021-01-01")
    tiny.person(3, end_reason="death")  # died, no event row
    tiny.lesion(3, ("2020-01-01", 20.0))
    tiny.person(4)  # death event
    tiny.lesion(4, ("2020-01-01", 20.0))
    tiny.event(4, "death", "2021-01-01")
    tiny.person(5)  # diagnosed, never measured: followed by surveillance imaging
    tiny.person(6, end_reason="lost_to_follow_up")  # no longer followed here
    tiny.lesion(6, ("2020-01-01", 20.0))
    page = worklist.worklist(tiny.con)
    assert sorted(page.rows["person_id"]) == [1, 2, 5]
    assert page.total == 3
    rows = page.rows.set_index("person_id")
    assert str(rows.loc[2, "recurrence_date"].date()) == "2021-01-01"
    assert rows.loc[2, "event_kind"] == "recurrence"
    assert rows.loc[5, "n_measurements"] == 0 and not rows.loc[5, "progression"]


def test_progression_ends_the_line_and_the_nadir_starts_over(tiny):
    """RECIST line by line: after a progression, the next reading is judged against the new line."""
    tiny.person(1)  # 20 -> 30 (PD, new line from 30) -> 33: +10 % on the new line, no PD
    tiny.lesion(1, ("2020-01-01", 20.0), ("2020-04-01", 30.0), ("2020-07-01", 33.0))
    tiny.person(2)  # 20 -> 30 (PD) -> 25 -> 31: +24 % and +6 mm over the new nadir 25: PD again
    tiny.lesion(
        2, ("2020-01-01", 20.0), ("2020-04-01", 30.0), ("2020-07-01", 25.0), ("2020-10-01", 31.0)
    )
    rows = _rows(tiny.con)
    one, two = rows.loc[1], rows.loc[2]
    assert not one["progression"] and one["n_progressions"] == 1
    assert str(one["progression_date"].date()) == "2020-04-01"
    assert str(one["line_start"].date()) == "2020-04-01"
    assert (one["baseline_mm"], one["nadir_mm"]) == (30.0, 30.0)
    assert two["progression"] and two["n_progressions"] == 2
    assert str(two["progression_date"].date()) == "2020-10-01"
    assert (two["baseline_mm"], two["nadir_mm"], two["latest_mm"]) == (30.0, 25.0, 31.0)
    assert str(two["line_start"].date()) == "2020-10-01"


def test_regrowth_ratio_is_latest_over_nadir(tiny):
    for pid, readings in {
        1: [("2020-01-01", 10.0), ("2020-06-01", 15.0)],  # 1.5
        2: [("2020-01-01", 10.0), ("2020-06-01", 30.0)],  # 3.0
        3: [("2020-01-01", 10.0), ("2020-06-01", 5.0)],  # 1.0 (nadir is the latest)
        4: [("2020-01-01", 20.0), ("2020-06-01", 30.0)],  # 1.5
        5: [("2020-01-01", 8.0), ("2020-03-01", 0.0), ("2020-06-01", 6.0)],  # 0 mm nadir: 6 / 1 mm
        6: [("2020-01-01", 8.0), ("2020-03-01", 0.0), ("2020-06-01", 4.0)],  # 4 / 1 mm
    }.items():
        tiny.person(pid)
        tiny.lesion(pid, *readings)
    rows = worklist.worklist(tiny.con).rows.set_index("person_id")
    assert rows.loc[[1, 2, 3, 4, 5, 6], "regrowth_ratio"].tolist() == pytest.approx(
        [1.5, 3.0, 1.0, 1.5, 6.0, 4.0]
    )
    flags = rows["progression"]
    # Regrowth after complete disappearance: progression once it reaches 5 mm (RECIST's absolute rule).
    assert flags[5] and not flags[6]
    assert pd.isna(rows.loc[5, "change_from_nadir_pct"])  # % of 0 mm: undefined


def test_rank_follows_the_forecast_risk(tiny):
    """A lesion regrowing fast outranks a stable one and a shrinking one; risks are probabilities."""
    tiny.person(1)  # shrinking steadily
    tiny.lesion(
        1, ("2023-01-01", 40.0), ("2023-05-01", 30.0), ("2023-09-01", 22.0), ("2024-01-01", 17.0)
    )
    tiny.person(2)  # regrowing from its nadir, not yet progression (23.5 < 1.2 x 20)
    tiny.lesion(
        2, ("2023-01-01", 30.0), ("2023-05-01", 20.0), ("2023-09-01", 22.0), ("2024-01-01", 23.5)
    )
    tiny.person(3)  # flat
    tiny.lesion(
        3, ("2023-01-01", 25.0), ("2023-05-01", 25.0), ("2023-09-01", 25.0), ("2024-01-01", 25.0)
    )
    tiny.con.execute("INSERT INTO clinic_metadata VALUES ('data_cutoff', '2024-01-15')")
    rows = worklist.worklist(tiny.con).rows
    assert rows["person_id"].iloc[0] == 2
    assert rows["risk_6m"].between(0, 1).all()
    assert rows["risk_6m"].is_monotonic_decreasing
    risk = rows.set_index("person_id")["p_progression_6m"]
    assert risk[2] > 0.5 > risk[1]
    assert set(rows["risk_parts"]) == {"tumour"}  # no treatment model given: tumour part only


def test_site_filter_progression_filter_and_paging(tiny):
    for pid in range(1, 11):
        tiny.person(pid, site="North" if pid % 2 else "South")
        latest = 10.0 + pid  # 11..20 mm over a 10 mm nadir
        tiny.lesion(pid, ("2020-01-01", 10.0), ("2020-06-01", latest))
    north = worklist.worklist(tiny.con, site="North")
    assert set(north.rows["site"]) == {"North"} and north.total == 5
    progressing = worklist.worklist(tiny.con, only_progression=True)
    assert progressing.total == 6  # +5..+10 mm are >= 5 mm and >= 50 %
    assert progressing.rows["progression"].all()
    first = worklist.worklist(tiny.con, limit=3, offset=0)
    second = worklist.worklist(tiny.con, limit=3, offset=3)
    whole = worklist.worklist(tiny.con, limit=10).rows["person_id"].tolist()
    assert first.total == second.total == 10
    assert first.rows["person_id"].tolist() == whole[:3]
    assert second.rows["person_id"].tolist() == whole[3:6]
    past_end = worklist.worklist(tiny.con, limit=3, offset=30)
    assert past_end.rows.empty and past_end.total == 10
    assert list(past_end.rows.columns) == list(worklist.WORKLIST_COLUMNS)
    assert worklist.sites(tiny.con) == ["North", "South"]
    assert worklist.worklist(tiny.con, site="Nowhere").total == 0


def _recist_by_line(values) -> tuple[bool, bool, float, int]:
    """RECIST 1.1 line by line, one reading at a time (the reference for the vectorised code)."""
    base = nadir = None
    progressed = False
    count = 0
    for v in values:
        if nadir is None:
            base = nadir = v
            progressed = False
            continue
        progressed = v >= 1.2 * nadir and v - nadir >= 5
        if progressed:
            count += 1
            shown_base, shown_nadir = base, nadir
            base = nadir = v
        else:
            nadir = min(nadir, v)
            shown_base, shown_nadir = base, nadir
    if len(values) == 1:
        shown_base = shown_nadir = values[0]
    latest = values[-1]
    return (
        progressed,
        bool(latest <= 0.7 * shown_base),
        latest / max(shown_nadir, 1.0),
        count,
    )


def test_matches_an_independent_pandas_computation(demo_con):
    """The whole demo list, recomputed patient by patient in plain Python."""
    m = demo_con.execute(
        "SELECT person_id, measurement_date, value FROM measurement "
        "WHERE concept = 'lesion_longest_diameter' ORDER BY person_id, measurement_date, measurement_id"
    ).df()
    listed = set(
        demo_con.execute(
            "SELECT person_id FROM person WHERE person_id NOT IN ("
            "SELECT person_id FROM outcome_event WHERE event_type = 'death' UNION "
            "SELECT person_id FROM observation_period WHERE end_reason <> 'data_cutoff') "
            "AND (person_id IN (SELECT person_id FROM condition_occurrence) "
            "OR person_id IN (SELECT person_id FROM measurement WHERE concept = 'lesion_longest_diameter'))"
        ).df()["person_id"]
    )
    expected = {
        pid: _recist_by_line(series["value"].tolist())
        for pid, series in m.groupby("person_id")
        if pid in listed
    }
    page = worklist.worklist(demo_con, limit=10_000)
    assert page.total == len(listed) > 0
    got = page.rows.set_index("person_id")
    for pid, (progression, response, ratio, count) in expected.items():
        assert got.loc[pid, "progression"] == progression, pid
        assert got.loc[pid, "response"] == response, pid
        assert got.loc[pid, "regrowth_ratio"] == pytest.approx(ratio), pid
        assert got.loc[pid, "n_progressions"] == count, pid
    assert page.rows["risk_6m"].dropna().is_monotonic_decreasing
    assert (page.rows["risk_6m"] >= 0.999).mean() < 0.2  # the old list had two thirds at 100 %


def test_the_risk_after_a_progression_is_forecast_from_the_new_line(tiny):
    """Her risk uses only the readings of her current line: the same as a patient whose record
    starts at that line (up to the Monte-Carlo error of the draws)."""
    tiny.person(1)  # progressed on 2023-05-01; the new line is 30 -> 33
    tiny.lesion(1, ("2023-01-01", 20.0), ("2023-05-01", 30.0), ("2023-09-01", 33.0))
    tiny.person(2)  # the same line on its own
    tiny.lesion(2, ("2023-05-01", 30.0), ("2023-09-01", 33.0))
    tiny.con.execute("INSERT INTO clinic_metadata VALUES ('data_cutoff', '2023-10-01')")
    rows = _rows(tiny.con)
    assert rows.loc[1, "n_progressions"] == 1 and rows.loc[2, "n_progressions"] == 0
    assert rows.loc[1, "p_progression_6m"] == pytest.approx(
        rows.loc[2, "p_progression_6m"], abs=0.08
    )


def test_after_a_recurrence_the_cadence_is_her_restaging_not_her_surveillance_years(tiny):
    """Yearly readings, then a recurrence: the next scan is due in about 12 weeks, not a year."""
    tiny.person(1)  # yearly, then recurred 2021-03-01, one restaging reading since
    tiny.lesion(1, ("2018-03-01", 20.0), ("2019-03-01", 20.0), ("2020-03-01", 20.0))
    tiny.event(1, "recurrence", "2021-03-01")
    tiny.lesion(1, ("2021-03-10", 25.0))
    tiny.person(2)  # recurred, then CT every 8 weeks: her own cadence
    tiny.lesion(2, ("2018-03-01", 20.0), ("2019-03-01", 20.0))
    tiny.event(2, "recurrence", "2021-01-01")
    tiny.lesion(2, ("2021-01-05", 30.0), ("2021-03-02", 28.0), ("2021-04-27", 27.0))
    tiny.person(3)  # never recurred: yearly
    tiny.lesion(3, ("2018-03-01", 20.0), ("2019-03-01", 20.0), ("2020-03-01", 20.0))
    rows = _rows(tiny.con)
    assert rows.loc[1, "cadence_days"] == 84.0  # too few dates since: restaging every 12 weeks
    assert str(rows.loc[1, "due_date"].date()) == "2021-06-16"  # 2021-03-10 + 84 + 14 days
    assert rows.loc[2, "cadence_days"] == 56.0
    assert 364 <= rows.loc[3, "cadence_days"] <= 366


def test_a_recurrence_never_imaged_is_due_from_the_recurrence_and_says_so(tiny):
    """No imaging at all after a recurrence: due 12 weeks (+ 2 weeks' grace) after it, in words."""
    tiny.person(1)
    tiny.event(1, "recurrence", "2021-03-01")
    row = _rows(tiny.con).loc[1]
    assert str(row["due_date"].date()) == "2021-06-07" and pd.isna(row["last_imaging_date"])
    text = buckets.reason({**row.to_dict(), "bucket": "due"}, dt.date(2021, 7, 1))
    assert (
        text == "Imaging overdue, 24 days past due: not imaged since the recurrence on 2021-03-01."
    )


def test_on_best_supportive_care_no_imaging_is_due(tiny):
    """Restaging every 8 weeks until best supportive care began, then none: never "due" (a nurse
    would book a scan for a patient in palliative care), and her row says why; the same patient
    still on a line of therapy is overdue."""
    for pid in (1, 2):
        tiny.person(pid)
        tiny.event(pid, "recurrence", "2021-01-01")
        tiny.lesion(pid, ("2021-01-05", 30.0), ("2021-03-02", 33.0), ("2021-04-27", 40.0))
        tiny.con.execute(
            "INSERT INTO episode VALUES (?, ?, 'metastatic', 'line', 1, '2021-01-10', ?, ?, 'x', 'import')",
            [10 * pid, pid, "2021-04-27", "progression"],
        )
    tiny.con.execute(
        "INSERT INTO episode VALUES (100, 1, 'metastatic', 'best_supportive_care', NULL, '2021-04-28', "
        "NULL, NULL, NULL, 'import')"
    )
    tiny.con.execute("INSERT INTO clinic_metadata VALUES ('data_cutoff', '2022-01-01')")
    rows = _rows(tiny.con)
    assert pd.isna(rows.loc[1, "due_date"]) and pd.isna(rows.loc[1, "cadence_days"])
    assert str(rows.loc[2, "due_date"].date()) == "2021-07-06"  # 2021-04-27 + 56 + 14 days
    text = buckets.reason({**rows.loc[1].to_dict(), "bucket": "by_risk"}, dt.date(2022, 1, 1))
    assert text.endswith("; best supportive care: no imaging scheduled.")
    # in the stored worklist's buckets (refreshed as the app does): only the patient on a line is due
    from analytics.worklist import stored  # here: the rest of this module tests the ranking alone

    stored.refresh(tiny.con)
    page = buckets.read_page(tiny.con, dt.date(2022, 1, 1), limit=10).rows.set_index("person_id")
    assert page.loc[2, "bucket"] == "due" and page.loc[1, "bucket"] != "due"


def test_a_death_or_recurrence_recorded_after_the_cut_off_is_never_hidden(tiny):
    """Imports do not move the store's data cut-off: a death recorded after it still takes her off
    the list (a nurse must never call a patient who has died), a recurrence still counts."""
    tiny.person(1)
    tiny.lesion(1, ("2024-01-10", 20.0), ("2024-04-10", 21.0))
    tiny.event(1, "death", "2024-09-01")
    tiny.person(2)
    tiny.lesion(2, ("2024-01-10", 20.0), ("2024-04-10", 21.0))
    tiny.event(2, "recurrence", "2024-08-01")
    tiny.con.execute("INSERT INTO clinic_metadata VALUES ('data_cutoff', '2024-06-30')")
    rows = _rows(tiny.con)
    assert 1 not in rows.index
    assert str(rows.loc[2, "recurrence_date"])[:10] == "2024-08-01"
