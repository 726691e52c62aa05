"""The Patient page's "Timeline and forecast" section through AppTest, and its figure without Streamlit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from analytics import store
from dashboard.figures import patient as patient_figures
from tests.dashboard.app_pages.test_pages import open_page, texts

NO_LESION = 8


@pytest.fixture(scope="module")
def forecast_db(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("forecast_app") / "clinic.duckdb"
    shutil.copyfile(demo_db, path)
    with store.open_store(path) as con:
        con.execute(
            "DELETE FROM measurement WHERE person_id = ? AND concept = 'lesion_longest_diameter'",
            [NO_LESION],
        )
    return path


def test_patient_page_shows_timeline_forecast_and_its_caveats(forecast_db, monkeypatch):
    monkeypatch.setenv("ONCOLENS_DB", str(forecast_db))
    at = open_page("patient", patient="7")
    assert not at.exception and not at.error
    assert "Timeline and forecast" in [s.value for s in at.subheader]
    captions = texts(at.caption)
    assert "not a medical device" in captions and "80 %" in captions and "95 %" in captions
    labels = {m.label for m in at.metric}
    # patient 7's disease recurred (metastatic, line 1): progression on her line, never recurrence
    assert {
        "RECIST progression",
        "P(progression) in 6 months",
        "Progression on this line in 6 months",
    } <= labels
    assert "P(recurrence) in 6 months" not in labels
    assert "recurrence-free survival no longer applies" in captions
    assert "recurrence-free today" not in captions
    # nor does the figure: its survival row says it no longer applies, not "given recurrence-free today"
    (chart,) = [c for c in at.get("plotly_chart") if "Timeline and forecast" in c.proto.spec]
    assert "Recurrence-free survival: no longer applies (her disease recurred)" in chart.proto.spec
    assert "given recurrence-free today" not in chart.proto.spec
    assert "current line of therapy" in captions
    said = texts(at.info) + texts(at.warning)
    assert "growth model expects" in said and "the clinician decides" in said


def test_patient_without_lesion_readings_gets_a_note_not_an_error(forecast_db, monkeypatch):
    monkeypatch.setenv("ONCOLENS_DB", str(forecast_db))
    at = open_page("patient", patient=str(NO_LESION))
    assert not at.exception and not at.error
    assert "No forecast" in texts(at.info) and "no usable lesion measurement" in texts(at.info)


def test_timeline_figure_has_lanes_band_today_and_units():
    observed = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-01-01", "2020-05-01", "2020-09-01"]),
            "mm": [30.0, 20.0, 26.0],
            "progression": [False, False, True],
            "response": [False, True, False],
        }
    )
    forecast = pd.DataFrame(
        {
            "date": pd.to_datetime(["2020-09-01", "2021-01-01"]),
            "mm": [26.0, 33.0],
            "lo": [22.0, 25.0],
            "hi": [30.0, 41.0],
            "lo80": [23.5, 28.0],
            "hi80": [28.5, 38.0],
        }
    )
    survival = {
        "endocrine": pd.DataFrame(
            {
                "day": [300.0, 365.0, 730.0],
                "s": [1.0, 0.97, 0.9],
                "lo": [1.0, 0.95, 0.85],
                "hi": [1.0, 0.99, 0.95],
            }
        )
    }
    treatments = pd.DataFrame(
        {
            "line_of_therapy": [1],
            "treatment_class": ["endocrine"],
            "agent": ["letrozole"],
            "regimen": ["endocrine"],
            "exposure_type": ["drug"],
            "start_date": pd.to_datetime(["2020-01-20"]),
            "end_date": [pd.NaT],
            "ongoing": [True],
        }
    )
    measurements = pd.DataFrame(
        {
            "measurement_date": pd.to_datetime(["2020-01-01"]),
            "concept": ["ca15_3"],
            "value": [20.0],
            "unit": ["U/mL"],
            "source": ["lab"],
            "study_uid": [None],
        }
    )
    studies = pd.DataFrame(
        {
            "study_uid": ["1.2.3"],
            "study_date": pd.to_datetime(["2020-01-01"]),
            "modality": ["MG"],
            "description": ["follow-up"],
            "accession_number": ["A1"],
            "lesion_longest_diameter_mm": [30.0],
        }
    )
    fig = patient_figures.patient_timeline_figure(
        diagnosis_date=pd.Timestamp("2019-12-15"),
        today=pd.Timestamp("2020-10-10"),
        treatments=treatments,
        measurements=measurements,
        imaging_studies=studies,
        outcome_events=pd.DataFrame(),
        tumour_observed=observed,
        tumour_fitted=observed[["date", "mm"]],
        tumour_forecast=forecast,
        progression_date=None,
        progression_status="observed",
        threshold_mm=25.0,
        survival=survival,
    )
    names = [t.name for t in fig.data]
    assert "forecast" in names and "95 % band (next measurement)" in names and "80 % band" in names
    assert any(n.startswith("RECIST progression") for n in names) and any(
        n.startswith("RECIST response") for n in names
    )
    assert "endocrine (model)" in names
    hovers = " ".join(t.hovertemplate or "" for t in fig.data)
    assert (
        "mm" in hovers
        and "U/mL" in " ".join(str(t.text) for t in fig.data)
        and "%Y-%m-%d" in hovers
    )
    assert any(s.type == "line" for s in fig.layout.shapes)  # the "today" line
    assert "today 2020-10-10" in [a.text for a in fig.layout.annotations]
    empty = patient_figures.patient_timeline_figure(
        diagnosis_date=None,
        today=None,
        treatments=pd.DataFrame(),
        measurements=pd.DataFrame(),
        imaging_studies=pd.DataFrame(),
        outcome_events=pd.DataFrame(),
    )
    assert "No usable lesion measurements" in [a.text for a in empty.layout.annotations]


def test_without_a_forecast_an_ongoing_line_still_runs_to_today():
    """A de novo patient with no lesion readings has no forecast; her ongoing second line must still
    run to her record's day, not shrink to a dot at its start (seen on the imported example)."""
    from types import SimpleNamespace

    treatments = pd.DataFrame(
        {
            "line_of_therapy": [1, 2],
            "treatment_class": ["endocrine", "chemotherapy"],
            "agent": ["letrozole", "capecitabine"],
            "regimen": ["letrozole + palbociclib", "capecitabine"],
            "exposure_type": ["drug", "drug"],
            "start_date": pd.to_datetime(["2025-03-17", "2025-11-24"]),
            "end_date": pd.to_datetime(["2025-11-24", None]),
            "ongoing": [False, True],
        }
    )
    summary = SimpleNamespace(
        diagnosis=SimpleNamespace(diagnosis_date=pd.Timestamp("2025-03-03")),
        treatments=treatments,
        measurements=pd.DataFrame(),
        imaging_studies=pd.DataFrame(),
        outcome_events=pd.DataFrame(),
    )
    fig = patient_figures.patient_forecast_timeline(
        summary, None, survival_absent="x", as_of=pd.Timestamp("2026-06-30").date()
    )
    ends = [
        max(pd.to_datetime(list(t.x)))
        for t in fig.data
        if t.name and "capecitabine" in t.name and t.x is not None
    ]
    assert ends and max(ends) == pd.Timestamp("2026-06-30")


