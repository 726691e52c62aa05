"""What happened to each worklist patient: RECIST progressions as dated events, recurrence, suspicious
AI reads, and when her next imaging is due.

Why progression is an event with a date, and the nadir starts over after it: RECIST 1.1
judges each reading against the smallest sum since the current treatment began; once
progression is declared, that line of therapy ends and the next reading is judged
against a new baseline. Judging every reading against the nadir of the whole history
(as the first worklist did) kept a patient "in progression" for ever: in the 400-patient
demo 830 of 1,263 rows sat at exactly 100 % risk, some for a progression of 2020, all
"new". Here the series is cut into lines at each progression (``progression_segments``),
the flags describe her latest reading within its line, and the forecast of the next six
months starts from the reading that opened her current line. The cut is taken from the
readings themselves, so it also works for records without lines of therapy.

Why "due" from her own history: how often a patient is imaged depends on where she is
(yearly surveillance mammograms after adjuvant therapy, CT every 8-12 weeks on a
metastatic line: docs/worklist.md). Her cadence is the median gap between her imaging dates
(studies and lesion readings), bounded to ``CADENCE_BOUNDS_DAYS``; after a recurrence only
the dates since it count (her surveillance years are not her restaging schedule). With fewer
than two dates the yearly surveillance interval applies, or after a recurrence restaging every
12 weeks, counted from the recurrence when she has not been imaged since. Imaging is overdue once the gap since the
last date passes the cadence plus a grace of ``DUE_GRACE_SHARE`` of it (at least
``DUE_GRACE_MIN_DAYS``).

AI lesion readings (``source = 'ai'``) count behind the ethics board's sign-off: where the admin
requires approval, those of weights not approved are not read here (their progression, their
imaging date; ``analytics.governance.lifecycle.measurements``), and the stored worklist records the
sign-off's state in its fingerprint (``stored.source_fingerprint``), so a decision makes it stale.

Who is on the list: patients alive and still followed (no death recorded; the observation
period did not end lost to follow-up) with a diagnosis or a lesion reading. Patients whose
disease recurred stay on it: recurrence is the first thing the care team must see.
"""

from __future__ import annotations

import functools

import duckdb
import numpy as np
import pandas as pd

from analytics.governance.lifecycle import measurements as ai_measurements

LESION_CONCEPT = "lesion_longest_diameter"
PROGRESSION_RELATIVE = 0.20  # RECIST 1.1: >= 20 % over the nadir ...
PROGRESSION_ABSOLUTE_MM = 5.0  # ... and >= 5 mm absolute increase
RESPONSE_RELATIVE = 0.30  # RECIST 1.1 partial response: >= 30 % below baseline
NADIR_FLOOR_MM = 1.0  # regrowth ratio denominator floor: regrowth after a 0 mm nadir ranks high

# The classes an AI read calls suspicious: each imaging task's positive label (models.inference.tasks;
# analytics reads model outputs through the store only, so the names are repeated here and a test
# checks them against the tasks).
SUSPICIOUS_CLASSES = ("malignant", "tumour")

CADENCE_BOUNDS_DAYS = (28.0, 365.0)  # fastest and slowest usual imaging interval
DEFAULT_CADENCE_DAYS = 365.0  # fewer than two imaging dates: yearly surveillance
RESTAGING_CADENCE_DAYS = 84.0  # ... after a recurrence: restaging every 12 weeks (docs/worklist.md)
DUE_GRACE_SHARE = 0.10  # overdue after cadence + 10 % ...
DUE_GRACE_MIN_DAYS = 14.0  # ... and at least two weeks

SEGMENT_COLUMNS = (
    "person_id",
    "n_measurements",
    "baseline_date",
    "baseline_mm",
    "nadir_mm",
    "latest_date",
    "latest_mm",
    "progression",
    "progression_date",
    "n_progressions",
    "line_start",
)

