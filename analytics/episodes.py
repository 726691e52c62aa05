"""Disease settings and lines of therapy: each patient's course as episodes, and where she is now.

Why episodes (OMOP's episode idea): a model or a chart is only honest inside the setting it was
built for (../shared/CLINICAL.md, "Disease settings"). Early disease (diagnosis -> surgery ->
adjuvant therapy -> surveillance), neoadjuvant therapy (a measurable primary treated before
surgery) and metastatic disease (de novo or after a recurrence, as lines of therapy each with
start, end and the reason it ended) are different questions, and pages, the CLI and the report
must agree which one a patient is in. ``care_setting`` answers it from the ``episode`` table.

Where episodes come from: the demo writes them (it knows why each line ended); imports carry
them (docs/imports.md); a store made before schema version 9 gets them derived by
``derive_episodes`` from its diagnoses, treatments and outcome events, which also writes, per
patient, what it could not derive (``episode_note``: line end reasons are not in treatment
records, a recurrence without treatment after it has no lines). A store without the table (read
only, not migrated) still gets a setting, from diagnosis stage and recurrence events, marked as such.

This module imports nothing of ``analytics.store`` (the migration calls ``derive_episodes`` with
its own connection), and every query takes parameters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import numpy as np

SETTINGS = ("early", "metastatic")
KINDS = ("disease", "neoadjuvant", "adjuvant", "surveillance", "line", "best_supportive_care")
END_REASONS = ("completed", "progression", "recurrence", "death", "toxicity", "surgery", "other")
SOURCES = ("demo", "import", "derived")

TABLE_STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS episode (
        episode_id       BIGINT PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        setting          VARCHAR NOT NULL CHECK (setting IN {SETTINGS}),
        kind             VARCHAR NOT NULL CHECK (kind IN {KINDS}),
        line_number      SMALLINT CHECK (line_number IS NULL OR line_number >= 1),
        start_date       DATE NOT NULL,
        end_date         DATE,                         -- NULL: ongoing, or end not known
        end_reason       VARCHAR CHECK (end_reason IS NULL OR end_reason IN {END_REASONS}),
        detail           VARCHAR,                      -- a line's regimen; 'after recurrence' / 'de novo'
        source           VARCHAR NOT NULL CHECK (source IN {SOURCES}),
        CHECK (end_date IS NULL OR end_date >= start_date),
        CHECK ((kind = 'line') = (line_number IS NOT NULL))
    )""",
    # what could not be derived or imported for a patient, in words a clinician reads
    """CREATE TABLE IF NOT EXISTS episode_note (
        person_id        BIGINT NOT NULL,
        note             VARCHAR NOT NULL,
        noted_at         TIMESTAMP NOT NULL
    )""",
)

SETTING_WORDS = {"early": "early breast cancer", "metastatic": "metastatic breast cancer"}
PHASE_WORDS = {
    "disease": "diagnosed",
    "neoadjuvant": "neoadjuvant therapy",
    "adjuvant": "adjuvant therapy",
    "surveillance": "surveillance after adjuvant therapy",
    "best_supportive_care": "best supportive care",
}


@dataclass(frozen=True)
class LineOfTherapy:
    """One line of therapy in the metastatic setting (``number`` from 1)."""

    number: int
    start_date: dt.date
    end_date: dt.date | None  # None: ongoing (or end not recorded)
    end_reason: str | None
    regimen: str | None

    def to_json(self) -> dict:
        return {
            "number": self.number,
            "start_date": self.start_date.isoformat(),
            "end_date": None if self.end_date is None else self.end_date.isoformat(),
            "end_reason": self.end_reason,
            "regimen": self.regimen,
        }


