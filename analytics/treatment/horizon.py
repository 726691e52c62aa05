"""Time units and the decision horizon, read from the data instead of fixed in code.

Why: a trial with one year of follow-up cannot support "5-year RFS", and a trial
recorded in weeks read as days silently shrinks every time sevenfold. So:

- ``to_days(values, unit)`` converts a time column from its own unit (days, weeks,
  months, years) and ``unit_warnings`` flags follow-up that is implausible for the
  stated unit (a hint that the unit is wrong), refusing what cannot be right;
- ``choose_horizon`` picks the decision horizon: the largest standard horizon
  (1, 2, 3 or 5 years) at which enough patients are still followed, event-free,
  to estimate survival there. "Enough": at least ``MIN_AT_RISK`` patients and at
  least ``MIN_AT_RISK_FRACTION`` of the cohort, followed to within 3 % of the horizon
  (``REACH_TOLERANCE``: a one-year visit may fall a few days early). A horizon asked for explicitly is
  refused with a message when follow-up does not reach it, or when too few patients
  remain at risk;
- ``horizon_label`` names a horizon in every label and sentence ("3-year RFS").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from analytics.survival.constants import DAYS_PER_YEAR
from analytics.treatment.data import SurvivalTable, TreatmentDataError

DAYS_PER_UNIT: Final[dict[str, float]] = {
    "days": 1.0,
    "weeks": 7.0,
    "months": DAYS_PER_YEAR / 12.0,
    "years": DAYS_PER_YEAR,
}
STANDARD_HORIZONS_YEARS: Final = (1, 2, 3, 5)
MIN_AT_RISK: Final = 30
MIN_AT_RISK_FRACTION: Final = 0.10
# Follow-up of an oncology trial, once in days: beyond 40 years no unit can be right; under
# a year it is short enough that weeks or months read as days are the likelier story (a
# 4-year trial in weeks reads as 208 days). A flag, not a refusal: some trials are that short.
MAX_PLAUSIBLE_FOLLOW_UP_DAYS: Final = 40 * DAYS_PER_YEAR
SHORT_FOLLOW_UP_DAYS: Final = DAYS_PER_YEAR
# A patient followed to within 3 % of a horizon counts as reaching it: a one-year visit may
# fall a few days early (a trial that stops at day 364 still has one year of follow-up).
REACH_TOLERANCE: Final = 0.03


def to_days(values: np.ndarray, unit: str) -> np.ndarray:
    """Times in ``unit`` (days, weeks, months, years) as days; an unknown unit is a ``TreatmentDataError``."""
    try:
        factor = DAYS_PER_UNIT[unit]
    except KeyError:
        raise TreatmentDataError(
            f"unknown time unit {unit!r}; use one of {', '.join(DAYS_PER_UNIT)}"
        ) from None
    return np.asarray(values, dtype=float) * factor


def unit_warnings(time_days: np.ndarray, unit: str) -> list[dict]:
    """Warnings about a time column whose stated unit looks wrong; refuses follow-up beyond 40 years."""
    longest = float(np.max(time_days))
    if longest > MAX_PLAUSIBLE_FOLLOW_UP_DAYS:
        raise TreatmentDataError(
            f"with --time-unit {unit} the longest follow-up is {longest / DAYS_PER_YEAR:,.0f} years: "
            "that cannot be right; give the unit the time column is recorded in"
        )
    if longest < SHORT_FOLLOW_UP_DAYS:
        smaller = [u for u, f in DAYS_PER_UNIT.items() if f > DAYS_PER_UNIT[unit]]
        hint = f" If the column counts {' or '.join(smaller)}, give --time-unit." if smaller else ""
        return [
            {
                "check": "time_unit",
                "message": f"the longest follow-up is {longest:.0f} days ({longest / DAYS_PER_YEAR * 12:.1f} "
                f"months) read as {unit}: short for a trial.{hint}",
                "longest_follow_up_days": round(longest, 1),
            }
        ]
    return []


def horizon_label(horizon_days: float) -> str:
    """ "5-year", "18-month" or "100-day": how the horizon is named in labels and sentences."""
    years = horizon_days / DAYS_PER_YEAR
    if abs(years - round(years)) < 1e-6 and round(years) >= 1:
        return f"{round(years)}-year"
    months = years * 12
    if abs(months - round(months)) < 1e-6 and round(months) >= 1:
        return f"{round(months)}-month"
    return f"{horizon_days:.0f}-day"


@dataclass(frozen=True)
class Horizon:
    """The decision horizon and why: days, its label, patients still at risk there, the rule."""

    days: float
    label: str
    at_risk: int
    patients: int
    longest_follow_up_days: float
    chosen_by: str  # "data" (the default rule) or "user"

    def to_json(self) -> dict:
        return {
            "horizon_days": round(self.days, 3),
            "label": f"{self.label} RFS",
            "at_risk_at_horizon": self.at_risk,
            "patients": self.patients,
            "longest_follow_up_days": round(self.longest_follow_up_days, 1),
            "chosen_by": self.chosen_by,
            "rule": f"the largest of {', '.join(map(str, STANDARD_HORIZONS_YEARS))} years at which at "
            f"least {MIN_AT_RISK} patients and {MIN_AT_RISK_FRACTION:.0%} of the cohort are still "
            "followed without an event",
        }


def _needed(n: int) -> int:
    return max(MIN_AT_RISK, int(np.ceil(MIN_AT_RISK_FRACTION * n)))


def _longest_supported(time_days: np.ndarray, need: int) -> float:
    """The longest horizon (days) at which ``need`` patients are still followed."""
    return float(np.sort(time_days)[::-1][min(need, time_days.size) - 1])


def choose_horizon(time_days: np.ndarray, horizon_days: float | None = None) -> Horizon:
    """The decision horizon of a cohort (``time_days``: follow-up to event or censoring, days).

    ``horizon_days`` None: the largest standard horizon with enough patients at risk; a
    ``TreatmentDataError`` when not even one year qualifies. Given: used if follow-up
    supports it, refused with the reason otherwise.
    """
    time_days = np.asarray(time_days, dtype=float)
    n, longest = time_days.size, float(time_days.max())
    need = _needed(n)

    def at_risk(h: float) -> int:
        return int((time_days >= h * (1 - REACH_TOLERANCE)).sum())

    if horizon_days is not None:
        h = float(horizon_days)
        if h <= 0:
            raise TreatmentDataError("the horizon must be a positive number of days")
        label = horizon_label(h)
        if h * (1 - REACH_TOLERANCE) > longest:
            raise TreatmentDataError(
                f"a {label} horizon is beyond the follow-up: the longest is {longest:.0f} days "
                f"({longest / DAYS_PER_YEAR:.1f} years); choose a shorter horizon"
            )
        if at_risk(h) < need:
            raise TreatmentDataError(
                f"a {label} horizon has {at_risk(h)} patients still at risk (at least {need} are "
                "needed to estimate survival there); the longest horizon with enough is "
                f"{_longest_supported(time_days, need):.0f} days"
            )
        return Horizon(h, label, at_risk(h), n, longest, "user")
    for years in sorted(STANDARD_HORIZONS_YEARS, reverse=True):
        h = years * DAYS_PER_YEAR
        if at_risk(h) >= need:
            return Horizon(h, horizon_label(h), at_risk(h), n, longest, "data")
    longest_ok = _longest_supported(time_days, need)
    raise TreatmentDataError(
        f"follow-up is too short for a 1-year horizon: {at_risk(DAYS_PER_YEAR)} patients are "
        f"followed a year or more (at least {need} are needed); is --time-unit right? The longest "
        f"horizon with {need} patients at risk is {longest_ok:.0f} days (--horizon-days)"
    )


def pseudo_value_grid(horizon_days: float) -> tuple[float, ...]:
    """Horizons the pseudo-value trees learn: 1 and 3 months, then every half year, and the horizon itself.

    Early points let each option's curve bend where early events happen instead of
    running straight from day 0 to six months; the horizon is on the grid so that the
    benefit at it is a raw tree output (exact SHAP).
    """
    points = [DAYS_PER_YEAR / 12, DAYS_PER_YEAR / 4]
    points += [DAYS_PER_YEAR * k / 2 for k in range(1, 21) if DAYS_PER_YEAR * k / 2 < horizon_days]
    points = [p for p in points if p < horizon_days - 1e-6]
    return tuple(round(p, 3) for p in [*points, float(horizon_days)])


def table_in_days(table: SurvivalTable, unit: str) -> tuple[SurvivalTable, list[dict]]:
    """A trial table whose time column was read in ``unit``, converted to days, with unit warnings."""
    days = to_days(table.time_days, unit)
    return replace(table, time_days=days), unit_warnings(days, unit)
