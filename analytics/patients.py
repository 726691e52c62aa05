"""One patient's record: finding a patient, and everything the Patient page shows about her.

Why these shapes: the page, the CLI and later the report writer need the same
facts, so they come from one function that returns a frozen dataclass of plain
values and DataFrames (dates as ``datetime.date``, sizes in mm, units in the
field names).

Why these queries: every query filters on ``person_id`` (or a prefix of the
MRN, which the store writes in the same order). The demo tables are physically
ordered by ``person_id``, so DuckDB's zone maps skip every row group but the
one or two that hold the patient, and a lookup stays in milliseconds at a
million patients. Nothing here loads a whole table.

Direct identifiers: names and birth dates stay in the store. Until sign-in and
roles exist, pages identify a patient by MRN and id only, so this module does
not read names at all (data minimisation: what is never loaded cannot leak
into a cache, a log or a screenshot).

AI measurements (``source = 'ai'``) are read behind the ethics board's sign-off: where the admin
requires approval, those of weights not approved are not part of the record
(``analytics.governance.lifecycle.measurements``), so no chart, table or report built from it
shows them.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.governance.lifecycle import measurements as ai_measurements

SEARCH_LIMIT_MAX = 200
LESION_CONCEPT = "lesion_longest_diameter"


class UnknownPatientError(LookupError):
    """No patient with the requested id; the message is meant for the user."""


@dataclass(frozen=True)
class Demographics:
    """Who the patient is, without direct identifiers other than the MRN."""

    person_id: int
    mrn: str
    sex: str
    site: str
    menopausal_status: str  # 'pre' | 'post'
    age_at_diagnosis_years: int | None  # whole years; None without a recorded diagnosis


@dataclass(frozen=True)
class Diagnosis:
    """The index cancer diagnosis (the earliest one recorded)."""

    condition: str
    diagnosis_date: dt.date
    laterality: str
    stage: str
    grade: int
    tumour_size_mm: float
    positive_nodes: int
    er_fmol: float  # oestrogen receptor, fmol/mg protein
    pr_fmol: float  # progesterone receptor, fmol/mg protein
    er_positive: bool
    pr_positive: bool
    her2_positive: bool


@dataclass(frozen=True)
class ObservationPeriod:
    """The span in which the record is complete; outcomes after ``end_date`` are unknown."""

    start_date: dt.date
    end_date: dt.date
    end_reason: str  # 'data_cutoff' | 'lost_to_follow_up' | 'death'


@dataclass(frozen=True, eq=False)
class PatientSummary:
    """Everything the Patient page shows about one patient.

    DataFrames (one row per item, oldest first):

    - ``treatments``: line_of_therapy, treatment_class, agent, regimen,
      exposure_type, start_date, end_date (NaT while ongoing), ongoing;
    - ``measurements``: measurement_date, concept, value, unit, source, study_uid;
    - ``imaging_studies``: study_uid, study_date, modality, description,
      accession_number, lesion_longest_diameter_mm (the value read from the
      study, if any);
    - ``outcome_events``: event_type, event_date, days_from_diagnosis.

    ``eq=False``: DataFrames do not compare to a single truth value.
    """

    demographics: Demographics
    diagnosis: Diagnosis | None
    observation_period: ObservationPeriod | None
    treatments: pd.DataFrame
    measurements: pd.DataFrame
    imaging_studies: pd.DataFrame
    outcome_events: pd.DataFrame

    @property
    def person_id(self) -> int:
        return self.demographics.person_id

    @property
    def mrn(self) -> str:
        return self.demographics.mrn


SEARCH_COLUMNS = ("person_id", "mrn", "site", "menopausal_status", "name", "birth_date")
# name and birth date: what tells two patients apart in a list of matches
_SEARCH_SELECT = (
    "SELECT person_id, mrn, site, menopausal_status, family_name || ', ' || given_name AS name, "
    "birth_date FROM person"
)
_NAME_WORD = "(starts_with(lower(given_name), ?) OR starts_with(lower(family_name), ?))"
NAME_WORDS_MAX = (
    4  # "Lange, Aisha", "aisha lange", "la ai": each word starts a given or family name
)


def _empty_search() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": pd.Series(dtype="int64"),
            "mrn": pd.Series(dtype="object"),
            "site": pd.Series(dtype="object"),
            "menopausal_status": pd.Series(dtype="object"),
            "name": pd.Series(dtype="object"),
            "birth_date": pd.Series(dtype="datetime64[us]"),
        }
    )


def _birth_date(text: str) -> dt.date | None:
    """A date of birth typed as YYYY-MM-DD (the one unambiguous way), else None."""
    try:
        return dt.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        return None


def _prefix_upper_bound(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix``.

    A range (``mrn >= prefix AND mrn < bound``) instead of ``LIKE prefix || '%'``
    lets DuckDB prune row groups by their min/max MRN, and needs no escaping of
    ``%`` or ``_`` typed by a user.
    """
    last = prefix[-1]
    if ord(last) >= 0x10FFFF:
        return prefix + "\U0010ffff"
    return prefix[:-1] + chr(ord(last) + 1)


