"""The care team's worklist: which patients to look at first (an INTERIM ranking).

The score here is a stop-gap until the forecast issue ranks patients by their
forecast risk: it is the ratio of the latest target-lesion longest diameter to
its nadir (the smallest value recorded), so a lesion that regrows from its best
response floats to the top. It is not a validated risk score and the page says
so.

RECIST 1.1 flags are computed from the same series (one target lesion, so the
"sum of diameters" is its longest diameter):

- progression: latest >= 1.2 x nadir AND latest - nadir >= 5 mm;
- response: latest <= 0.7 x baseline (a decrease of at least 30 % from the
  first measurement).

Baseline and latest are the values on the first and last measurement dates
(two readings on one date: either may be taken).

Who is on the list: patients alive and without a recorded recurrence at their
last follow-up (no ``outcome_event`` row and an observation period that did not
end in death) who have at least one lesion measurement.

Why one set-based query: at a million patients the measurement table holds
about 47 million rows; one grouped scan with ``arg_min``/``arg_max`` and a
window count answers a page in about a second on two cores (a per-patient loop
would take minutes). Eligibility and the site filter are anti/semi-joins on
person ids, and MRNs are joined only to the page's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

LESION_CONCEPT = "lesion_longest_diameter"
PROGRESSION_RELATIVE = 0.20   # RECIST 1.1: >= 20 % over the nadir ...
PROGRESSION_ABSOLUTE_MM = 5.0  # ... and >= 5 mm absolute increase
RESPONSE_RELATIVE = 0.30      # RECIST 1.1 partial response: >= 30 % below baseline
NADIR_FLOOR_MM = 1.0          # score denominator floor: regrowth after a 0 mm nadir ranks high

WORKLIST_COLUMNS = (
    "person_id", "mrn", "site", "n_measurements", "baseline_date", "baseline_mm", "nadir_mm",
    "latest_date", "latest_mm", "change_from_nadir_pct", "change_from_baseline_pct",
    "progression", "response", "score",
)


@dataclass(frozen=True, eq=False)
class WorklistPage:
    """One page of the worklist and the size of the whole (filtered) list.

    ``rows`` has the columns of ``WORKLIST_COLUMNS``, sorted by ``score``
    (interim: latest / nadir lesion diameter) descending, ties by ``person_id``;
    sizes in mm, changes in percent.
    """

    rows: pd.DataFrame
    total: int
    limit: int
    offset: int


_RANKED = """
WITH lesion AS (
    SELECT person_id,
           count(*)                          AS n_measurements,
           min(measurement_date)             AS baseline_date,
           arg_min(value, measurement_date)  AS baseline_mm,
           min(value)                        AS nadir_mm,
           max(measurement_date)             AS latest_date,
           arg_max(value, measurement_date)  AS latest_mm
    FROM measurement
    WHERE concept = ?
    GROUP BY person_id
),
flagged AS (
    SELECT *,
           latest_mm >= (1 + ?) * nadir_mm AND latest_mm - nadir_mm >= ? AS progression,
           baseline_mm > 0 AND latest_mm <= (1 - ?) * baseline_mm       AS response,
           latest_mm / greatest(nadir_mm, ?)                             AS score
    FROM lesion
    WHERE person_id NOT IN (SELECT person_id FROM outcome_event)
      AND person_id NOT IN (SELECT person_id FROM observation_period WHERE end_reason = 'death')
      AND person_id IN (SELECT person_id FROM person WHERE ?::VARCHAR IS NULL OR site = ?)
),
page AS (
    SELECT *, count(*) OVER () AS total
    FROM flagged
    WHERE (NOT ? OR progression)
    ORDER BY score DESC, person_id
    LIMIT ? OFFSET ?
)
SELECT page.person_id, p.mrn, p.site, n_measurements, baseline_date, baseline_mm, nadir_mm,
       latest_date, latest_mm,
       100 * (latest_mm - nadir_mm) / nullif(nadir_mm, 0)       AS change_from_nadir_pct,
       100 * (latest_mm - baseline_mm) / nullif(baseline_mm, 0) AS change_from_baseline_pct,
       progression, response, score, total
FROM page JOIN person AS p USING (person_id)
ORDER BY score DESC, page.person_id
"""


def worklist(
    con: duckdb.DuckDBPyConnection,
    limit: int = 25,
    offset: int = 0,
    only_progression: bool = False,
    site: str | None = None,
) -> WorklistPage:
    """One page of patients ranked by the INTERIM score (latest / nadir lesion diameter).

    ``site`` restricts to one treating clinic; ``only_progression`` keeps
    patients meeting RECIST 1.1 progression. ``total`` counts the whole
    filtered list, so a page can say "26-50 of 1,234".
    """
    limit = max(1, int(limit))
    offset = max(0, int(offset))
    site = site or None
    params = [
        LESION_CONCEPT,
        PROGRESSION_RELATIVE, PROGRESSION_ABSOLUTE_MM, RESPONSE_RELATIVE, NADIR_FLOOR_MM,
        site, site,
        bool(only_progression),
        limit, offset,
    ]
    frame = con.execute(_RANKED, params).df()
    if not frame.empty:
        total = int(frame["total"].iloc[0])
    elif offset == 0:
        total = 0
    else:
        # A page past the end carries no window count: count the list once more.
        total = worklist(con, 1, 0, only_progression, site).total
    rows = frame.drop(columns="total").reset_index(drop=True)
    rows["progression"] = rows["progression"].astype(bool)
    rows["response"] = rows["response"].astype(bool)
    return WorklistPage(rows=rows, total=total, limit=limit, offset=offset)


def sites(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The treating clinics present in the store, for the site filter."""
    return [row[0] for row in con.execute("SELECT DISTINCT site FROM person ORDER BY site").fetchall()]
