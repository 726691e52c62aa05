"""The demo clinic after a recurrence: lines of therapy ended by RECIST progression on the readings,
PFS and OS in published ranges (docs/demo-data.md), restaging every 8-12 weeks, plausible sizes,
brain MR only with brain metastases."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.survival.kaplan_meier import KaplanMeier
from sample_data.cohort import simulate_clinic
from sample_data.metastatic import MAX_FOLLOWED_MM, SCAN_MAX_DAYS, SCAN_MIN_DAYS, SUBTYPES
from sample_data.records import EPISODE_KINDS

LINE = EPISODE_KINDS.index("line")
DISEASE = EPISODE_KINDS.index("disease")
PROGRESSION = 1
DEATH = 3

# Published medians (months) the simulation is checked against; sources in docs/demo-data.md.
PFS_LINE1_MONTHS = {
    "HR+/HER2-": (18.0, 28.0),  # ET + CDK4/6i: 24.8 (PALOMA-2), 25.3 (MONALEESA-2)
    "HER2+": (14.0, 24.0),  # THP: 18.5 (CLEOPATRA)
    "triple-negative": (4.0, 8.0),  # first-line chemotherapy: 5-7.5 (KEYNOTE-355 arms)
}
OS_MONTHS = {
    "HR+/HER2-": (36.0, 66.0),  # 53.9 (PALOMA-2), 63.9 (MONALEESA-2); real-world 3-5 years
    "HER2+": (36.0, 60.0),  # 57.1 (CLEOPATRA)
    "triple-negative": (10.0, 24.0),  # 12-18 months; 23 with pembrolizumab in PD-L1+ (KEYNOTE-355)
}


@pytest.fixture(scope="module")
def clinic():
    return simulate_clinic(20_000, seed=11)


def _median_months(days: np.ndarray, event: np.ndarray) -> float:
    km = KaplanMeier.fit(days.astype(float), event.astype(bool))
    below = km.time[km.survival <= 0.5]
    assert below.size, "the median must be reached"
    return float(below[0]) / 30.44


def _by_subtype(clinic, rows: np.ndarray) -> np.ndarray:
    return clinic.patient["subtype"][clinic.episodes["person_id"][rows] - 1]


def test_pfs_of_first_line_and_os_fall_in_published_ranges(clinic):
    ep = clinic.episodes
    end = np.where(ep["end_day"] >= 0, ep["end_day"], clinic.cutoff_day)
    days = end - ep["start_day"]
    first = (ep["kind"] == LINE) & (ep["line"] == 1)
    metastatic = (ep["kind"] == DISEASE) & (ep["setting"] == 1)
    for s, name in enumerate(SUBTYPES):
        rows = np.flatnonzero(first & (_by_subtype(clinic, np.arange(days.size)) == s))
        pfs = _median_months(days[rows], ep["end_reason"][rows] == PROGRESSION)
        lo, hi = PFS_LINE1_MONTHS[name]
        assert lo <= pfs <= hi, (name, pfs)
        rows = np.flatnonzero(metastatic & (_by_subtype(clinic, np.arange(days.size)) == s))
        os_ = _median_months(days[rows], ep["end_reason"][rows] == DEATH)
        lo, hi = OS_MONTHS[name]
        assert lo <= os_ <= hi, (name, os_)
    # later lines are shorter than the first
    later = (ep["kind"] == LINE) & (ep["line"] == 3)
    assert _median_months(days[later], ep["end_reason"][later] == PROGRESSION) < _median_months(
        days[first], ep["end_reason"][first] == PROGRESSION
    )


def test_each_line_ends_where_the_readings_meet_recist(clinic):
    """A line ended by progression ends on a restaging scan that is >= 20 % and >= 5 mm over the
    smallest reading of that line; an ongoing line's readings do not meet it."""
    st, ep = clinic.studies, clinic.episodes
    ct = st["kind"] == 2
    lines = np.flatnonzero(ep["kind"] == LINE)[:3000]
    checked = unfollowed = 0
    for i in lines:
        pid, start = ep["person_id"][i], ep["start_day"][i]
        end = ep["end_day"][i]
        on = ct & (st["person_id"] == pid) & (st["day"] > start - 42)
        on &= st["day"] <= (end if end >= 0 else clinic.cutoff_day)
        mm = st["lesion_mm"][on]
        if mm.size < 2 or np.isnan(mm).any():
            continue
        nadir_before = np.minimum.accumulate(mm)[:-1]
        met = (mm[1:] >= 1.2 * nadir_before) & (mm[1:] - nadir_before >= 5.0)
        if ep["end_reason"][i] == PROGRESSION:
            if st["day"][on][-1] != end:  # the progressing lesion passed 150 mm: no longer followed
                unfollowed += 1
                continue
            assert met[-1]
            checked += 1
        elif end < 0:
            assert not met.any()
    assert checked > 500 and unfollowed < 0.02 * checked


def test_restaging_cadence_sizes_and_brain_imaging(clinic):
    st, p = clinic.studies, clinic.patient
    ct = st["kind"] == 2
    same = st["person_id"][ct][1:] == st["person_id"][ct][:-1]
    gaps = np.diff(st["day"][ct])[same]
    assert gaps.min() >= SCAN_MIN_DAYS and gaps.max() <= SCAN_MAX_DAYS  # every 8-12 weeks
    assert np.nanmax(st["lesion_mm"][ct]) <= MAX_FOLLOWED_MM  # nothing followed past 150 mm
    assert np.nanmin(st["lesion_mm"][ct]) >= 0
    # brain MR only for patients whose disease has spread, and more often in HER2+ / triple-negative
    mr = np.unique(st["person_id"][st["kind"] == 3])
    metastatic = np.unique(
        clinic.episodes["person_id"][
            (clinic.episodes["kind"] == DISEASE) & (clinic.episodes["setting"] == 1)
        ]
    )
    assert mr.size and np.isin(mr, metastatic).all()
    share = [np.isin(metastatic[p["subtype"][metastatic - 1] == s], mr).mean() for s in range(3)]
    assert share[0] < share[1] and share[0] < share[2]
    assert 0.05 <= np.isin(metastatic, mr).mean() <= 0.25  # roughly 10-15 % clinically detected


def test_every_recurrence_opens_a_metastatic_episode(clinic):
    ep, ev = clinic.episodes, clinic.events
    recurred = np.unique(ev["person_id"][ev["type"] == 0])
    opened = ep["person_id"][(ep["kind"] == DISEASE) & (ep["setting"] == 1)]
    assert np.array_equal(np.sort(opened), recurred)
    early_end = (ep["kind"] == DISEASE) & (ep["setting"] == 0) & np.isin(ep["person_id"], recurred)
    assert (ep["end_reason"][early_end] == 2).all()  # early disease ended by the recurrence