def search_patients(con: duckdb.DuckDBPyConnection, text: str, limit: int = 20) -> pd.DataFrame:
    """Patients found by id, MRN, name or date of birth, at most ``limit`` rows.

    ``text`` of digits is an exact person id (and also the digits of an MRN, so
    ``00000042`` finds MRN00000042); ``YYYY-MM-DD`` a date of birth; text starting with
    ``MRN`` an MRN prefix (case-insensitive); other text with letters is a name: every word
    (at most ``NAME_WORDS_MAX``) must start the given or the family name, case-insensitive,
    so "Lange, Aisha", "aisha lange" and "lan" all work; and it is also tried as an MRN prefix.
    An empty text finds nothing rather than listing the clinic. Columns: ``SEARCH_COLUMNS``
    (name and birth date tell two patients apart); exact id matches first, then MRN order.
    Values are always parameters: starts_with needs no escaping of ``%`` or ``_``.
    """
    text = (text or "").strip()
    limit = max(1, min(int(limit), SEARCH_LIMIT_MAX))
    if not text:
        return _empty_search()
    frames: list[pd.DataFrame] = []
    if text.isdigit():
        person_id = int(text)
        if person_id < 2**63:
            frames.append(con.execute(f"{_SEARCH_SELECT} WHERE person_id = ?", [person_id]).df())
        prefix = "MRN" + text
    elif text[:3].upper() == "MRN":
        prefix = "MRN" + text[3:]
    else:
        prefix = text
    born = _birth_date(text)
    if born is not None:
        frames.append(
            con.execute(
                f"{_SEARCH_SELECT} WHERE birth_date = ? ORDER BY family_name, given_name, mrn LIMIT ?",
                [born, limit],
            ).df()
        )
    frames.append(
        con.execute(
            f"{_SEARCH_SELECT} WHERE mrn >= ? AND mrn < ? ORDER BY mrn LIMIT ?",
            [prefix, _prefix_upper_bound(prefix), limit],
        ).df()
    )
    words = text.lower().replace(",", " ").split()
    if (
        born is None
        and text[:3].upper() != "MRN"
        and any(c.isalpha() for c in text)
        and len(words) <= NAME_WORDS_MAX
    ):
        where = " AND ".join([_NAME_WORD] * len(words))  # the same constant fragment per word
        frames.append(
            con.execute(
                f"{_SEARCH_SELECT} WHERE {where} ORDER BY family_name, given_name, mrn LIMIT ?",  # noqa: S608 - constants
                [*(w for word in words for w in (word, word)), limit],
            ).df()
        )
    found = [f for f in frames if not f.empty]
    if not found:
        return _empty_search()
    matches = pd.concat(found, ignore_index=True).drop_duplicates("person_id")
    return matches.head(limit).reset_index(drop=True)


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(value).date()


