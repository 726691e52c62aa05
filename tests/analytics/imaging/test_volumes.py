"""3D reads in the store: rows per series and lesion, lesions linked across time points by the
documented rule (whatever order the studies arrive in), the AI measurement the timeline and
forecasts read, refusals kept as results; and a real ingest of a demo series read in 3D."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analytics import store
from analytics.imaging import volumes
from models.volumes import geometry, phantoms
from models.volumes.measure import SeriesRead
from tests.models.volumes.conftest import truth_read

pytestmark = pytest.mark.filterwarnings("ignore")

NOW = dt.datetime(2026, 12, 1, 9, 0)


def _rows(*lesions) -> pd.DataFrame:
    """(series, date, number, x, y, z, diameter[, frame]) -> the frame ``link_tracks`` takes."""
    rows = [
        {
            "series_uid": s,
            "study_date": pd.Timestamp(d),
            "lesion_number": n,
            "centre_x_mm": x,
            "centre_y_mm": y,
            "centre_z_mm": z,
            "longest_axial_diameter_mm": mm,
            "frame_key": rest[0] if rest else "F",
        }
        for s, d, n, x, y, z, mm, *rest in lesions
    ]
    return pd.DataFrame(rows)


def test_lesions_are_linked_by_position_and_new_ones_start_tracks() -> None:
    linked = _rows(
        ("a", "2024-01-01", 1, 0.0, 0.0, 0.0, 20.0),
        ("a", "2024-01-01", 2, 60.0, 0.0, 0.0, 8.0),
        ("b", "2024-04-01", 1, 3.0, 2.0, -1.0, 26.0),  # lesion 1 grew and moved 3.7 mm
        ("b", "2024-04-01", 2, -50.0, 10.0, 0.0, 6.0),  # a new one, far from both
        ("c", "2024-07-01", 1, 61.0, 1.0, 0.0, 9.0),  # lesion 2 again (missed in b): same track
        ("c", "2024-07-01", 2, 30.0, 0.0, 0.0, 5.0),  # 27 mm from lesion 1, 31 from 2: new
    )
    out = volumes.link_tracks(linked).set_index(["series_uid", "lesion_number"])["track_id"]
    assert out.to_dict() == {
        ("a", 1): 1, ("a", 2): 2, ("b", 1): 1, ("b", 2): 3, ("c", 1): 2, ("c", 2): 4,
    }  # fmt: skip


def test_the_distance_limit_grows_with_the_lesion_and_other_frames_are_said() -> None:
    big = _rows(
        ("a", "2024-01-01", 1, 0.0, 0.0, 0.0, 40.0),
        ("b", "2024-03-01", 1, 25.0, 0.0, 0.0, 40.0, "G"),  # 25 mm <= 0.75 x 40 mm: same lesion
    )
    small = _rows(
        ("a", "2024-01-01", 1, 0.0, 0.0, 0.0, 8.0),
        ("b", "2024-03-01", 1, 12.0, 0.0, 0.0, 8.0),  # 12 mm > max(10, 6) mm: another lesion
    )
    out = volumes.link_tracks(big)
    assert list(out["track_id"]) == [1, 1]
    assert "different frames of reference" in out["link"].iloc[1]
    assert list(volumes.link_tracks(small)["track_id"]) == [1, 2]


def _phantom_read(seed: int, site: phantoms.Lesion, mm: float, uid: str) -> SeriesRead:
    vol = phantoms.brain_mr(np.random.default_rng([seed, 7]), site, mm)
    affine_lps = geometry.affine_lps(
        np.asarray(vol.origin_lps), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        (vol.spacing_mm[1], vol.spacing_mm[2]), np.array([0.0, 0.0, vol.spacing_mm[0]]),
    )  # fmt: skip
    volume = SimpleNamespace(
        series_instance_uid=uid,
        modality="MR",
        spacing_mm=vol.spacing_mm,
        affine_ras=geometry.LPS_TO_RAS @ affine_lps,
        shape=vol.labels.shape,
    )
    read = truth_read(volume, np.isin(vol.labels, (1, 3)))
    return SeriesRead(uid, (), None, read, "ef" * 32)


@pytest.fixture(scope="module")
def course() -> list[tuple[dt.date, SeriesRead]]:
    """One patient's metastasis at three time points (the demo's phantom: same site, new size)."""
    site = phantoms.brain_lesion(np.random.default_rng([31, 1]), 30.0)
    return [
        (dt.date(2025, 1, 10), _phantom_read(1, site, 30.0, "1.2.3.1")),
        (dt.date(2025, 4, 10), _phantom_read(2, site, 22.0, "1.2.3.2")),
        (dt.date(2025, 7, 10), _phantom_read(3, site, 26.0, "1.2.3.3")),
    ]


def _store(con, date: dt.date, series: SeriesRead, measurement_id: int) -> dict:
    entry, _ = volumes.store_series_read(
        con, series, person_id=7, study_uid=f"study-{series.series_instance_uid}",
        series_uid=series.series_instance_uid, study_date=date, frame_key="frame-1", now=NOW,
        next_measurement_id=measurement_id,
    )  # fmt: skip
    return entry


def test_reads_across_time_points_become_one_tracked_lesion_in_any_order(course, tmp_path) -> None:
    results = {}
    for name, order in (("forward", course), ("backward", course[::-1])):
        with store.open_store(tmp_path / f"{name}.duckdb", create=True) as con:
            for i, (date, series) in enumerate(order):
                entry = _store(con, date, series, 100 + i)
                assert entry["weights_sha256"] == "ef" * 32 and entry["input_check"]["score"] == 0.5
            lesions = volumes.patient_volume_lesions(con, 7)
            reads = volumes.patient_volume_reads(con, 7)
            measured = con.execute(
                "SELECT measurement_date, concept, value, source, study_uid FROM measurement "
                "ORDER BY measurement_date"
            ).fetchall()
            results[name] = lesions[["study_date", "track_id", "volume_ml", "link"]]
        assert len(reads) == 3 and set(reads["label"]) == {"lesion"}
        assert list(lesions["track_id"]) == [1, 1, 1]  # one metastasis, followed over three scans
        for (_date, series), row in zip(course, lesions.itertuples(), strict=True):
            assert row.volume_ml == pytest.approx(series.read.lesions[0].volume_ml)
            assert row.longest_axial_diameter_mm == pytest.approx(
                series.read.lesions[0].longest_axial_diameter_mm
            )
        # the one AI measurement per study that the timeline, the worklist and forecasts read
        assert [(m[1], m[3]) for m in measured] == [("brain_lesion_longest_diameter", "ai")] * 3
        assert [m[2] for m in measured] == [
            pytest.approx(s.read.lesions[0].longest_axial_diameter_mm, abs=0.01) for _, s in course
        ]
    pd.testing.assert_frame_equal(results["forward"], results["backward"])


def test_a_refused_read_is_kept_with_its_check_and_removes_the_ai_measurement(
    course, tmp_path
) -> None:
    date, series = course[0]
    with store.open_store(tmp_path / "refused.duckdb", create=True) as con:
        _store(con, date, series, 1)
        assert con.execute("SELECT count(*) FROM measurement").fetchall()[0][0] == 1
        refused_read = truth_read(
            SimpleNamespace(series_instance_uid=series.series_instance_uid, modality="MR"),
            np.zeros((1, 1, 1), bool),
            refused=True,
        )
        entry = _store(con, date, SeriesRead(series.series_instance_uid, (), None, refused_read), 2)
        assert entry["refused"] and entry["label"] is None and entry["measurement"] is None
        reads = volumes.patient_volume_reads(con, 7)
        assert len(reads) == 1 and reads["refused"].iloc[0] and reads["guard_score"].iloc[0] == 9.0
        assert volumes.patient_volume_lesions(con, 7).empty
        assert con.execute("SELECT count(*) FROM measurement").fetchall()[0][0] == 0
        stored = con.execute("SELECT input_check FROM ai_volume_read").fetchall()[0][0]
        assert json.loads(stored)["in_distribution"] is False


def test_a_study_of_several_series_keeps_the_lesion_one_series_measured(course, tmp_path) -> None:
    """An MR study has several series (T1, T1c, FLAIR): a "no lesion" or refused read of one,
    stored after the series that showed the lesion, must not erase the study's AI value (it used to
    follow whichever series was stored last)."""
    date, lesion = course[0]
    grid = SimpleNamespace(
        series_instance_uid="1.2.3.9",
        modality="MR",
        spacing_mm=(2.0, 2.0, 2.0),
        affine_ras=np.eye(4),
        shape=(8, 8, 8),
    )
    empty = truth_read(grid, np.zeros(grid.shape, bool))  # read given: no lesion
    refused = truth_read(
        SimpleNamespace(series_instance_uid="1.2.3.8", modality="MR"),
        np.zeros((1, 1, 1), bool),
        refused=True,
    )
    others = [SeriesRead("1.2.3.9", (), None, empty), SeriesRead("1.2.3.8", (), None, refused)]
    expected = pytest.approx(lesion.read.lesions[0].longest_axial_diameter_mm, abs=0.01)
    for name, order in (("lesion first", [lesion, *others]), ("lesion last", [*others, lesion])):
        with store.open_store(tmp_path / f"{name}.duckdb", create=True) as con:
            for i, series in enumerate(order):
                volumes.store_series_read(
                    con, series, person_id=7, study_uid="one-study",
                    series_uid=series.series_instance_uid, study_date=date, frame_key="frame-1",
                    now=NOW, next_measurement_id=10 + i,
                )  # fmt: skip
            values = con.execute(
                "SELECT value, model_name, model_version, weights_sha256 FROM measurement "
                "WHERE source = 'ai'"
            ).fetchall()
            assert [v[0] for v in values] == [expected], name
            # named after the read that gave the value (its weights), not the series stored last:
            # the sign-off binds to them (analytics.governance.lifecycle.measurements)
            read = lesion.read
            assert values[0][1:] == (read.model, read.model_version, "ef" * 32), name


def test_ingest_reads_a_demo_series_once_in_3d_not_slice_by_slice(demo_db, tmp_path) -> None:
    # lazy: the ingest path and the demo volume writer only here
    from analytics.imaging.ingest import ingest_files
    from models.inference.loader import ModelLoader
    from models.volumes.bundle import load_bundle
    from sample_data.demo_volumes import write_demo_volumes

    db = Path(shutil.copy(demo_db, tmp_path / "clinic.duckdb"))
    written = write_demo_volumes(db, tmp_path / "volumes", patients=1)
    mr = [s for s in written.studies if s.modality == "MR"][:1]
    assert mr, "the demo store has a brain MR patient"
    files = sorted(mr[0].folder.glob("*.dcm"))
    report = ingest_files(db, files, ModelLoader(), now=NOW, workers=1)
    assert not report.failed and len(report.stored) == len(files)
    (entry,) = report.volumes
    assert entry["model"] == "brain_mets_3d" and entry["person_id"] == mr[0].person_id
    assert all(e["ai"] is None for e in report.stored)  # no 2D read of the slices
    with store.open_store(db, read_only=True) as con:
        reads = volumes.patient_volume_reads(con, mr[0].person_id)
        assert len(reads) == 1
        row = reads.iloc[0]
        assert row.weights_sha256 == load_bundle().sha256 and row.study_date == pd.Timestamp(
            mr[0].study_date
        )
        assert row.study_uid == mr[0].study_uid  # the clinic's own study row is kept
        assert (row.label is None) == bool(row.refused)
        assert (
            con.execute(
                "SELECT count(*) FROM ai_finding WHERE person_id = ?", [mr[0].person_id]
            ).fetchall()[0][0]
            == 0
        )
        n_lesions = len(volumes.patient_volume_lesions(con, mr[0].person_id))
        assert n_lesions == (row.lesions if row.label else 0)
        event = con.execute(
            "SELECT details FROM audit_event WHERE action = 'ingest' ORDER BY event_id DESC LIMIT 1"
        ).fetchall()[0][0]
        assert json.loads(event)["volumes"] == 1
