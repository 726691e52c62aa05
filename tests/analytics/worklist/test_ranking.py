"""analytics.worklist.ranking: RECIST flags, eligibility, forecast-risk order, regrowth ratio, filters and paging."""

from __future__ import annotations

import pandas as pd
import pytest

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


def test_only_living_measured_patients_are_listed(tiny):
    """A recurrence keeps a patient on the list (issue 17): her lesion is what is followed."""
    tiny.person(1)
    tiny.lesion(1, ("2020-01-01", 20.0))
    tiny.person(2)  # recurrence recorded
    tiny.lesion(2, ("2020-01-01", 20.0))
    tiny.event(2, "recurrence", "2021-01-01")
    tiny.person(3, end_reason="death")  # died, no event row
    tiny.lesion(3, ("2020-01-01", 20.0))
    tiny.person(4)  # death event
    tiny.lesion(4, ("2020-01-01", 20.0))
    tiny.event(4, "death", "2021-01-01")
    tiny.person(5)  # never measured
    tiny.person(6, end_reason="lost_to_follow_up")  # alive at last follow-up
    tiny.lesion(6, ("2020-01-01", 20.0))
    page = worklist.worklist(tiny.con)
    assert sorted(page.rows["person_id"]) == [1, 2, 6]
    assert page.total == 3


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
    tiny.person(2)  # regrowing fast from its nadir
    tiny.lesion(
        2, ("2023-01-01", 30.0), ("2023-05-01", 20.0), ("2023-09-01", 24.0), ("2024-01-01", 33.0)
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


def test_matches_an_independent_pandas_computation(demo_con):
    """The whole demo list, recomputed patient by patient in pandas."""
    m = demo_con.execute(
        "SELECT person_id, measurement_date, value FROM measurement "
        "WHERE concept = 'lesion_longest_diameter' ORDER BY person_id, measurement_date"
    ).df()
    excluded = set(
        demo_con.execute(
            "SELECT person_id FROM outcome_event WHERE event_type = 'death' UNION "
            "SELECT person_id FROM observation_period WHERE end_reason = 'death'"
        ).df()["person_id"]
    )
    # each metastatic line restarts RECIST: only the current line's readings (from its baseline
    # scan, six weeks before the line) count
    lines = demo_con.execute(
        "SELECT person_id, start_date FROM treatment_exposure WHERE line_of_therapy >= 2"
    ).df()
    series_from = pd.to_datetime(lines.groupby("person_id")["start_date"].max()) - pd.Timedelta(
        days=42
    )
    expected = {}
    for pid, series in m.groupby("person_id"):
        if pid in excluded:
            continue
        if pid in series_from.index:
            series = series[pd.to_datetime(series["measurement_date"]) >= series_from[pid]]
        values = series["value"].to_numpy()
        baseline, latest, nadir = values[0], values[-1], values.min()
        expected[pid] = (
            latest >= 1.2 * nadir and latest - nadir >= 5,
            latest <= 0.7 * baseline,
            latest / max(nadir, 1.0),
        )
    page = worklist.worklist(demo_con, limit=10_000)
    assert page.total == len(expected) > 0
    got = page.rows.set_index("person_id")
    for pid, (progression, response, ratio) in expected.items():
        assert got.loc[pid, "progression"] == progression, pid
        assert got.loc[pid, "response"] == response, pid
        assert got.loc[pid, "regrowth_ratio"] == pytest.approx(ratio), pid
    assert page.rows["risk_6m"].is_monotonic_decreasing
