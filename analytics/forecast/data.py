"""Lesion series for the forecasts, read from the store and cleaned, with the reasons for what was dropped.

Why one query for one patient, a cohort sample and the worklist: the model must
see a series computed the same way everywhere (time origin, cleaning), so all
three go through ``lesion_frame``. The time origin of the growth-inhibition
model is the start of her current line of therapy: the latest line after line 1 (in the
metastatic setting each line restarts RECIST from its own baseline scan, so readings from
before it are not part of the series), else the earliest exposure of line 1, or of any line
when none is numbered 1; a patient with no treatment recorded is timed from her first
measurement, and her forecast says so. Only lines started on or before the forecast's "as of"
day count (``as_of``): a forecast or a risk as of an earlier day must not use a line that had
not started yet.

Why also series per line (``lesion_segments``): the population prior and the validation must
learn from whole lines, progressions included. A patient's current line has, by construction,
not progressed yet (a progression ends the line), so a prior fitted on current lines only learns
regrowth from the lines that have not regrown, and the readings it is validated on are the
survivors'. Each line's segment runs from its baseline scan (up to 42 days before its start;
line 1 has no lower bound, as in a store without lines) to before the next line's start, so
the progression reading that ends line k is the last reading of line k and may also be the
baseline of line k+1. A store without lines gives one series per patient, as before.

Cleaning drops values no diameter can take: missing, negative, above
``MAX_PLAUSIBLE_MM``, or dated before the patient's birth (or after the data
cut-off). Each drop is counted per patient so that the forecast can say what
it left out, instead of fitting nonsense or failing.

Only the target-lesion series (``lesion_longest_diameter``) is used; the brain
metastasis series (``brain_lesion_longest_diameter``) is another lesion.

AI readings (``source = 'ai'``) are read behind the ethics board's sign-off: where the admin
requires approval, those of weights not approved are left out of every series here
(``analytics.governance.lifecycle.measurements``), so a forecast has fewer readings and says so
through its usual "not enough readings" paths rather than fit a withheld read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from analytics.governance.lifecycle import measurements as ai_measurements
from analytics.treatment.clinic_data import FEATURE_COLUMNS, one_patient_covariates_sql

LESION_CONCEPT = "lesion_longest_diameter"
MAX_PLAUSIBLE_MM = 500.0
PRIOR_MAX_PATIENTS = 3_000  # the population prior is estimated on a fixed sample of this size
_SAMPLE_MULTIPLIER = 2654435761  # Knuth's multiplicative hash, as elsewhere in analytics
_SAMPLE_MODULUS = 2**32

# The series' time origin: the start of her latest line of therapy after line 1 (a metastatic line:
# progression ended the one before, so RECIST and the growth model restart there), else of line 1,
# else of any treatment; and the first reading that belongs to it (the baseline scan up to six
# weeks before that line). Constant SQL over treatment_exposure, one group per patient.
_START = (
    "coalesce(max(start_date) FILTER (WHERE line_of_therapy >= 2), "
    "min(start_date) FILTER (WHERE line_of_therapy = 1), min(start_date))"
)
_SERIES_FROM = "max(start_date) FILTER (WHERE line_of_therapy >= 2) - INTERVAL 42 DAY"
BASELINE_WINDOW_DAYS = 42  # a line's baseline scan: up to six weeks before its start
# Only lines started on or before the as-of day (a NULL as-of: every line). Constant SQL.
_STARTED = "(?::DATE IS NULL OR start_date <= ?)"

# The patient sets a series can be read for (constant SQL; values go in as parameters).
_PERSONS = {
    "one": "SELECT person_id, birth_date FROM person WHERE person_id = ?",
    "sample": "SELECT person_id, birth_date FROM person ORDER BY (person_id::HUGEINT * ?) % ?, person_id LIMIT ?",
    "all": "SELECT person_id, birth_date FROM person",
    # the ids a caller registered as the relation `_forecast_ids` (the worklist's eligible patients)
    "listed": "SELECT person_id, birth_date FROM person WHERE person_id IN (SELECT person_id FROM _forecast_ids)",
}


def _who_args(persons: str, params: tuple) -> list:
    if persons == "sample":
        return [_SAMPLE_MULTIPLIER, _SAMPLE_MODULUS, int(params[0])]
    return list(params)


def lesion_frame(
    con: duckdb.DuckDBPyConnection,
    persons: str = "all",
    params: tuple = (),
    as_of: dt.date | None = None,
) -> pd.DataFrame:
    """Raw lesion readings of each patient's current line: person_id, measurement_date, mm,
    birth_date, treatment_start.

    ``persons``: "one" (params: person id), "sample" (params: size), "listed" (the ids the caller
    registered as ``_forecast_ids``) or "all". ``as_of``: her current line is the latest started
    on or before this day (None: the latest recorded).
    """
    if persons == "one":
        return _one_patient(con, int(params[0]), as_of)
    who = _PERSONS[persons]
    args = _who_args(persons, params)
    return con.execute(
        f"""
        WITH who AS ({who}),
        line AS (
            SELECT person_id, {_START} AS start, {_SERIES_FROM} AS series_from
            FROM treatment_exposure WHERE person_id IN (SELECT person_id FROM who) AND {_STARTED}
            GROUP BY person_id
        )
        SELECT m.person_id, m.measurement_date, m.value AS mm, w.birth_date, l.start AS treatment_start
        FROM measurement AS m
        JOIN who AS w USING (person_id)
        LEFT JOIN line AS l USING (person_id)
        WHERE m.concept = ? AND m.measurement_date >= coalesce(l.series_from, DATE '1900-01-01')
          AND {ai_measurements.shown(con)}
        ORDER BY m.person_id, m.measurement_date, m.measurement_id
        """,  # noqa: S608 - constant SQL fragments, values as parameters
        [*args, as_of, as_of, LESION_CONCEPT],
    ).df()


def _one_patient(
    con: duckdb.DuckDBPyConnection, person_id: int, as_of: dt.date | None
) -> pd.DataFrame:
    """The same columns for one patient, every table filtered on her id (zone maps prune to a row group)."""
    return con.execute(
        f"""
        WITH line AS (SELECT {_START} AS start, {_SERIES_FROM} AS series_from
                      FROM treatment_exposure
                      WHERE person_id = $1 AND ($3::DATE IS NULL OR start_date <= $3))
        SELECT m.person_id, m.measurement_date, m.value AS mm,
               (SELECT birth_date FROM person WHERE person_id = $1) AS birth_date,
               (SELECT start FROM line) AS treatment_start
        FROM measurement AS m
        WHERE m.person_id = $1 AND m.concept = $2
          AND m.measurement_date >= coalesce((SELECT series_from FROM line), DATE '1900-01-01')
          AND {ai_measurements.shown(con)}
        ORDER BY m.measurement_date, m.measurement_id
        """,  # noqa: S608 - constant SQL fragments
        [person_id, LESION_CONCEPT, as_of],
    ).df()


def lesion_segments(
    con: duckdb.DuckDBPyConnection,
    persons: str = "all",
    params: tuple = (),
    as_of: dt.date | None = None,
) -> pd.DataFrame:
    """Raw lesion readings cut into one series per line of therapy (see the module docstring).

    Columns: person_id, line (``line_of_therapy``; 0 for a patient without treatment), series_id
    (0, 1, ... one per patient and line, in patient then line order), measurement_date, mm,
    birth_date, treatment_start (the line's start: its time origin). ``persons``, ``params`` as
    ``lesion_frame``; ``as_of``: only lines started on or before this day. A segment made only of
    the next line's baseline scan (the reading at a recurrence, before the first metastatic line,
    timed from an adjuvant line years earlier) says nothing about its own line and is left out.
    """
    frame = con.execute(
        f"""
        WITH who AS ({_PERSONS[persons]}),
        starts AS (
            SELECT person_id, line_of_therapy AS line, min(start_date) AS start
            FROM treatment_exposure WHERE person_id IN (SELECT person_id FROM who) AND {_STARTED}
            GROUP BY ALL
        ),
        lines AS (
            SELECT person_id, line, start,
                   CASE WHEN line >= 2 THEN start - INTERVAL {BASELINE_WINDOW_DAYS} DAY END AS series_from,
                   lead(start) OVER (PARTITION BY person_id ORDER BY start, line) AS next_start
            FROM starts
        )
        SELECT m.person_id, coalesce(l.line, 0) AS line, m.measurement_date, m.value AS mm,
               w.birth_date, l.start AS treatment_start
        FROM measurement AS m
        JOIN who AS w USING (person_id)
        LEFT JOIN lines AS l
               ON l.person_id = m.person_id
              AND m.measurement_date >= coalesce(l.series_from, DATE '1900-01-01')
              AND (l.next_start IS NULL OR m.measurement_date < l.next_start)
        WHERE m.concept = ? AND {ai_measurements.shown(con)}
          AND (l.line IS NOT NULL OR m.person_id NOT IN (SELECT person_id FROM lines))
        QUALIFY bool_or(l.next_start IS NULL
                        OR m.measurement_date < l.next_start - INTERVAL {BASELINE_WINDOW_DAYS} DAY)
                OVER (PARTITION BY m.person_id, l.line)
        ORDER BY m.person_id, l.start NULLS FIRST, l.line, m.measurement_date, m.measurement_id
        """,  # noqa: S608 - constant SQL fragments, values as parameters
        [*_who_args(persons, params), as_of, as_of, LESION_CONCEPT],
    ).df()
    pid, line = frame["person_id"].to_numpy(), frame["line"].to_numpy()
    new = np.r_[True, (pid[1:] != pid[:-1]) | (line[1:] != line[:-1])][: len(frame)]
    return frame.assign(series_id=np.cumsum(new, dtype=np.int64) - 1)


def clean_segments(frame: pd.DataFrame, as_of: dt.date | None = None) -> pd.DataFrame:
    """``clean`` applied to each line's series of ``lesion_segments``: the kept readings with
    person_id, line, series_id, measurement_date, mm, timed_from, t_days (from the line's start).

    ``LesionSeries.from_long(kept, by="series_id")`` makes one row per line, and remembers whose.
    """
    if frame.empty:
        kept, _ = clean(frame)
        return kept
    owner = frame.groupby("series_id", sort=True)[["person_id", "line"]].first()
    kept, _ = clean(frame.assign(person_id=frame["series_id"]), as_of)
    series = kept["person_id"].to_numpy(dtype=np.int64)
    return kept.assign(
        series_id=series,
        person_id=owner["person_id"].to_numpy()[series],
        line=owner["line"].to_numpy()[series],
    )


def restart_at(raw: pd.DataFrame, line_start: pd.Series | None) -> pd.DataFrame:
    """``lesion_frame`` readings restarted at each patient's RECIST line (the worklist's line after
    a progression: ``line_start`` per person_id): earlier readings left out, time counted from it."""
    if line_start is None or raw.empty:
        return raw
    start = as_datetime(raw["person_id"].map(line_start))
    raw = raw[start.isna() | (as_datetime(raw["measurement_date"]) >= start)]
    start = start[raw.index]
    raw = raw.assign(treatment_start=start.where(start.notna(), raw["treatment_start"]))
    return raw.reset_index(drop=True)


def data_cutoff(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The store's data cut-off (``clinic_metadata``), the forecasts' "today"; None if not recorded."""
    rows = con.execute("SELECT value FROM clinic_metadata WHERE key = 'data_cutoff'").fetchall()
    return _cutoff_date(rows[0][0]) if rows else None