@dataclass(frozen=True)
class CareSetting:
    """Where one patient is in her course on ``as_of``: setting, phase, line and since when.

    ``setting``: 'early', 'metastatic' or 'unknown' (no diagnosis); ``phase``: a KINDS value
    (the latest phase begun by ``as_of``), None when only the disease is known; ``since``: the
    phase's start (the setting's when there is no phase); ``phase_ended``: the phase's end when it
    ended before ``as_of`` without a successor (e.g. a line ended by progression, next line not
    started); ``recorded``: False when derived on the fly from stage and events (no episodes);
    ``neoadjuvant_since``: the start of neoadjuvant therapy (treatment before surgery) in her
    course, None if she had none (the adjuvant treatment model does not apply to her).
    """

    person_id: int
    as_of: dt.date
    setting: str
    setting_since: dt.date | None
    phase: str | None
    since: dt.date | None
    line: int | None = None
    regimen: str | None = None
    phase_ended: dt.date | None = None
    phase_end_reason: str | None = None
    recurrence_date: dt.date | None = None
    de_novo: bool = False
    died_on: dt.date | None = None
    lines: tuple[LineOfTherapy, ...] = ()
    recorded: bool = True
    notes: tuple[str, ...] = field(default=())
    neoadjuvant_since: dt.date | None = None

    @property
    def recurred(self) -> bool:
        return self.recurrence_date is not None

    @property
    def metastatic(self) -> bool:
        return self.setting == "metastatic"

    @property
    def headline(self) -> str:
        """One line for a banner: setting, line or phase, and since when."""
        if self.setting == "unknown":
            return "Disease setting unknown: no cancer diagnosis recorded"
        words = SETTING_WORDS[self.setting].capitalize()
        if self.metastatic:
            origin = (
                "de novo"
                if self.de_novo
                else (
                    f"recurrence {self.recurrence_date:%Y-%m-%d}"
                    if self.recurrence_date
                    else "origin not recorded"
                )
            )
            words += f" ({origin})"
        if self.phase == "line" and self.line is not None:
            phase = f"line {self.line}" + (f": {self.regimen}" if self.regimen else "")
        elif self.phase is not None and self.phase != "disease":
            phase = PHASE_WORDS[self.phase]
        else:
            phase = None
        parts = [words]
        if phase is not None:
            if self.phase_ended is not None:
                why = f" ({self.phase_end_reason})" if self.phase_end_reason else ""
                parts.append(
                    f"{phase} ended {self.phase_ended:%Y-%m-%d}{why}; nothing after it recorded"
                )
            else:
                parts.append(f"{phase} since {self.since:%Y-%m-%d}" if self.since else phase)
        elif self.setting_since is not None:
            parts.append(f"since {self.setting_since:%Y-%m-%d}")
        if self.died_on is not None:
            parts.append(f"died {self.died_on:%Y-%m-%d}")
        return " · ".join(parts)

    def to_json(self) -> dict:
        def iso(d: dt.date | None) -> str | None:
            return None if d is None else d.isoformat()

        return {
            "setting": self.setting,
            "setting_since": iso(self.setting_since),
            "phase": self.phase,
            "since": iso(self.since),
            "line": self.line,
            "regimen": self.regimen,
            "phase_ended": iso(self.phase_ended),
            "phase_end_reason": self.phase_end_reason,
            "recurrence_date": iso(self.recurrence_date),
            "de_novo": self.de_novo,
            "died_on": iso(self.died_on),
            "as_of": self.as_of.isoformat(),
            "headline": self.headline,
            "lines": [line.to_json() for line in self.lines],
            "recorded": self.recorded,
            "notes": list(self.notes),
            "neoadjuvant_since": iso(self.neoadjuvant_since),
        }


def has_episode_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_name = 'episode'"
        ).fetchall()[0][0]
    )


def _cutoff(con: duckdb.DuckDBPyConnection) -> dt.date:
    rows = con.execute("SELECT value FROM clinic_metadata WHERE key = 'data_cutoff'").fetchall()
    if rows:
        try:
            return dt.date.fromisoformat(str(rows[0][0])[:10])
        except ValueError:
            pass
    return dt.date.today()


def episodes_frame(con: duckdb.DuckDBPyConnection, person_id: int):
    """The patient's episodes in course order (a DataFrame); empty without the table."""
    if not has_episode_table(con):
        return con.execute("SELECT NULL AS episode_id WHERE false").df()
    return con.execute(
        """SELECT setting, kind, line_number, start_date, end_date, end_reason, detail, source
           FROM episode WHERE person_id = ?
           ORDER BY CASE setting WHEN 'early' THEN 0 ELSE 1 END, start_date,
                    CASE kind WHEN 'disease' THEN 0 ELSE 1 END, episode_id""",
        [int(person_id)],
    ).df()