# Everyone eligible with her person-level events and imaging cadence, in person_id order.
_PEOPLE = """
WITH who AS (
    SELECT p.person_id, p.mrn, p.site
    FROM person AS p
    WHERE {only_listed}
      -- a recorded death or end of follow-up always counts, even when dated after the store's
      -- data cut-off (imports do not move the cut-off): a nurse must never be sent to call a
      -- patient who has died
      AND p.person_id NOT IN (SELECT person_id FROM outcome_event WHERE event_type = 'death')
      AND p.person_id NOT IN (
          SELECT person_id FROM observation_period WHERE end_reason IN ('death', 'lost_to_follow_up'))
      AND (p.person_id IN (SELECT person_id FROM condition_occurrence)
           OR p.person_id IN (SELECT person_id FROM measurement AS m WHERE concept = $concept AND {shown}))
      AND ($site::VARCHAR IS NULL OR p.site = $site)
),
recurrence AS (
    SELECT person_id, min(event_date) AS recurrence_date FROM outcome_event
    WHERE event_type = 'recurrence' AND person_id IN (SELECT person_id FROM who)  -- never hidden (as deaths)
    GROUP BY person_id
),
imaging_dates AS (
    SELECT DISTINCT person_id, study_date AS d FROM imaging_study
    WHERE person_id IN (SELECT person_id FROM who) AND study_date <= $as_of
    UNION
    SELECT person_id, measurement_date FROM measurement AS m
    WHERE concept = $concept AND person_id IN (SELECT person_id FROM who) AND measurement_date <= $as_of
      AND {shown}
),
gaps AS (
    SELECT i.person_id, i.d, lag(i.d) OVER (PARTITION BY i.person_id ORDER BY i.d) AS previous,
           i.d - previous AS gap, r.recurrence_date
    FROM imaging_dates AS i LEFT JOIN recurrence AS r USING (person_id)
),
imaging AS (  -- after a recurrence only her restaging counts: years of yearly mammograms are not her cadence
    SELECT person_id, max(d) AS last_imaging_date,
           count(*) FILTER (WHERE recurrence_date IS NULL OR d >= recurrence_date) AS n_imaging_dates,
           median(gap) FILTER (WHERE recurrence_date IS NULL OR previous >= recurrence_date)
               AS median_gap_days
    FROM gaps GROUP BY person_id
),
supportive AS (  -- best supportive care, no line started after it: no restaging is scheduled
    SELECT b.person_id, max(b.start_date) AS supportive_since FROM episode AS b
    WHERE b.kind = 'best_supportive_care' AND b.start_date <= $as_of
      AND (b.end_date IS NULL OR b.end_date > $as_of) AND b.person_id IN (SELECT person_id FROM who)
      AND NOT EXISTS (SELECT 1 FROM episode AS l WHERE l.person_id = b.person_id AND l.kind = 'line'
                        AND l.start_date > b.start_date AND l.start_date <= $as_of)
    GROUP BY b.person_id
),
ai AS (  -- reads are stamped when given (a demo clinic's reads come after its data cut-off), so not cut at as_of
    SELECT person_id, max(created_at) AS ai_suspicious_at,
           arg_max(predicted_class, created_at) AS ai_label,
           arg_max(probability, created_at) AS ai_probability
    FROM ai_finding
    WHERE person_id IN (SELECT person_id FROM who) AND predicted_class IN (SELECT unnest($suspicious::VARCHAR[]))
    GROUP BY person_id
)
SELECT who.person_id, who.mrn, who.site, recurrence.recurrence_date,
       ai.ai_suspicious_at, ai.ai_label, ai.ai_probability,
       imaging.last_imaging_date, imaging.n_imaging_dates, imaging.median_gap_days,
       supportive.supportive_since
FROM who LEFT JOIN recurrence USING (person_id) LEFT JOIN ai USING (person_id)
         LEFT JOIN imaging USING (person_id) LEFT JOIN supportive USING (person_id)
ORDER BY who.person_id
"""
_ALL, _LISTED = "TRUE", "p.person_id IN (SELECT person_id FROM _worklist_ids)"