def _cutoff_date(value) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


# --- one patient's whole record in one query --------------------------------------------------

# Each part is a one-row subquery filtered on her id, joined with LEFT JOIN ... ON true: such joins
# are not reordered, so planning stays cheap (scalar subqueries become cross products whose join
# order DuckDB enumerates: 20 ms of planning for 8 of them). Planning, not reading, is what a
# one-patient query costs, so one query instead of five saves most of it.
_RECORD_SQL = """
SELECT cov.*, p.birth_date, op.end_date AS follow_up_end, ev.first_event, te.received, te.treatment_start,
       md.value AS data_cutoff, m.measurement_date, m.value AS mm
FROM ({covariates}) AS cov
LEFT JOIN (SELECT birth_date FROM person WHERE person_id = $1) AS p ON true
LEFT JOIN (SELECT max(end_date) AS end_date FROM observation_period WHERE person_id = $1) AS op ON true
LEFT JOIN (SELECT min(event_date) AS first_event FROM outcome_event WHERE person_id = $1) AS ev ON true
LEFT JOIN (SELECT min(regimen) FILTER (WHERE line_of_therapy = 1) AS received,
                  {start} AS treatment_start, {series_from} AS series_from
           FROM treatment_exposure WHERE person_id = $1 AND ($3::DATE IS NULL OR start_date <= $3)) AS te
       ON true
LEFT JOIN (SELECT value FROM clinic_metadata WHERE key = 'data_cutoff') AS md ON true
LEFT JOIN (SELECT measurement_date, value, measurement_id FROM measurement AS m
           WHERE person_id = $1 AND concept = $2 AND {shown}) AS m
       ON m.measurement_date >= coalesce(te.series_from, DATE '1900-01-01')
ORDER BY m.measurement_date, m.measurement_id
"""


