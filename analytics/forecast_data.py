"""Lesion series for the forecasts, read from the store and cleaned, with the reasons for what was dropped.

Why one query for one patient, a cohort sample and the worklist: the model must
see a series computed the same way everywhere (time origin, cleaning), so all
three go through ``lesion_frame``. The time origin of the growth-inhibition
model is the start of first-line treatment (the earliest exposure of line 1, or
of any line when none is numbered 1); a patient with no treatment recorded is
timed from her first measurement, and her forecast says so.

Cleaning drops values no diameter can take: missing, negative, above
``MAX_PLAUSIBLE_MM``, or dated before the patient's birth (or after the data
cut-off). Each drop is counted per patient so that the forecast can say what
it left out, instead of fitting nonsense or failing.

Only the target-lesion series (``lesion_longest_diameter``) is used; the brain
metastasis series (``brain_lesion_longest_diameter``) is another lesion.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

LESION_CONCEPT = "lesion_longest_diameter"
MAX_PLAUSIBLE_MM = 500.0
PRIOR_MAX_PATIENTS = 3_000          # the population prior is estimated on a fixed sample of this size
_SAMPLE_MULTIPLIER = 2654435761     # Knuth's multiplicative hash, as elsewhere in analytics
_SAMPLE_MODULUS = 2**32

# The patient sets a series can be read for (constant SQL; values go in as parameters).
_PERSONS = {
    "one": "SELECT person_id, birth_date FROM person WHERE person_id = ?",
    "sample": "SELECT person_id, birth_date FROM person ORDER BY (person_id::HUGEINT * ?) % ?, person_id LIMIT ?",
    "all": "SELECT person_id, birth_date FROM person",
    # the ids a caller registered as the relation `_forecast_ids` (the worklist's eligible patients)
    "listed": "SELECT person_id, birth_date FROM person WHERE person_id IN (SELECT person_id FROM _forecast_ids)",
}


def lesion_frame(con: duckdb.DuckDBPyConnection, persons: str = "all", params: tuple = ()) -> pd.DataFrame:
    """Raw lesion readings: person_id, measurement_date, mm, birth_date, treatment_start, timed_from.

    ``persons``: "one" (params: person id), "sample" (params: size), "listed" (the ids the caller
    registered as ``_forecast_ids``) or "all".
    ``timed_from``: 'treatment' or 'first_measurement'.
    """
    if persons == "one":
        return _one_patient(con, int(params[0]))
    who = _PERSONS[persons]
    args = list(params)
    if persons == "sample":
        args = [_SAMPLE_MULTIPLIER, _SAMPLE_MODULUS, int(params[0])]
    return con.execute(
        f"""
        WITH who AS ({who}),
        line AS (
            SELECT person_id,
                   coalesce(min(start_date) FILTER (WHERE line_of_therapy = 1), min(start_date)) AS start
            FROM treatment_exposure WHERE person_id IN (SELECT person_id FROM who)
            GROUP BY person_id
        )
        SELECT m.person_id, m.measurement_date, m.value AS mm, w.birth_date, l.start AS treatment_start
        FROM measurement AS m
        JOIN who AS w USING (person_id)
        LEFT JOIN line AS l USING (person_id)
        WHERE m.concept = ?
        ORDER BY m.person_id, m.measurement_date, m.measurement_id
        """,  # noqa: S608 - constant SQL fragments, values as parameters
        [*args, LESION_CONCEPT],
    ).df()


def _one_patient(con: duckdb.DuckDBPyConnection, person_id: int) -> pd.DataFrame:
    """The same columns for one patient, every table filtered on her id (zone maps prune to a row group)."""
    return con.execute(
        """
        SELECT m.person_id, m.measurement_date, m.value AS mm,
               (SELECT birth_date FROM person WHERE person_id = ?) AS birth_date,
               (SELECT coalesce(min(start_date) FILTER (WHERE line_of_therapy = 1), min(start_date))
                  FROM treatment_exposure WHERE person_id = ?) AS treatment_start
        FROM measurement AS m
        WHERE m.person_id = ? AND m.concept = ?
        ORDER BY m.measurement_date, m.measurement_id
        """,
        [person_id, person_id, person_id, LESION_CONCEPT],
    ).df()


def data_cutoff(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The store's data cut-off (``clinic_metadata``), the forecasts' "today"; None if not recorded."""
    rows = con.execute("SELECT value FROM clinic_metadata WHERE key = 'data_cutoff'").fetchall()
    if not rows:
        return None
    row = rows[0]
    try:
        return dt.date.fromisoformat(str(row[0])[:10])
    except ValueError:
        return None


_EPOCH = np.datetime64("1970-01-01", "D")


def _days(values: pd.Series) -> np.ndarray:
    """Dates as float days since 1970 (NaN when missing): cheap to compare and subtract."""
    as_days = pd.to_datetime(values).to_numpy(dtype="datetime64[D]")
    out = (as_days - _EPOCH).astype("float64")
    out[np.isnat(as_days)] = np.nan
    return out


def clean(frame: pd.DataFrame, as_of: dt.date | None = None) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """Drop impossible readings; add ``t_days`` (days since the time origin) and ``timed_from``.

    ``frame`` is ordered by patient, then date (as ``lesion_frame`` returns it). Returns the
    kept readings (person_id, measurement_date, mm, timed_from, t_days) and, per patient, plain
    sentences about what was dropped.
    """
    notes: dict[int, list[str]] = {}
    if frame.empty:
        out = frame.assign(t_days=pd.Series(dtype=float), timed_from=pd.Series(dtype=object))
        return out, notes
    date = _days(frame["measurement_date"])
    birth = _days(frame["birth_date"])
    value = frame["mm"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        reasons = {
            "no value": np.isnan(value),
            "a negative size": value < 0,
            f"a size above {MAX_PLAUSIBLE_MM:.0f} mm": value > MAX_PLAUSIBLE_MM,
            "a date before birth": ~np.isnan(birth) & (date < birth),
        }
    if as_of is not None:
        reasons["a date after the data cut-off"] = date > (np.datetime64(as_of, "D") - _EPOCH).astype(float)
    bad = np.zeros(len(frame), dtype=bool)
    pid = frame["person_id"].to_numpy(dtype=np.int64)
    for why, rows in reasons.items():
        rows = rows & ~bad                                  # each reading counted once
        if not rows.any():
            continue
        for p, count in zip(*np.unique(pid[rows], return_counts=True), strict=True):
            notes.setdefault(int(p), []).append(
                f"{count} lesion measurement{'s' if count > 1 else ''} left out: {why}"
            )
        bad |= rows
    keep = ~bad
    pid, date = pid[keep], date[keep]
    start = _days(frame["treatment_start"])[keep]
    # the first kept reading of each patient (frames come ordered by patient, then date)
    first_of = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]]) if pid.size else np.zeros(0, dtype=np.int64)
    first = np.repeat(date[first_of], np.diff(np.r_[first_of, pid.size])) if pid.size else date
    timed = ~np.isnan(start)
    kept = pd.DataFrame({
        "person_id": pid,
        "measurement_date": (date.astype("int64") + _EPOCH).astype("datetime64[ns]") if pid.size
        else pd.Series(dtype="datetime64[ns]"),
        "mm": value[keep],
        "timed_from": np.where(timed, "treatment", "first_measurement"),
        "t_days": date - np.where(timed, start, first),
    })  # fmt: skip
    return kept.reset_index(drop=True), notes