def _cube_read(uid: str, lo: int, hi: int, refused: bool = False):
    """A 3D read whose lesion is a cube (the truth standing in for the model: no weights pinned)."""
    # lazy: the 3D read types only in the tests that build reads
    from types import SimpleNamespace

    import numpy as np

    from models.volumes.measure import SeriesRead
    from tests.models.volumes.conftest import truth_read

    volume = SimpleNamespace(
        series_instance_uid=uid,
        modality="MR",
        spacing_mm=(2.0, 2.0, 2.0),
        affine_ras=np.diag([2.0, 2.0, 2.0, 1.0]),
        shape=(24, 24, 24),
    )
    mask = np.zeros(volume.shape, bool)
    mask[lo:hi, lo:hi, lo:hi] = True
    return SeriesRead(uid, (), None, truth_read(volume, mask, refused=refused), "12" * 32)


def test_patient_timeline_shows_3d_lesion_volumes_with_refusals(forecast_db, tmp_path, monkeypatch):
    import datetime as dt

    from analytics.imaging import volumes

    path = tmp_path / "volumes.duckdb"
    shutil.copyfile(forecast_db, path)
    reads = [
        (dt.date(2024, 1, 5), _cube_read("9.1", 8, 12)),
        (dt.date(2024, 4, 5), _cube_read("9.2", 7, 13)),
        (dt.date(2024, 7, 5), _cube_read("9.3", 0, 0, refused=True)),
    ]
    with store.open_store(path) as con:
        for i, (date, series) in enumerate(reads):
            volumes.store_series_read(
                con, series, person_id=7, study_uid=f"s-{i}", series_uid=series.series_instance_uid,
                study_date=date, frame_key="f", now=dt.datetime(2026, 1, 1), next_measurement_id=10**9 + i,
            )  # fmt: skip
    monkeypatch.setenv("ONCOLENS_DB", str(path))
    at = open_page("patient", patient="7")
    assert not at.exception and not at.error
    (chart,) = [
        c
        for c in at.get("plotly_chart")
        if "Brain metastases in 3D: volume per lesion" in c.proto.spec
    ]
    spec = chart.proto.spec
    assert "lesion 1" in spec and "read refused (input check)" in spec
    import base64
    import json

    import numpy as np

    (lesion,) = [t for t in json.loads(spec)["data"] if t.get("name") == "lesion 1"]
    y = lesion["y"]
    values = np.frombuffer(base64.b64decode(y["bdata"]), y["dtype"]) if isinstance(y, dict) else y
    # 64 and 216 voxels of 8 mm^3: the cubes' volumes, one track across the two time points
    assert list(values) == pytest.approx([0.512, 1.728])
    captions = texts(at.caption)
    assert "3D reads (AI, research use, not a medical device" in captions
    assert "does not rule out a small metastasis" in captions