@dataclass(frozen=True, eq=False)
class PatientRecord:
    """What one patient's forecast reads from the store (``patient_record``).

    ``covariates``: the treatment model's inputs in ``FEATURE_COLUMNS`` order (None when missing),
    read by the same SQL as training; ``received_option``: her first-line regimen;
    ``measurement_day``, ``mm``: her raw lesion readings in date order (days since 1970,
    as ``day_numbers``), before cleaning.
    """

    person_id: int
    diagnosis_date: dt.date | None
    follow_up_end: dt.date | None
    first_event: dt.date | None
    received_option: str | None
    data_cutoff: dt.date | None
    covariates: tuple
    birth_day: float
    treatment_start_day: float
    measurement_day: np.ndarray
    mm: np.ndarray

    def readings(
        self, as_of: dt.date | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Her cleaned readings (``clean``'s rules): (day numbers, mm, t_days, timed from treatment, notes)."""
        n = len(self.mm)
        pid = np.full(n, self.person_id, dtype=np.int64)
        keep, t_days, timed, notes = clean_arrays(
            pid,
            self.measurement_day,
            np.full(n, self.birth_day),
            self.mm,
            np.full(n, self.treatment_start_day),
            as_of,
        )
        return (
            self.measurement_day[keep],
            self.mm[keep],
            t_days,
            timed,
            notes.get(self.person_id, []),
        )


def patient_record(
    con: duckdb.DuckDBPyConnection, person_id: int, as_of: dt.date | None = None
) -> PatientRecord | None:
    """One patient's record for her forecast, in one query; None if there is no such patient.

    ``as_of``: her current line is the latest started on or before this day (None: the latest).
    """

    rows = con.execute(
        _RECORD_SQL.format(
            covariates=one_patient_covariates_sql(),
            start=_START,
            series_from=_SERIES_FROM,
            shown=ai_measurements.shown(con),
        ),  # noqa: S608 - constant SQL
        [int(person_id), LESION_CONCEPT, as_of],
    ).fetchall()
    if not rows:
        return None
    first = rows[0]
    k = len(FEATURE_COLUMNS)
    (diagnosis, birth, follow_up_end, first_event, received, start, cutoff) = first[k + 1 : k + 8]
    readings = [r[-2:] for r in rows if r[-2] is not None]
    return PatientRecord(
        person_id=int(person_id),
        diagnosis_date=diagnosis,
        follow_up_end=follow_up_end,
        first_event=first_event,
        received_option=received,
        data_cutoff=_cutoff_date(cutoff),
        covariates=tuple(first[1 : k + 1]),
        birth_day=_day_number(birth),
        treatment_start_day=_day_number(start),
        measurement_day=day_numbers(np.array([r[0] for r in readings], dtype="datetime64[D]")),
        mm=np.array([np.nan if r[1] is None else r[1] for r in readings], dtype=float),
    )


def _day_number(value: dt.date | None) -> float:
    return np.nan if value is None else float((np.datetime64(value, "D") - _EPOCH).astype(np.int64))


_EPOCH = np.datetime64("1970-01-01", "D")


def _days(values: pd.Series) -> np.ndarray:
    """Dates as float days since 1970 (NaN when missing): cheap to compare and subtract."""
    return day_numbers(as_datetime(values).to_numpy(dtype="datetime64[D]"))


def as_datetime(values: pd.Series) -> pd.Series:
    """``pd.to_datetime(values)``, without its cost when they already are ``datetime64``.

    Why: DuckDB hands dates over as ``datetime64[us]``, and ``pd.to_datetime`` of such a column
    still samples it element by element as Python objects to decide whether to cache (a tenth of
    a worklist refresh's forecast batches went there); the values are the same either way.
    """
    return values if values.dtype.kind == "M" else pd.to_datetime(values)


def day_numbers(dates: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` dates as float days since 1970 (NaN for NaT)."""
    out = (dates - _EPOCH).astype("float64")
    out[np.isnat(dates)] = np.nan
    return out


def day_dates(days: np.ndarray) -> np.ndarray:
    """The inverse of ``day_numbers`` for whole days: float days since 1970 -> ``datetime64[D]``."""
    return np.asarray(days).astype("int64").astype("timedelta64[D]") + _EPOCH


def clean(
    frame: pd.DataFrame, as_of: dt.date | None = None
) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """Drop impossible readings; add ``t_days`` (days since the time origin) and ``timed_from``.

    ``frame`` is ordered by patient, then date (as ``lesion_frame`` returns it). Returns the
    kept readings (person_id, measurement_date, mm, timed_from, t_days) and, per patient, plain
    sentences about what was dropped.
    """
    if frame.empty:
        out = frame.assign(t_days=pd.Series(dtype=float), timed_from=pd.Series(dtype=object))
        return out, {}
    pid = frame["person_id"].to_numpy(dtype=np.int64)
    value = frame["mm"].to_numpy(dtype=float)
    date = _days(frame["measurement_date"])
    keep, t_days, timed, notes = clean_arrays(
        pid, date, _days(frame["birth_date"]), value, _days(frame["treatment_start"]), as_of
    )
    kept = pd.DataFrame(
        {
            "person_id": pid[keep],
            "measurement_date": day_dates(date[keep]).astype("datetime64[ns]")
            if keep.any()
            else pd.Series(dtype="datetime64[ns]"),
            "mm": value[keep],
            "timed_from": np.where(timed, "treatment", "first_measurement"),
            "t_days": t_days,
        }
    )
    return kept.reset_index(drop=True), notes


def clean_arrays(
    pid: np.ndarray,
    date: np.ndarray,
    birth: np.ndarray,
    value: np.ndarray,
    start: np.ndarray,
    as_of: dt.date | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, list[str]]]:
    """The rules of ``clean`` on plain arrays (dates as ``day_numbers``), for one patient or many.

    Rows ordered by patient, then date. Returns (keep mask, t_days of the kept rows, timed from
    treatment (bool) of the kept rows, notes per patient). One patient's forecast calls this
    directly on the few rows it fetched (a DataFrame per call would cost more than the rules).
    """
    notes: dict[int, list[str]] = {}
    with np.errstate(invalid="ignore"):
        reasons = {
            "no value": np.isnan(value),
            "a negative size": value < 0,
            f"a size above {MAX_PLAUSIBLE_MM:.0f} mm": value > MAX_PLAUSIBLE_MM,
            "a date before birth": ~np.isnan(birth) & (date < birth),
        }
    if as_of is not None:
        reasons["a date after the data cut-off"] = date > (
            np.datetime64(as_of, "D") - _EPOCH
        ).astype(float)
    bad = np.zeros(len(pid), dtype=bool)
    for why, rows in reasons.items():
        rows = rows & ~bad  # each reading counted once
        if not rows.any():
            continue
        for p, count in zip(*np.unique(pid[rows], return_counts=True), strict=True):
            notes.setdefault(int(p), []).append(
                f"{count} lesion measurement{'s' if count > 1 else ''} left out: {why}"
            )
        bad |= rows
    keep = ~bad
    pid, date, start = pid[keep], date[keep], start[keep]
    # the first kept reading of each patient (rows come ordered by patient, then date)
    first_of = (
        np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
        if pid.size
        else np.zeros(0, dtype=np.int64)
    )
    first = np.repeat(date[first_of], np.diff(np.r_[first_of, pid.size])) if pid.size else date
    timed = ~np.isnan(start)
    return keep, date - np.where(timed, start, first), timed, notes
