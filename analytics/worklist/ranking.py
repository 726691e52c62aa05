"""The care team's worklist: which patients to look at first, ranked by forecast risk.

Rank: the probability of RECIST progression or recurrence in the next six
months (``analytics.forecast.patient.cohort_risk``): the tumour growth-inhibition fit
of each patient's lesion series gives the chance that her last reading expected
within six months (``forecast.expected_reading_day``) meets progression against
her nadir, the clinic's treatment model
(when trained) the chance of recurrence within six months given that she is
recurrence-free today, and the two combine as 1 - (1 - p)(1 - q). Ties (many
demo patients sit at 100 % because their lesion has regrown already) are
broken by the regrowth ratio latest / nadir, then by id.

RECIST 1.1 flags are computed from the observed series (one target lesion, so
the "sum of diameters" is its longest diameter):

- progression: latest >= 1.2 x nadir AND latest - nadir >= 5 mm;
- response: latest <= 0.7 x baseline (a decrease of at least 30 % from the
  first measurement).

Baseline and latest are the values on the first and last measurement dates
(two readings on one date: either may be taken).

Who is on the list: patients alive at their last follow-up (no death event and an
observation period that did not end in death) who have at least one lesion measurement.
Since issue 17 a lesion is read only in measurable disease (metastatic, on a line of
therapy), so a recurrence no longer takes a patient off the list: she is the one whose
progression is followed. Baseline, nadir and latest are those of her current line's readings
(from its baseline scan, as ``analytics.forecast.data``), since each line restarts RECIST.

Why rank everyone, then page: a forecast risk is not a SQL expression, so the
whole list is ranked at once (vectorised fits, ``RISK_CHUNK`` patients per
batch so that memory stays flat: about half a millisecond per patient on one
core). ``ranked`` is that computation; the app does not run it per request
at scale but reads the stored result (``analytics.worklist.stored``, table
``worklist_entry``), written by ``ranked`` itself, so the stored ranking and
the on-the-fly one are the same numbers. The flags stay one set-based query
(``arg_min``/``arg_max``, one scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from analytics.forecast.patient import cohort_risk, estimate_prior

LESION_CONCEPT = "lesion_longest_diameter"
PROGRESSION_RELATIVE = 0.20  # RECIST 1.1: >= 20 % over the nadir ...
PROGRESSION_ABSOLUTE_MM = 5.0  # ... and >= 5 mm absolute increase
RESPONSE_RELATIVE = 0.30  # RECIST 1.1 partial response: >= 30 % below baseline
NADIR_FLOOR_MM = 1.0  # regrowth ratio denominator floor: regrowth after a 0 mm nadir ranks high

WORKLIST_COLUMNS = (
    "person_id",
    "mrn",
    "site",
    "n_measurements",
    "baseline_date",
    "baseline_mm",
    "nadir_mm",
    "latest_date",
    "latest_mm",
    "change_from_nadir_pct",
    "change_from_baseline_pct",
    "progression",
    "response",
    "regrowth_ratio",
    "p_progression_6m",
    "p_recurrence_6m",
    "risk_6m",
    "risk_parts",
)


@dataclass(frozen=True, eq=False)
class WorklistPage:
    """One page of the worklist and the size of the whole (filtered) list.

    ``rows`` has the columns of ``WORKLIST_COLUMNS``, sorted by ``risk_6m`` descending
    (patients without any forecast last), then ``regrowth_ratio`` (latest / nadir)
    descending, then ``person_id``; sizes in mm, changes in percent, probabilities in [0, 1].
    ``risk_parts`` says what the risk includes: "tumour+survival", "tumour", "survival", "none".
    """

    rows: pd.DataFrame
    total: int
    limit: int
    offset: int


_FLAGGED = """
WITH line AS (  -- the current line's readings only: each metastatic line restarts RECIST (issue 17)
    SELECT person_id, max(start_date) FILTER (WHERE line_of_therapy >= 2) - INTERVAL 42 DAY AS series_from
    FROM treatment_exposure GROUP BY person_id
),
lesion AS (
    SELECT person_id,
           count(*)                          AS n_measurements,
           min(measurement_date)             AS baseline_date,
           arg_min(value, measurement_date)  AS baseline_mm,
           min(value)                        AS nadir_mm,
           max(measurement_date)             AS latest_date,
           arg_max(value, measurement_date)  AS latest_mm
    FROM measurement LEFT JOIN line USING (person_id)
    WHERE concept = ? AND measurement_date >= coalesce(line.series_from, DATE '1900-01-01'){only_listed}
    GROUP BY person_id
)
SELECT lesion.person_id, p.mrn, p.site, n_measurements, baseline_date, baseline_mm, nadir_mm,
       latest_date, latest_mm,
       100 * (latest_mm - nadir_mm) / nullif(nadir_mm, 0)       AS change_from_nadir_pct,
       100 * (latest_mm - baseline_mm) / nullif(baseline_mm, 0) AS change_from_baseline_pct,
       latest_mm >= (1 + ?) * nadir_mm AND latest_mm - nadir_mm >= ? AS progression,
       baseline_mm > 0 AND latest_mm <= (1 - ?) * baseline_mm       AS response,
       latest_mm / greatest(nadir_mm, ?)                             AS regrowth_ratio
FROM lesion JOIN person AS p USING (person_id)
WHERE lesion.person_id NOT IN (SELECT person_id FROM outcome_event WHERE event_type = 'death')
  AND lesion.person_id NOT IN (SELECT person_id FROM observation_period WHERE end_reason = 'death')
  AND (?::VARCHAR IS NULL OR p.site = ?)