def care_setting(
    con: duckdb.DuckDBPyConnection, person_id: int, as_of: dt.date | None = None
) -> CareSetting:
    """Where the patient is on ``as_of`` (default: the store's data cut-off, else today).

    One query for her episodes and one for her events and diagnosis (both pruned to her id).
    Raises nothing for a missing record: an unknown patient gets setting 'unknown'.
    """
    pid = int(person_id)
    as_of = as_of or _cutoff(con)
    facts = con.execute(
        """SELECT (SELECT min(diagnosis_date) FROM condition_occurrence WHERE person_id = $1),
                  (SELECT bool_or(stage = 'IV') FROM condition_occurrence WHERE person_id = $1),
                  (SELECT min(event_date) FROM outcome_event WHERE person_id = $1 AND event_type = 'recurrence'),
                  (SELECT min(event_date) FROM outcome_event WHERE person_id = $1 AND event_type = 'death'),
                  (SELECT max(end_date) FROM observation_period
                   WHERE person_id = $1 AND end_reason = 'lost_to_follow_up')""",
        [pid],
    ).fetchall()[0]
    diagnosis, stage_iv, recurrence, death, lost = facts
    recurrence = recurrence if recurrence is not None and recurrence <= as_of else None
    death = death if death is not None and death <= as_of else None
    lost_note = []
    later = [d for d in (recurrence, death) if d is not None and lost is not None and d > lost]
    if lost is not None and lost < as_of and not later:
        # nothing is known after her last follow-up: "months on this line" and the phase stop
        # there (unless a recurrence or death was recorded later, e.g. from a registry: then
        # her record continues and nothing is hidden)
        as_of = lost
        lost_note = [f"lost to follow-up on {lost:%Y-%m-%d}: her course is shown as of that day"]
    rows = []
    notes: list[str] = []
    if has_episode_table(con):
        rows = con.execute(
            """SELECT setting, kind, line_number, start_date, end_date, end_reason, detail
               FROM episode WHERE person_id = ? AND start_date <= ?
               ORDER BY start_date, CASE kind WHEN 'disease' THEN 0 ELSE 1 END, episode_id""",
            [pid, as_of],
        ).fetchall()
        notes = [
            r[0]
            for r in con.execute(
                "SELECT note FROM episode_note WHERE person_id = ? ORDER BY noted_at, note", [pid]
            ).fetchall()
        ]
    notes += lost_note
    if not rows or diagnosis is None:  # episodes without a diagnosis: an inconsistent record
        return _from_facts(pid, as_of, diagnosis, bool(stage_iv), recurrence, death, notes)
    diseases = [r for r in rows if r[1] == "disease"]
    current = diseases[-1] if diseases else rows[-1]
    setting = current[0]
    phases = [r for r in rows if r[0] == setting and r[1] != "disease"]
    phase = phases[-1] if phases else None
    lines = tuple(
        LineOfTherapy(int(r[2]), r[3], r[4], r[5], r[6])
        for r in rows
        if r[1] == "line" and r[0] == "metastatic"
    )
    ended = phase is not None and phase[4] is not None and phase[4] < as_of
    metastatic_start = next((r for r in diseases if r[0] == "metastatic"), None)
    # de novo: as recorded; when the origin is not recorded, stage IV at diagnosis with no
    # recurrence before it says the same (an import may leave the detail out)
    de_novo = metastatic_start is not None and (
        metastatic_start[6] == "de novo"
        or (metastatic_start[6] is None and bool(stage_iv) and recurrence is None)
    )
    neoadjuvant = next((r[3] for r in rows if r[1] == "neoadjuvant"), None)
    return CareSetting(
        person_id=pid,
        as_of=as_of,
        setting=setting,
        setting_since=current[3],
        phase=None if phase is None else phase[1],
        since=current[3] if phase is None else phase[3],
        line=None if phase is None or phase[2] is None else int(phase[2]),
        regimen=None if phase is None or phase[1] != "line" else phase[6],
        phase_ended=phase[4] if ended and phase is not None else None,
        phase_end_reason=phase[5] if ended and phase is not None else None,
        recurrence_date=recurrence
        or (metastatic_start[3] if metastatic_start is not None and not de_novo else None),
        de_novo=de_novo,
        died_on=death,
        lines=lines,
        recorded=True,
        notes=tuple(notes),
        neoadjuvant_since=neoadjuvant,
    )


