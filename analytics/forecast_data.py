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
PRIOR_MAX_PATIENTS = 5_000          # the population prior is estimated on a fixed sample of this size
_SAMPLE_MULTIPLIER = 2654435761     # Knuth's multiplicative hash, as elsewhere in analytics
_SAMPLE_MODULUS = 2**32

# The patient sets a series can be read for (constant SQL; values go in as parameters).
_PERSONS = {
    "one": "SELECT person_id, birth_date FROM person WHERE person_id = ?",
    "sample": "SELECT person_id, birth_date FROM person ORDER BY (person_id::HUGEINT * ?) % ?, person_id LIMIT ?",
    "all": "SELECT person_id, birth_date FROM person",
}


def lesion_frame(con: duckdb.DuckDBPyConnection, persons: str = "all", params: tuple = ()) -> pd.DataFrame:
    """Raw lesion readings: person_id, measurement_date, mm, birth_date, treatment_start, timed_from.

    ``persons``: "one" (params: person id), "sample" (params: size) or "all".
    ``timed_from``: 'treatment' or 'first_measurement'.
    """
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


def data_cutoff(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The store's data cut-off (``clinic_metadata``), the forecasts' "today"; None if not recorded."""
    row = con.execute("SELECT value FROM clinic_metadata WHERE key = 'data_cutoff'").fetchone()
    if row is None:
        return None
    try:
        return dt.date.fromisoformat(str(row[0])[:10])
    except ValueError:
        return None


def clean(frame: pd.DataFrame, as_of: dt.date | None = None) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """Drop impossible readings; add ``t_days`` (days since the time origin) and ``timed_from``.

    Returns the kept readings and, per patient, plain sentences about what was dropped.
    """
    notes: dict[int, list[str]] = {}
    if frame.empty:
        out = frame.assign(t_days=pd.Series(dtype=float), timed_from=pd.Series(dtype=object))
        return out, notes
    date = pd.to_datetime(frame["measurement_date"])
    birth = pd.to_datetime(frame["birth_date"])
    value = frame["mm"].astype(float)
    reasons = {
        "no value": value.isna().to_numpy(),
        "a negative size": (value < 0).to_numpy(),
        f"a size above {MAX_PLAUSIBLE_MM:.0f} mm": (value > MAX_PLAUSIBLE_MM).to_numpy(),
        "a date before birth": (birth.notna() & (date < birth)).to_numpy(),
    }
    if as_of is not None:
        reasons["a date after the data cut-off"] = (date > pd.Timestamp(as_of)).to_numpy()
    bad = np.zeros(len(frame), dtype=bool)
    pid = frame["person_id"].to_numpy(dtype=np.int64)
    for why, rows in reasons.items():
        rows = rows & ~bad                                  # each reading counted once
        for p, count in zip(*np.unique(pid[rows], return_counts=True), strict=True):
            notes.setdefault(int(p), []).append(
                f"{count} lesion measurement{'s' if count > 1 else ''} left out: {why}"
            )
        bad |= rows
    kept = frame.loc[~bad].copy()
    kept["measurement_date"] = pd.to_datetime(kept["measurement_date"])
    first = kept.groupby("person_id")["measurement_date"].transform("min")
    start = pd.to_datetime(kept["treatment_start"])
    kept["timed_from"] = np.where(start.notna(), "treatment", "first_measurement")
    origin = start.fillna(first)
    kept["t_days"] = (kept["measurement_date"] - origin).dt.days.astype(float)
    return kept.reset_index(drop=True), notes