# (name, kind) of each list the record query returns, in its struct order; kinds: "date", "float",
# "int8", "text". The frames get the dtypes DuckDB's ``.df()`` gave them before (dates as datetime64).
_TREATMENT_COLUMNS = (
    ("line_of_therapy", "int8"),
    ("treatment_class", "text"),
    ("agent", "text"),
    ("regimen", "text"),
    ("exposure_type", "text"),
    ("start_date", "date"),
    ("end_date", "date"),
)
_MEASUREMENT_COLUMNS = (
    ("measurement_date", "date"),
    ("concept", "text"),
    ("value", "float"),
    ("unit", "text"),
    ("source", "text"),
    ("study_uid", "text"),
)
_STUDY_COLUMNS = (
    ("study_uid", "text"),
    ("study_date", "date"),
    ("modality", "text"),
    ("description", "text"),
    ("accession_number", "text"),
)
_EVENT_COLUMNS = (("event_type", "text"), ("event_date", "date"))
_NUMPY_DTYPE: dict[str, npt.DTypeLike] = {
    "date": "datetime64[us]",
    "float": np.float64,
    "int8": np.int8,
    "text": object,
}


def _rows_sql(
    table: str, columns: tuple[tuple[str, str], ...], order: str, where: str = "TRUE"
) -> str:
    fields = ", ".join(name for name, _ in columns)
    return f"SELECT list(({fields}) ORDER BY {order}) AS rows FROM {table} WHERE person_id = $1 AND {where}"  # noqa: S608


# One statement for the whole record. The five lookups it replaces were ~3 ms each in DuckDB but
# each paid a statement's planning and a DataFrame conversion (``.df()``, 2-4 ms): 46 ms warm at a
# million patients, now ~20 ms. Each subquery filters on person_id, so zone maps still prune, and
# ``LEFT JOIN ... ON TRUE`` of one-row subqueries keeps the planner from reordering joins.
_RECORD_SQL = """
    SELECT p.person_id, p.mrn, p.sex, p.site, p.menopausal_status,
           date_sub('year', p.birth_date, c.diagnosis_date) AS age_at_diagnosis_years,
           c.condition, c.diagnosis_date, c.laterality, c.stage, c.grade, c.tumour_size_mm,
           c.positive_nodes, c.er_fmol, c.pr_fmol, c.er_positive, c.pr_positive,
           c.her2_positive,
           op.start_date, op.end_date, op.end_reason,
           t.rows, m.rows, s.rows, e.rows
    FROM (SELECT * FROM person WHERE person_id = $1) AS p
    LEFT JOIN (
        SELECT * FROM condition_occurrence WHERE person_id = $1
        ORDER BY diagnosis_date, condition_id LIMIT 1
    ) AS c ON TRUE
    LEFT JOIN (SELECT * FROM observation_period WHERE person_id = $1) AS op ON TRUE
    LEFT JOIN ({treatments}) AS t ON TRUE
    LEFT JOIN ({measurements}) AS m ON TRUE
    LEFT JOIN ({studies}) AS s ON TRUE
    LEFT JOIN ({events}) AS e ON TRUE
"""


@functools.lru_cache(maxsize=4)
def _record_sql(shown: str) -> str:
    """``_RECORD_SQL`` whose measurements are those ``shown`` lets through: the AI measurements
    behind the ethics board's sign-off (``analytics.governance.lifecycle.measurements.shown``, one
    of its few constant conditions, never input)."""
    return _RECORD_SQL.format(
        treatments=_rows_sql(
            "treatment_exposure", _TREATMENT_COLUMNS, "start_date, line_of_therapy, exposure_id"
        ),
        measurements=_rows_sql(
            "measurement", _MEASUREMENT_COLUMNS, "measurement_date, concept, measurement_id", shown
        ),
        studies=_rows_sql("imaging_study", _STUDY_COLUMNS, "study_date, study_uid"),
        events=_rows_sql("outcome_event", _EVENT_COLUMNS, "event_date, event_type"),
    )  # built from the constant column lists above, never from input