def _from_facts(pid, as_of, diagnosis, stage_iv, recurrence, death, notes) -> CareSetting:
    """No episodes recorded: the setting from the diagnosis stage and the recurrence event."""
    if diagnosis is None:
        return CareSetting(pid, as_of, "unknown", None, None, None, died_on=death, recorded=False)
    metastatic = stage_iv or recurrence is not None
    since = (recurrence or diagnosis) if metastatic else diagnosis
    return CareSetting(
        person_id=pid,
        as_of=as_of,
        setting="metastatic" if metastatic else "early",
        setting_since=since,
        phase=None,
        since=since,
        recurrence_date=recurrence,
        de_novo=bool(stage_iv),
        died_on=death,
        recorded=False,
        notes=(
            *notes,
            "no episodes recorded: the setting comes from the diagnosis stage and recurrence events; "
            "lines of therapy are unknown",
        ),
    )


# --- deriving episodes for a store that has none ----------------------------------------------

_DERIVE_SQL = """
CREATE OR REPLACE TEMP TABLE _episode_todo AS
WITH dx AS (
    SELECT person_id, min(diagnosis_date) AS dx, bool_or(stage = 'IV') AS stage_iv
    FROM condition_occurrence GROUP BY person_id
),
ev AS (
    SELECT person_id,
           min(event_date) FILTER (WHERE event_type = 'recurrence') AS rec,
           min(event_date) FILTER (WHERE event_type = 'death') AS death
    FROM outcome_event GROUP BY person_id
)
SELECT dx.person_id, dx.dx, dx.stage_iv, ev.rec, ev.death,
       CASE WHEN dx.stage_iv THEN dx.dx ELSE ev.rec END AS met_start
FROM dx LEFT JOIN ev USING (person_id)
WHERE dx.person_id NOT IN (SELECT person_id FROM episode)
"""

_EARLY_SQL = """
INSERT INTO episode
SELECT $1 + row_number() OVER (ORDER BY person_id), person_id, 'early', 'disease', NULL, dx,
       coalesce(rec, death),
       CASE WHEN rec IS NOT NULL THEN 'recurrence' WHEN death IS NOT NULL THEN 'death' END,
       NULL, 'derived'
FROM _episode_todo WHERE NOT stage_iv AND coalesce(rec, death, dx) >= dx
"""

# adjuvant: systemic or radiation therapy between the diagnosis and the recurrence
_ADJUVANT_SQL = """
CREATE OR REPLACE TEMP TABLE _episode_adjuvant AS
SELECT t.person_id, min(te.start_date) AS start_date,
       CASE WHEN bool_and(te.end_date IS NOT NULL) THEN max(te.end_date) END AS end_date,
       any_value(t.rec) AS rec, any_value(t.death) AS death
FROM _episode_todo AS t JOIN treatment_exposure AS te USING (person_id)
WHERE NOT t.stage_iv AND te.treatment_class <> 'surgery' AND te.start_date >= t.dx
  AND (t.rec IS NULL OR te.start_date < t.rec)
GROUP BY t.person_id
"""

_ADJUVANT_INSERT = """
INSERT INTO episode
SELECT $1 + row_number() OVER (ORDER BY person_id), person_id, 'early', 'adjuvant', NULL, start_date,
       CASE WHEN rec IS NOT NULL AND (end_date IS NULL OR end_date >= rec) THEN rec
            WHEN end_date IS NOT NULL AND end_date < $2 THEN end_date END,
       CASE WHEN rec IS NOT NULL AND (end_date IS NULL OR end_date >= rec) THEN 'recurrence'
            WHEN end_date IS NOT NULL AND end_date < $2 THEN 'completed' END,
       NULL, 'derived'
FROM _episode_adjuvant
"""

_SURVEILLANCE_INSERT = """
INSERT INTO episode
SELECT $1 + row_number() OVER (ORDER BY person_id), person_id, 'early', 'surveillance', NULL,
       end_date + 1, coalesce(rec, death),
       CASE WHEN rec IS NOT NULL THEN 'recurrence' WHEN death IS NOT NULL THEN 'death' END,
       NULL, 'derived'
FROM _episode_adjuvant
WHERE end_date IS NOT NULL AND end_date < $2 AND (rec IS NULL OR end_date < rec)
  AND coalesce(rec, death, end_date + 1) >= end_date + 1
"""

