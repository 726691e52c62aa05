"""Demo clinic generator: determinism, GBSG2-like distributions, ground truth, atomic writes."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from analytics import store
from sample_data import demo
from sample_data.cohort import HORIZON_5Y_DAYS, OPTIONS, simulate_clinic
from sample_data.demo import DemoError, write_demo

TABLES = (
    "person",
    "observation_period",
    "condition_occurrence",
    "treatment_exposure",
    "measurement",
    "outcome_event",
    "imaging_study",
    "imaging_series",
    "truth.potential_outcome",
    "truth.patient_parameters",
    "clinic_metadata",
)


def _dump(path) -> dict[str, pd.DataFrame]:
    with store.open_store(path, read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").df() for t in TABLES}


def test_same_seed_gives_the_same_database(tmp_path):
    a = _dump(write_demo(tmp_path / "a.duckdb", 150, seed=3).path)
    b = _dump(write_demo(tmp_path / "b.duckdb", 150, seed=3).path)
    for table in TABLES:
        pd.testing.assert_frame_equal(a[table], b[table], obj=table)


def test_other_seed_gives_another_clinic(tmp_path):
    a = _dump(write_demo(tmp_path / "a.duckdb", 150, seed=3).path)
    b = _dump(write_demo(tmp_path / "b.duckdb", 150, seed=4).path)
    assert not a["condition_occurrence"].equals(b["condition_occurrence"])


@pytest.fixture(scope="module")
def big():
    return simulate_clinic(20_000, seed=11)


def test_baseline_covariates_resemble_gbsg2(big):
    from lifelines.datasets import load_gbsg2

    g = load_gbsg2()
    p = big.patient
    assert abs(p["age"].mean() - g.age.mean()) < 1.5
    assert abs(np.median(p["tsize_mm"]) - g.tsize.median()) <= 3
    assert abs(p["tsize_mm"].mean() - g.tsize.mean()) < 3
    assert abs(np.median(p["nodes"]) - g.pnodes.median()) <= 1
    assert abs(p["nodes"].mean() - g.pnodes.mean()) < 0.8
    assert p["nodes"].min() >= 1  # GBSG2 is node-positive
    grade_share = np.bincount(p["grade"], minlength=4)[1:] / big.n
    gbsg_share = g.tgrade.value_counts(normalize=True).reindex(["I", "II", "III"]).to_numpy()
    np.testing.assert_allclose(grade_share, gbsg_share, atol=0.03)
    assert abs(p["post"].mean() - (g.menostat == "Post").mean()) < 0.07
    assert abs(np.median(p["er_fmol"]) - g.estrec.median()) < 12
    assert abs(np.median(p["pr_fmol"]) - g.progrec.median()) < 12
    assert abs(p["er_pos"].mean() - (g.estrec >= 10).mean()) < 0.08


def test_observed_outcome_is_the_assigned_options_potential_outcome(big):
    p, t = big.patient, big.truth
    assigned_rfs = t["rfs_days"][np.arange(big.n), p["assigned"]]
    event = p["rfs_event"]
    np.testing.assert_allclose(p["rfs_observed_days"][event], assigned_rfs[event])
    assert np.all(assigned_rfs[~event] >= p["rfs_observed_days"][~event])


def test_true_survival_probability_matches_simulated_times(big):
    t = big.truth
    empirical = (t["rfs_days"] > HORIZON_5Y_DAYS).mean(axis=0)
    np.testing.assert_allclose(empirical, t["rfs_5y"].mean(axis=0), atol=0.015)


def test_treatment_effects_differ_between_patients(big):
    p, t = big.patient, big.truth
    hr_negative = ~(p["er_pos"] | p["pr_pos"])
    best = t["rfs_5y"].argmax(axis=1)
    assert not np.any(best[hr_negative] == OPTIONS.index("endocrine"))
    counts = np.bincount(best, minlength=3) / big.n
    assert np.all(counts > 0.05), counts  # every option is best for someone
    # treatment is confounded by indication, not random: high-grade patients get chemo more often
    chemo = p["assigned"] != OPTIONS.index("endocrine")
    assert chemo[p["grade"] == 3].mean() > chemo[p["grade"] == 1].mean() + 0.1


def test_store_is_consistent_with_ground_truth(demo_db):
    with store.open_store(demo_db, read_only=True) as con:
        bad = con.execute(
            """
            WITH first_event AS (
                SELECT person_id, min(event_date) AS d FROM outcome_event GROUP BY person_id)
            SELECT count(*) FROM condition_occurrence c
            JOIN truth.patient_parameters tp USING (person_id)
            JOIN truth.potential_outcome po ON po.person_id = c.person_id AND po.option = tp.assigned_option
            LEFT JOIN first_event f ON f.person_id = c.person_id
            WHERE f.d IS NOT NULL AND abs(date_diff('day', c.diagnosis_date, f.d) - floor(po.rfs_days)) > 1
            """
        ).fetchone()[0]
        assert bad == 0
        line1 = con.execute(
            "SELECT count(*) FROM treatment_exposure t JOIN truth.patient_parameters tp USING (person_id) "
            "WHERE t.regimen IS NOT NULL AND t.regimen <> tp.assigned_option"
        ).fetchone()[0]
        assert line1 == 0
        orphans = con.execute(
            "SELECT count(*) FROM measurement m LEFT JOIN imaging_study s USING (study_uid) "
            "WHERE m.concept = 'lesion_longest_diameter' AND (s.study_uid IS NULL "
            "OR s.person_id <> m.person_id OR s.study_date <> m.measurement_date)"
        ).fetchone()[0]
        assert orphans == 0
        after_end = con.execute(
            "SELECT count(*) FROM measurement m JOIN observation_period o USING (person_id) "
            "WHERE m.measurement_date > o.end_date OR m.measurement_date < o.start_date"
        ).fetchone()[0]
        assert after_end == 0


def test_lesions_are_read_only_in_metastatic_disease(big):
    """Early disease is followed without a target lesion; restaging CT reads one after recurrence."""
    st, p = big.studies, big.patient
    read = ~np.isnan(st["lesion_mm"])
    kinds = st["kind"]
    assert not read[kinds <= 1].any()  # mammograms: diagnostic and surveillance, no lesion read
    assert read[kinds >= 2].all()  # every CT and brain MR has its read
    ct = kinds == 2
    rec_day = p["dx_day"] + np.floor(p["rfs_observed_days"]).astype(np.int64)
    who = st["person_id"][ct] - 1
    assert p["rfs_event"][who].all() and (st["day"][ct] >= rec_day[who]).all()
    assert st["lesion_mm"][ct].max() <= 150.0 and st["lesion_mm"][ct].min() >= 0


def test_existing_store_is_refused_without_force(tmp_path):
    path = write_demo(tmp_path / "x.duckdb", 20).path
    before = path.read_bytes()
    with pytest.raises(DemoError, match="--force"):
        write_demo(path, 30)
    assert path.read_bytes() == before
    write_demo(path, 30, force=True)
    with store.open_store(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM person").fetchone()[0] == 30


@pytest.mark.parametrize("n", [0, -5])
def test_bad_patient_counts_are_refused(tmp_path, n):
    with pytest.raises(DemoError, match="at least 1"):
        write_demo(tmp_path / "x.duckdb", n)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_target_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DemoError, match="cannot create folder"):
        write_demo(blocker / "sub" / "x.duckdb", 10)


def test_failure_midway_leaves_no_half_written_file(tmp_path, monkeypatch):
    path = write_demo(tmp_path / "x.duckdb", 20).path
    before = path.read_bytes()

    def boom(con, clinic):
        con.execute("INSERT INTO clinic_metadata VALUES ('partial', 'yes')")
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo, "_write", boom)
    with pytest.raises(RuntimeError):
        write_demo(path, 40, force=True)
    assert path.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["x.duckdb"]


def test_summary_times_the_worklist_ranking_within_the_write(tmp_path):
    ranked = write_demo(tmp_path / "ranked.duckdb", 150, seed=3)
    assert 0.0 < ranked.rank_s <= ranked.write_s  # bench_generator's "rank s" column
    with store.open_store(ranked.path, read_only=True) as con:
        assert store.one_row(con.execute("SELECT count(*) FROM worklist_entry"))[0] > 0
    unranked = write_demo(tmp_path / "unranked.duckdb", 150, seed=3, rank_worklist=False)
    assert unranked.rank_s == 0.0


@pytest.mark.parametrize(
    "prefix",
    [
        int(np.random.default_rng([20261125, 2025]).integers(1, 2**60)) << 60,  # the demo's
        (2**60 + 7) << 60,
        10**36 - 5,  # its last 18 digits near 10^18: the sum would carry (the HUGEINT form)
    ],
)
def test_uids_computed_in_two_parts_are_the_decimal_sum(prefix):
    n_studies = 1_000
    sql, args = demo._uid_sql(prefix, n_studies)
    con = duckdb.connect()
    ids = [1, 2, 499, n_studies]
    got = con.execute(
        f"SELECT {sql.format(k=0)}, {sql.format(k=1)} FROM (SELECT unnest(?) AS study_id)",  # noqa: S608 - test constants
        [*args, *args, ids],
    ).fetchall()
    assert got == [(f"2.25.{prefix + 2 * i}", f"2.25.{prefix + 2 * i + 1}") for i in ids]


def test_late_primary_keys_are_the_schemas_own(tmp_path):
    # the imaging tables get their keys after their rows: same constraints as a new store's
    query = """SELECT table_name, constraint_type, constraint_text, constraint_column_names
               FROM duckdb_constraints() WHERE table_name IN ('imaging_study', 'imaging_series')
               ORDER BY ALL"""
    store.connect(tmp_path / "fresh.duckdb", create=True).close()
    with store.open_store(tmp_path / "fresh.duckdb", read_only=True) as con:
        fresh = con.execute(query).fetchall()
    path = write_demo(tmp_path / "demo.duckdb", 60, rank_worklist=False).path
    with store.open_store(path) as con:
        assert con.execute(query).fetchall() == fresh
        assert {r[1] for r in fresh} >= {"PRIMARY KEY", "NOT NULL"}
        uid, person = con.execute(
            "SELECT study_uid, person_id FROM imaging_study LIMIT 1"
        ).fetchone()
        with pytest.raises(duckdb.ConstraintException):
            con.execute(
                "INSERT INTO imaging_study VALUES (?, ?, DATE '2026-01-01', 'CT', NULL, NULL)",
                [uid, person],
            )