def _frame(rows: list[tuple] | None, columns: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """A DataFrame from a query's list of row tuples, column by column with fixed dtypes."""
    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pd.DataFrame(
        {
            name: np.array(col, dtype=_NUMPY_DTYPE[kind])
            for (name, kind), col in zip(columns, values, strict=True)
        }
    )


def patient_summary(con: duckdb.DuckDBPyConnection, person_id: int) -> PatientSummary:
    """The whole record of one patient; raises ``UnknownPatientError`` for an unknown id.

    One query (``_RECORD_SQL``), every part restricted to ``person_id`` so that zone
    maps prune; the imaging and event tables are completed from rows already read.
    """
    if isinstance(person_id, bool) or not isinstance(person_id, int):
        raise UnknownPatientError(f"no patient with id {person_id!r}")
    if not 0 <= person_id < 2**63:
        raise UnknownPatientError(f"no patient with id {person_id}")
    # fetchall: a half-read result blocks con.register() afterwards (zero or one row here)
    found = con.execute(
        _record_sql(ai_measurements.shown(con, "measurement")), [person_id]
    ).fetchall()
    record = found[0] if found else None
    if record is None:
        raise UnknownPatientError(f"no patient with id {person_id}")
    (
        pid,
        mrn,
        sex,
        site,
        menopausal_status,
        age_years,
        condition,
        diagnosis_date,
        laterality,
        stage,
        grade,
        tumour_size_mm,
        positive_nodes,
        er_fmol,
        pr_fmol,
        er_positive,
        pr_positive,
        her2_positive,
        op_start,
        op_end,
        op_reason,
        treatment_rows,
        measurement_rows,
        study_rows,
        event_rows,
    ) = record

    demographics = Demographics(
        person_id=int(pid),
        mrn=str(mrn),
        sex=str(sex),
        site=str(site),
        menopausal_status=str(menopausal_status),
        age_at_diagnosis_years=None if age_years is None else int(age_years),
    )
    diagnosis = None
    if condition is not None:
        diagnosis = Diagnosis(
            condition=str(condition),
            diagnosis_date=_as_date(diagnosis_date),
            laterality=str(laterality),
            stage=str(stage),
            grade=int(grade),
            tumour_size_mm=float(tumour_size_mm),
            positive_nodes=int(positive_nodes),
            er_fmol=float(er_fmol),
            pr_fmol=float(pr_fmol),
            er_positive=bool(er_positive),
            pr_positive=bool(pr_positive),
            her2_positive=bool(her2_positive),
        )
    observation = None
    if op_start is not None:
        observation = ObservationPeriod(_as_date(op_start), _as_date(op_end), str(op_reason))

    treatments = _frame(treatment_rows, _TREATMENT_COLUMNS)
    treatments["ongoing"] = treatments["end_date"].isna()
    measurements = _frame(measurement_rows, _MEASUREMENT_COLUMNS)
    # The lesion size per study and the days from diagnosis come from rows already read
    # (the measurements, the index diagnosis): no scans of the largest tables for them.
    lesion_by_study: dict[str, float] = {}
    for _, concept, value, _, _, uid in measurement_rows or ():
        if concept == LESION_CONCEPT and uid is not None and value is not None:
            lesion_by_study[uid] = max(value, lesion_by_study.get(uid, value))
    imaging = _frame(study_rows, _STUDY_COLUMNS)
    imaging["lesion_longest_diameter_mm"] = np.array(
        [lesion_by_study.get(uid, np.nan) for uid in imaging["study_uid"]], dtype=np.float64
    )
    events = _frame(event_rows, _EVENT_COLUMNS)
    if diagnosis_date is None:  # the earliest diagnosis (the header's index diagnosis), if any
        events["days_from_diagnosis"] = np.nan
    else:
        days = events["event_date"].to_numpy() - np.datetime64(diagnosis_date, "us")
        events["days_from_diagnosis"] = (days // np.timedelta64(1, "D")).astype("int64")
    return PatientSummary(
        demographics=demographics,
        diagnosis=diagnosis,
        observation_period=observation,
        treatments=treatments,
        measurements=measurements,
        imaging_studies=imaging,
        outcome_events=events,
    )


def recent_imaging_studies(con: duckdb.DuckDBPyConnection, limit: int = 50) -> pd.DataFrame:
    """The clinic's most recent imaging studies (newest first), for a page with no patient chosen.

    Columns: study_uid, study_date, modality, description, accession_number,
    person_id, mrn. A top-N over the study table; the MRN is joined for the
    ``limit`` rows only.
    """
    limit = max(1, min(int(limit), 1000))
    return con.execute(
        """
        SELECT s.study_uid, s.study_date, s.modality, s.description, s.accession_number,
               s.person_id, p.mrn
        FROM (
            SELECT * FROM imaging_study ORDER BY study_date DESC, study_uid LIMIT ?
        ) AS s
        LEFT JOIN person AS p USING (person_id)
        ORDER BY s.study_date DESC, s.study_uid
        """,
        [limit],
    ).df()