_METASTATIC_INSERT = """
INSERT INTO episode
SELECT $1 + row_number() OVER (ORDER BY person_id), person_id, 'metastatic', 'disease', NULL, met_start,
       death, CASE WHEN death IS NOT NULL THEN 'death' END,
       CASE WHEN stage_iv THEN 'de novo' ELSE 'after recurrence' END, 'derived'
FROM _episode_todo WHERE met_start IS NOT NULL AND coalesce(death, met_start) >= met_start
"""

# lines: treatment lines that started in the metastatic setting, numbered from 1
_LINES_INSERT = """
INSERT INTO episode
SELECT $1 + row_number() OVER (ORDER BY person_id, line), person_id, 'metastatic', 'line', line,
       start_date, end_date, NULL, regimen, 'derived'
FROM (
    SELECT t.person_id, dense_rank() OVER (PARTITION BY t.person_id ORDER BY te.line_of_therapy) AS line,
           min(te.start_date) AS start_date,
           CASE WHEN bool_and(te.end_date IS NOT NULL) THEN max(te.end_date) END AS end_date,
           string_agg(DISTINCT te.agent, ' + ' ORDER BY te.agent) AS regimen
    FROM _episode_todo AS t JOIN treatment_exposure AS te USING (person_id)
    WHERE t.met_start IS NOT NULL AND te.start_date >= t.met_start AND te.treatment_class <> 'surgery'
    GROUP BY t.person_id, te.line_of_therapy
)
"""

_NOTES = (
    (
        "lines of therapy derived from treatment records: why each line ended is not recorded",
        "SELECT DISTINCT person_id FROM episode WHERE source = 'derived' AND kind = 'line' "
        "AND person_id IN (SELECT person_id FROM _episode_todo)",
    ),
    (
        "metastatic disease recorded without treatment after it: lines of therapy unknown",
        "SELECT person_id FROM _episode_todo WHERE met_start IS NOT NULL AND person_id NOT IN "
        "(SELECT person_id FROM episode WHERE kind = 'line')",
    ),
    (
        "no treatment recorded between diagnosis and recurrence: adjuvant therapy unknown",
        "SELECT person_id FROM _episode_todo WHERE NOT stage_iv AND person_id NOT IN "
        "(SELECT person_id FROM episode WHERE kind = 'adjuvant')",
    ),
)


