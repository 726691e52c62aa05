"""Disease settings and lines of therapy (analytics.episodes): the demo's episodes, where a patient is
now, and the v7 migration deriving episodes for a store made before them (with what it could not)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

from analytics import store
from analytics.episodes import care_setting, line_progression_risk


@pytest.fixture(scope="module")
def demo(demo_db: Path):
    con = duckdb.connect(str(demo_db), read_only=True)
    yield con
    con.close()


def _all_settings(con, ids) -> dict[int, tuple]:
    out = {}
    for pid in ids:
        s = care_setting(con, pid)
        # best supportive care is not in treatment records: a derived course shows the last line
        # as ended with nothing after it, so compare the line only while a line is current
        line = s.line if s.phase == "line" and s.phase_ended is None else None
        out[pid] = (s.setting, line, s.recurrence_date, tuple(x.start_date for x in s.lines))
    return out


def test_current_setting_line_and_since_when(demo):
    pid, line, start = demo.execute(
        "SELECT person_id, line_number, start_date FROM episode WHERE kind = 'line' AND end_date IS NULL "
        "ORDER BY person_id LIMIT 1"
    ).fetchall()[0]
    s = care_setting(demo, pid)
    assert s.setting == "metastatic" and s.phase == "line" and s.line == line and s.since == start
    assert s.recurred and s.recurrence_date <= start and not s.de_novo
    assert [x.number for x in s.lines] == list(range(1, line + 1))
    assert all(x.end_reason == "progression" for x in s.lines[:-1]) and s.lines[-1].end_date is None
    assert f"line {line}" in s.headline and f"since {start:%Y-%m-%d}" in s.headline
    assert s.to_json()["lines"][0]["number"] == 1
    # the same patient before her recurrence was in early disease
    early = care_setting(demo, pid, as_of=s.recurrence_date - dt.timedelta(days=1))
    assert early.setting == "early" and not early.recurred and early.lines == ()
    adjuvant = demo.execute(
        "SELECT person_id FROM episode WHERE kind = 'surveillance' AND end_date IS NULL LIMIT 1"
    ).fetchall()[0][0]
    s = care_setting(demo, adjuvant)
    assert s.setting == "early" and s.phase == "surveillance"
    assert s.headline.startswith("Early breast cancer · surveillance after adjuvant therapy since")
    assert care_setting(demo, 987654).setting == "unknown"


def test_progression_risk_on_the_current_line_is_the_clinics_experience(demo):
    pid = demo.execute(
        "SELECT person_id FROM episode WHERE kind = 'line' AND line_number = 1 AND end_date IS NULL "
        "ORDER BY person_id LIMIT 1"
    ).fetchall()[0][0]
    s = care_setting(demo, pid)
    risk = line_progression_risk(demo, s)
    assert risk is not None and risk.line == 1 and risk.patients >= 20
    assert risk.risk_6m is not None and 0 <= risk.risk_6m <= 1
    assert risk.days_on_line == (s.as_of - s.since).days
    early = demo.execute(
        "SELECT person_id FROM episode WHERE kind = 'adjuvant' AND end_date IS NULL LIMIT 1"
    ).fetchall()[0][0]
    assert line_progression_risk(demo, care_setting(demo, early)) is None


def _as_old_store(demo_db: Path, folder: Path) -> Path:
    """A copy of the demo made to look like a store written before the episode migration."""
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(shutil.copy(demo_db, folder / "old.duckdb"))
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE episode")
    con.execute("DROP TABLE episode_note")
    con.execute("DELETE FROM schema_version WHERE version >= 9")  # 9 and any later version
    con.close()
    return path


def test_migration_derives_episodes_and_says_what_it_could_not(demo_db, demo, tmp_path):
    path = _as_old_store(demo_db, tmp_path)
    ids = [r[0] for r in demo.execute("SELECT person_id FROM person ORDER BY person_id").fetchall()]
    written = _all_settings(demo, ids)
    # read-only and not migrated: the setting still comes from stage and events, marked as such
    with store.open_store(path, read_only=True) as con:
        assert store.schema_version(con) == 8
        rough = {pid: care_setting(con, pid) for pid in ids[:40]}
    assert all(not s.recorded for s in rough.values())
    assert {pid: s.setting for pid, s in rough.items()} == {pid: written[pid][0] for pid in rough}
    with store.open_store(path) as con:  # a writable open migrates
        assert store.schema_version(con) == store.SCHEMA_VERSION
        derived = _all_settings(con, ids)
        sources = con.execute("SELECT DISTINCT source FROM episode").fetchall()
        notes = dict(
            con.execute("SELECT note, count(*) FROM episode_note GROUP BY note").fetchall()
        )
        reasons = con.execute(
            "SELECT count(*) FROM episode WHERE kind = 'line' AND end_reason IS NOT NULL"
        ).fetchall()[0][0]
    assert sources == [("derived",)]
    # the setting, the current line number, the recurrence date and every line's start are derived;
    # for a patient lost to follow-up her treatment records end where follow-up ended, so whether
    # her line is still current cannot be told from them (only the line is compared loosely there)
    lost = {
        r[0]
        for r in demo.execute(
            "SELECT person_id FROM observation_period WHERE end_reason = 'lost_to_follow_up'"
        ).fetchall()
    }
    assert {p: v for p, v in derived.items() if p not in lost} == {
        p: v for p, v in written.items() if p not in lost
    }
    assert all(
        (derived[p][0], derived[p][2], derived[p][3])
        == (written[p][0], written[p][2], written[p][3])
        for p in lost
    )
    # why a line ended is not in treatment records: never invented, said per patient
    assert reasons == 0
    metastatic = sum(1 for v in written.values() if v[0] == "metastatic" and v[3])
    assert (
        notes[
            "lines of therapy derived from treatment records: why each line ended is not recorded"
        ]
        == metastatic
    )


def test_an_import_derives_the_setting_of_the_patients_it_touched(tmp_path):
    from analytics.imports import tabular as imports
    from tests.analytics.imports.test_tabular import _write_csvs

    db = tmp_path / "hospital.duckdb"
    store.connect(db, create=True).close()
    imports.import_files(db, _write_csvs(tmp_path), tmp_path / "reports")
    with store.open_store(db, read_only=True) as con:
        pid = con.execute("SELECT person_id FROM person WHERE mrn = 'H1'").fetchall()[0][0]
        s = care_setting(con, pid, as_of=dt.date(2025, 6, 30))
        kinds = con.execute(
            "SELECT kind, end_reason, source FROM episode WHERE person_id = ? ORDER BY start_date, kind",
            [pid],
        ).fetchall()
    assert s.setting == "metastatic" and s.recurrence_date == dt.date(2023, 3, 1) and s.recorded
    assert ("adjuvant", "recurrence", "derived") in kinds  # letrozole until the recurrence
    assert s.lines == () and any("without treatment after it" in n for n in s.notes)
    before = care_setting_at(db, pid, dt.date(2022, 1, 1))
    assert before.setting == "early" and before.phase == "adjuvant"


def care_setting_at(db: Path, pid: int, day: dt.date):
    with store.open_store(db, read_only=True) as con:
        return care_setting(con, pid, as_of=day)


def test_a_patient_lost_to_follow_up_is_shown_as_of_her_last_follow_up(demo):
    """Nothing is known after she was lost: her line's months stop there, and a note says so."""
    pid, lost = demo.execute(
        "SELECT person_id, end_date FROM observation_period WHERE end_reason = 'lost_to_follow_up' "
        "AND person_id IN (SELECT person_id FROM episode WHERE kind = 'line') ORDER BY 1 LIMIT 1"
    ).fetchall()[0]
    setting = care_setting(demo, pid)
    assert setting.as_of == lost
    assert any(f"lost to follow-up on {lost:%Y-%m-%d}" in n for n in setting.notes)
    risk = line_progression_risk(demo, setting)
    assert risk is None or risk.days_on_line == (lost - setting.since).days


def test_a_death_recorded_after_she_was_lost_is_not_hidden(demo_db, tmp_path):
    """A registry death after loss to follow-up: her setting says so (never back in scope)."""
    path = Path(shutil.copy(demo_db, tmp_path / "lost.duckdb"))
    with store.open_store(path) as con:
        pid, lost = con.execute(
            "SELECT person_id, end_date FROM observation_period WHERE end_reason = 'lost_to_follow_up' "
            "AND person_id NOT IN (SELECT person_id FROM outcome_event) ORDER BY 1 LIMIT 1"
        ).fetchall()[0]
        con.execute(
            "INSERT INTO outcome_event SELECT max(event_id) + 1, ?, 'death', ? FROM outcome_event",
            [pid, lost + dt.timedelta(days=400)],
        )
        setting = care_setting(con, pid)
    assert setting.died_on == lost + dt.timedelta(days=400)
    assert not any("lost to follow-up" in n for n in setting.notes)