_READINGS = """
SELECT person_id, measurement_date, value AS mm FROM measurement AS m
WHERE concept = ? AND measurement_date <= ? AND value >= 0
  AND person_id IN (SELECT person_id FROM _worklist_ids) AND {shown}
ORDER BY person_id, measurement_date, measurement_id
"""


@functools.lru_cache(maxsize=8)
def _people_sql(only_listed: str, shown: str) -> str:
    """``_PEOPLE`` for everyone or the listed ids, its readings behind ``shown`` (a constant
    condition of ``ai_measurements.shown``)."""
    return _PEOPLE.format(only_listed=only_listed, shown=shown)


def people(
    con: duckdb.DuckDBPyConnection,
    as_of,
    site: str | None = None,
    person_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """Eligible patients (see the module docstring) with recurrence, latest suspicious AI read and
    imaging cadence, in ``person_id`` order. ``person_ids``: only these (a writer's touched patients)."""
    site = site or None
    params = {
        "concept": LESION_CONCEPT,
        "site": site,
        "as_of": as_of,
        "suspicious": list(SUSPICIOUS_CLASSES),
    }
    shown = ai_measurements.shown(con)
    if person_ids is None:
        frame = con.execute(_people_sql(_ALL, shown), params).df()
    else:
        with _registered(con, person_ids):
            frame = con.execute(_people_sql(_LISTED, shown), params).df()
    return _with_due(frame)


def _with_due(frame: pd.DataFrame) -> pd.DataFrame:
    """Cadence (days) and the date her imaging becomes overdue (NaT without any imaging and no
    recurrence; after a recurrence not yet restaged, counted from the recurrence; both missing on
    best supportive care)."""
    gap = pd.to_numeric(frame["median_gap_days"], errors="coerce")
    recurred = frame["recurrence_date"].notna().to_numpy()
    default = np.where(recurred, RESTAGING_CADENCE_DAYS, DEFAULT_CADENCE_DAYS)
    cadence = np.where(
        frame["n_imaging_dates"].fillna(0).to_numpy() >= 2,
        np.clip(gap.to_numpy(dtype=float), *CADENCE_BOUNDS_DAYS),
        default,
    )
    cadence = np.where(np.isnan(cadence), default, cadence)
    grace = np.maximum(DUE_GRACE_MIN_DAYS, DUE_GRACE_SHARE * cadence)
    # a recurrence not yet restaged is counted from the recurrence itself
    last = pd.concat(
        [pd.to_datetime(frame["last_imaging_date"]), pd.to_datetime(frame["recurrence_date"])],
        axis=1,
    ).max(axis=1)  # NaT only when both are
    due = last + pd.to_timedelta(np.round(cadence + grace), unit="D")
    # on best supportive care no restaging is scheduled, so she is never "due": no cadence, no due
    # date (``buckets.reason`` says why; the only rows whose cadence is missing)
    supportive = frame["supportive_since"].notna().to_numpy()
    cadence = np.where(supportive, np.nan, cadence)
    due = due.mask(supportive)
    return frame.drop(columns=["median_gap_days", "n_imaging_dates", "supportive_since"]).assign(
        cadence_days=cadence, due_date=due.dt.normalize()
    )


class _registered:
    """``person_ids`` registered as the relation ``_worklist_ids`` for the duration of a block."""

    def __init__(self, con: duckdb.DuckDBPyConnection, person_ids) -> None:
        self.con = con
        self.ids = pd.DataFrame({"person_id": np.asarray(person_ids, dtype=np.int64)})

    def __enter__(self) -> None:
        self.con.register("_worklist_ids", self.ids)

    def __exit__(self, *exc) -> None:
        self.con.unregister("_worklist_ids")


def readings(con: duckdb.DuckDBPyConnection, person_ids, as_of) -> pd.DataFrame:
    """Lesion readings (person_id, measurement_date, mm) of these patients up to ``as_of``, in order."""
    with _registered(con, person_ids):
        sql = _READINGS.format(shown=ai_measurements.shown(con))
        return con.execute(sql, [LESION_CONCEPT, as_of]).df()


def progression_segments(frame: pd.DataFrame) -> pd.DataFrame:
    """RECIST 1.1 judged line by line: one row per patient with ``SEGMENT_COLUMNS``.

    ``frame``: readings (person_id, measurement_date, mm) ordered by patient, then date. Each
    reading is compared with the nadir of its line so far (the line's first reading included);
    a reading >= 1.2 x that nadir and >= nadir + 5 mm is a progression: it ends the line and
    opens the next, of which it is the baseline. ``baseline_mm``/``nadir_mm``/``progression``
    describe the latest reading within the line it was judged in; ``line_start`` is the date
    of the first reading of her current line (what a forecast of the next reading starts from);
    ``progression_date`` the latest progression (NaT: none).

    Vectorised over patients: one step per reading position (the longest series sets the
    number of steps), each touching only the patients that have a reading there.
    """
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SEGMENT_COLUMNS})
    pid = frame["person_id"].to_numpy(dtype=np.int64)
    mm = frame["mm"].to_numpy(dtype=float)
    day = frame["measurement_date"].to_numpy(dtype="datetime64[D]").astype(np.int64)
    starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
    counts = np.diff(np.r_[starts, pid.size])
    n = starts.size
    group = np.repeat(np.arange(n), counts)
    position = np.arange(pid.size) - np.repeat(starts, counts)

    base = np.full(n, np.nan)
    base_day = np.zeros(n, dtype=np.int64)
    nadir = np.full(n, np.inf)
    line_start = np.zeros(n, dtype=np.int64)
    in_line = np.zeros(n, dtype=np.int64)
    last_pd = np.full(n, np.iinfo(np.int64).min)
    n_pd = np.zeros(n, dtype=np.int64)
    shown_base, shown_nadir = np.full(n, np.nan), np.full(n, np.nan)
    shown_base_day = np.zeros(n, dtype=np.int64)
    shown_pd = np.zeros(n, dtype=bool)
    order = np.argsort(position, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(position))]
    for k in range(bounds.size - 1):
        rows = order[bounds[k] : bounds[k + 1]]
        g, v, d = group[rows], mm[rows], day[rows]
        prior = in_line[g] > 0
        ref = nadir[g]
        progressed = (
            prior & (v >= (1 + PROGRESSION_RELATIVE) * ref) & (v - ref >= PROGRESSION_ABSOLUTE_MM)
        )
        opens = progressed | ~prior
        shown_base[g] = np.where(prior, base[g], v)
        shown_base_day[g] = np.where(prior, base_day[g], d)
        shown_nadir[g] = np.where(progressed, ref, np.minimum(ref, v))
        shown_pd[g] = progressed
        base[g] = np.where(opens, v, base[g])
        base_day[g] = np.where(opens, d, base_day[g])
        nadir[g] = np.where(progressed, v, np.minimum(ref, v))
        line_start[g] = np.where(opens, d, line_start[g])
        in_line[g] = np.where(progressed, 1, in_line[g] + 1)
        last_pd[g] = np.where(progressed, d, last_pd[g])
        n_pd[g] += progressed
    last = starts + counts - 1
    return pd.DataFrame(
        {
            "person_id": pid[starts],
            "n_measurements": counts,
            "baseline_date": _dates(shown_base_day),
            "baseline_mm": shown_base,
            "nadir_mm": shown_nadir,
            "latest_date": _dates(day[last]),
            "latest_mm": mm[last],
            "progression": shown_pd,
            "progression_date": _dates(np.where(n_pd > 0, last_pd, np.iinfo(np.int64).min)),
            "n_progressions": n_pd,
            "line_start": _dates(line_start),
        }
    )


def _dates(days: np.ndarray) -> pd.Series:
    """Day numbers (days since 1970) as dates; the int64 minimum marks "none" (NaT)."""
    none = days == np.iinfo(np.int64).min
    values = np.where(none, 0, days).astype("datetime64[D]").astype("datetime64[ns]")
    out = pd.Series(values)
    out[none] = pd.NaT
    return out