def _next_id(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT coalesce(max(episode_id), 0) FROM episode").fetchall()[0][0])


def rederive_episodes(con: duckdb.DuckDBPyConnection, person_ids: list[int]) -> int:
    """After an import touched ``person_ids``: their derived episodes and notes are derived again.

    Episodes a source recorded (the demo, an import that carried them) are kept; only rows this
    module derived are replaced, so a new recurrence or treatment line shows in the setting.
    """
    if not person_ids or not has_episode_table(con):
        return 0
    ids = [int(p) for p in person_ids]
    con.execute(
        "DELETE FROM episode WHERE source = 'derived' AND person_id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    # notes are only ever written by derivation: a patient derived again gets hers anew, and one
    # whose episodes a source recorded (an import's episode file) has nothing left to note
    con.execute(
        "DELETE FROM episode_note WHERE person_id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    return derive_episodes(con)


def derive_episodes(con: duckdb.DuckDBPyConnection) -> int:
    """Episodes for every diagnosed patient who has none, from diagnoses, treatments and events.

    Runs in the caller's transaction (the v7 migration's, an import's). Returns the number of
    patients derived. What cannot be derived is written to ``episode_note``.
    """
    con.execute(_DERIVE_SQL)
    todo = int(con.execute("SELECT count(*) FROM _episode_todo").fetchall()[0][0])
    if todo:
        cutoff = _cutoff(con)
        con.execute(_EARLY_SQL, [_next_id(con)])
        con.execute(_ADJUVANT_SQL)
        con.execute(_ADJUVANT_INSERT, [_next_id(con), cutoff])
        con.execute(_SURVEILLANCE_INSERT, [_next_id(con), cutoff])
        con.execute("DROP TABLE _episode_adjuvant")
        con.execute(_METASTATIC_INSERT, [_next_id(con)])
        con.execute(_LINES_INSERT, [_next_id(con)])
        for note, who in _NOTES:
            con.execute(
                f"INSERT INTO episode_note SELECT person_id, ?, now()::TIMESTAMP FROM ({who})",  # noqa: S608 - constant SQL
                [note],
            )
    con.execute("DROP TABLE _episode_todo")
    return todo


# --- progression on the current line: what this clinic's patients on the same line experienced --

HALF_YEAR_DAYS = 182.6
MIN_REFERENCE_PATIENTS = 20


@dataclass(frozen=True)
class LineProgressionRisk:
    """Progression-free survival on metastatic line ``line`` among the clinic's patients of her subtype.

    Observed (Kaplan-Meier over the ``episode`` rows of other patients: time from the line's start to
    its end by progression or death, censored when ongoing or ended otherwise), not a model of her:
    ``risk_6m`` is the share of such patients, still progression-free after ``days_on_line`` days, who
    progressed within the next six months. None when fewer than ``MIN_REFERENCE_PATIENTS``.
    """

    line: int
    subtype: str
    days_on_line: int
    patients: int
    events: int
    median_pfs_days: float | None
    risk_6m: float | None

    def to_json(self) -> dict:
        return {
            "line": self.line,
            "subtype": self.subtype,
            "days_on_line": self.days_on_line,
            "reference_patients": self.patients,
            "reference_events": self.events,
            "median_pfs_days": self.median_pfs_days,
            "risk_progression_6m": self.risk_6m,
        }


_SUBTYPE_SQL = """CASE WHEN her2_positive THEN 'HER2+' WHEN er_positive OR pr_positive THEN 'HR+/HER2-'
                       ELSE 'triple-negative' END"""


def line_progression_risk(
    con: duckdb.DuckDBPyConnection, setting: CareSetting
) -> LineProgressionRisk | None:
    """The clinic's progression-free survival on her current metastatic line; None off a line."""
    # lazy: the survival kernel (NumPy) is only needed for patients on a metastatic line
    from analytics.survival.kaplan_meier import KaplanMeier

    if setting.phase != "line" or setting.line is None or setting.since is None:
        return None
    if setting.phase_ended is not None:
        return None
    subtype_rows = con.execute(
        f"SELECT {_SUBTYPE_SQL} FROM condition_occurrence WHERE person_id = ? "  # noqa: S608 - constant SQL
        "ORDER BY diagnosis_date LIMIT 1",
        [setting.person_id],
    ).fetchall()
    if not subtype_rows:
        return None
    subtype = str(subtype_rows[0][0])
    rows = con.execute(
        f"""SELECT date_diff('day', e.start_date, coalesce(e.end_date, $3)) AS days,
                  coalesce(e.end_reason IN ('progression', 'death'), false) AS event
           FROM episode AS e
           JOIN (SELECT person_id, arg_min({_SUBTYPE_SQL}, diagnosis_date) AS subtype
                 FROM condition_occurrence GROUP BY person_id) AS c USING (person_id)
           WHERE e.kind = 'line' AND e.line_number = $1 AND c.subtype = $2 AND e.person_id <> $4
             AND e.start_date <= $3""",  # noqa: S608 - constant SQL, values as parameters
        [setting.line, subtype, setting.as_of, setting.person_id],
    ).fetchnumpy()
    days = rows["days"].astype(float)
    events = rows["event"].astype(bool)
    on_line = int((setting.as_of - setting.since).days)
    if days.size < MIN_REFERENCE_PATIENTS:
        return LineProgressionRisk(
            setting.line, subtype, on_line, int(days.size), int(events.sum()), None, None
        )
    km = KaplanMeier.fit(days, events)
    now, later = km.survival_at(np.array([on_line, on_line + HALF_YEAR_DAYS]))
    below = km.time[km.survival <= 0.5]
    median = float(below[0]) if below.size else None
    risk = None if now <= 0 else float(1.0 - later / now)
    return LineProgressionRisk(
        setting.line, subtype, on_line, int(days.size), int(events.sum()), median, risk
    )