ORDER BY lesion.person_id
"""
# The same query for the patients a caller registered as ``_worklist_ids`` (a writer's touched patients).
_FLAGGED_LISTED = _FLAGGED.format(
    only_listed=" AND person_id IN (SELECT person_id FROM _worklist_ids)"
)
_FLAGGED = _FLAGGED.format(only_listed="")
RISK_CHUNK = (
    20_000  # patients per vectorised risk batch: ~1.2 GB peak at 20,000, the same speed as larger
)


def flagged(
    con: duckdb.DuckDBPyConnection, site: str | None = None, *, person_ids: np.ndarray | None = None
) -> pd.DataFrame:
    """Eligible patients with their lesion summary and RECIST flags (no risk), in ``person_id`` order.

    ``person_ids``: only these patients (a writer's touched patients); None: everyone.
    """
    site = site or None
    params = [
        LESION_CONCEPT,
        PROGRESSION_RELATIVE,
        PROGRESSION_ABSOLUTE_MM,
        RESPONSE_RELATIVE,
        NADIR_FLOOR_MM,
        site,
        site,
    ]
    if person_ids is None:
        frame = con.execute(_FLAGGED, params).df()
    else:
        con.register(
            "_worklist_ids", pd.DataFrame({"person_id": np.asarray(person_ids, dtype=np.int64)})
        )
        try:
            frame = con.execute(_FLAGGED_LISTED, params).df()
        finally:
            con.unregister("_worklist_ids")
    frame["progression"] = frame["progression"].astype(bool)
    frame["response"] = frame["response"].astype(bool)
    return frame


def risks(
    con: duckdb.DuckDBPyConnection, person_ids: np.ndarray, prior, clinic=None, as_of=None
) -> pd.DataFrame:
    """``forecast.cohort_risk`` in batches of ``RISK_CHUNK`` patients (in the order given).

    Why batches: the risk simulates 400 future readings per patient, and parameter draws for
    600,000 patients at once would need over 10 GB; by batch the peak stays near 1 GB. The
    batches are a fixed function of the list, so the same list gives the same numbers.
    """
    ids = np.asarray(person_ids, dtype=np.int64)
    parts = [
        cohort_risk(con, ids[i : i + RISK_CHUNK], prior, clinic, as_of)
        for i in range(0, ids.size, RISK_CHUNK)
    ]
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else cohort_risk(con, ids, prior, clinic, as_of)
    )


def rank_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in worklist order: ``risk_6m`` descending (no forecast last), regrowth ratio descending, id."""
    return (
        frame.assign(_missing=frame["risk_6m"].isna())
        .sort_values(
            ["_missing", "risk_6m", "regrowth_ratio", "person_id"],
            ascending=[True, False, False, True],
            kind="stable",
        )
        .drop(columns="_missing")
    )


def ranked(
    con: duckdb.DuckDBPyConnection,
    site: str | None = None,
    *,
    prior=None,
    clinic=None,
    as_of=None,
) -> pd.DataFrame:
    """The whole (site-filtered) list with RECIST flags and forecast risks, in rank order.

    ``prior``: the cohort's growth-inhibition prior (estimated from the store when None);
    ``clinic``: a loaded ``treatment_clinic.ClinicModel`` for the recurrence part, or None
    (the risk is then the tumour part alone, and ``risk_parts`` says so).
    """
    frame = flagged(con, site)
    if prior is None:
        prior = estimate_prior(con)
    risk = risks(con, frame["person_id"].to_numpy(dtype=np.int64), prior, clinic, as_of)
    frame = rank_order(frame.merge(risk, on="person_id", how="left"))
    return frame[list(WORKLIST_COLUMNS)].reset_index(drop=True)


def page(
    ranked_rows: pd.DataFrame,
    limit: int = 25,
    offset: int = 0,
    only_progression: bool = False,
    site: str | None = None,
) -> WorklistPage:
    """One page of an already ranked list; ``total`` counts the whole filtered list.

    Positions, not a filtered copy: only the page's rows are taken from the frame (the
    benchmark's pandas side pages the stored ranking of a million patients with this).
    """
    limit = max(1, int(limit))
    offset = max(0, int(offset))
    if not only_progression and not site:
        rows, total = ranked_rows.iloc[offset : offset + limit], len(ranked_rows)
    else:
        keep = np.ones(len(ranked_rows), dtype=bool)
        if only_progression:
            keep &= ranked_rows["progression"].to_numpy(dtype=bool)
        if site:
            keep &= (ranked_rows["site"] == site).to_numpy(dtype=bool)
        positions = np.flatnonzero(keep)
        rows, total = ranked_rows.iloc[positions[offset : offset + limit]], len(positions)
    return WorklistPage(rows=rows.reset_index(drop=True), total=total, limit=limit, offset=offset)


def worklist(
    con: duckdb.DuckDBPyConnection,
    limit: int = 25,
    offset: int = 0,
    only_progression: bool = False,
    site: str | None = None,
    *,
    prior=None,
    clinic=None,
) -> WorklistPage:
    """One page of patients ranked by forecast risk, computed now (see ``ranked``).

    ``site`` restricts to one treating clinic; ``only_progression`` keeps
    patients meeting RECIST 1.1 progression. ``total`` counts the whole
    filtered list, so a page can say "26-50 of 1,234". The whole list is ranked,
    then filtered, so a patient's risk does not depend on the filter (as in the
    stored worklist, ``worklist_store.read_page``, which the app reads).
    """
    return page(ranked(con, prior=prior, clinic=clinic), limit, offset, only_progression, site)


def sites(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The treating clinics present in the store, for the site filter."""
    return [
        row[0] for row in con.execute("SELECT DISTINCT site FROM person ORDER BY site").fetchall()
    ]
