"""The server's background warm-up (``resources.warm_up``) and the figure cache (``resources.figure``),
issue 23: the treatment model the Patient page uses is the one the warm-up loaded (loaded once, off
the page's run), and a cached figure is the builder's own figure for exactly those inputs."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analytics import store
from analytics.patients import patient_summary
from analytics.treatment import clinic as treatment_clinic
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.scope import recommendation_scope
from dashboard import resources
from dashboard.figures import patient as patient_figures
from dashboard.services import plain_language
from dashboard.session import auth
from tests.dashboard.app_pages.test_pages import APP, texts

WARM_SERVER = "oncolens-warm-server"  # the second thread's name (resources._warm_up)


def _in_scope_patient(db: Path) -> int:
    """A patient the treatment model answers for (early disease, no recurrence)."""
    with store.open_store(db, read_only=True) as con:
        _table, ids = clinic_training_table(con)
        return next(int(i) for i in ids if recommendation_scope(con, int(i)).in_scope)


def test_the_patient_page_uses_the_treatment_model_the_warm_up_loaded(
    demo_db: Path, trained_demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Path(shutil.copyfile(demo_db, tmp_path / "clinic.duckdb"))
    trained_demo(db, bootstrap=2, folds=2)
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    loads: list[str] = []  # which thread loaded the model (the real loader, counted)
    real = treatment_clinic.load_clinic_model

    def counted(*args, **kwargs):
        loads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(treatment_clinic, "load_clinic_model", counted)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state[auth.SESSION_KEY] = auth.Session("onc", "oncologist", "password", time.time())
    at.run()  # Home: the sign-in gate has passed, the warm-up has started
    for thread in [t for t in threading.enumerate() if t.name == WARM_SERVER]:
        thread.join(timeout=300)
    assert loads == [WARM_SERVER]  # loaded in the background, before any page asked

    person_id = _in_scope_patient(db)
    at.query_params["patient"] = str(person_id)
    at.switch_page("app_pages/patient.py").run()
    assert not at.exception
    assert loads == [WARM_SERVER]  # the page took the warmed model: nothing loaded again
    # and what it shows is the library's answer with a model of its own (outputs unchanged)
    with store.open_store(db, read_only=True) as con:
        expected = treatment_clinic.recommendation_for(real(db, stack_refits=True), con, person_id)
    assert plain_language.recommendation_summary(expected) in texts(at.info)


def test_a_cached_figure_is_the_builders_figure_for_exactly_those_inputs(demo_db: Path) -> None:
    with store.open_store(demo_db, read_only=True) as con:
        labs = patient_summary(con, 42).measurements
    assert not labs.empty
    first = resources.figure(patient_figures.lab_values_figure, labs)
    assert first.to_json() == patient_figures.lab_values_figure(labs).to_json()
    # equal inputs (another copy of the same rows): the same figure, not built again
    assert resources.figure(patient_figures.lab_values_figure, labs.copy()) is first
    # one lab value changed: another figure, the builder's own for the new rows
    changed = labs.copy()
    lab = changed.index[~changed["concept"].isin(patient_figures.LESION_CONCEPTS)][0]
    changed.loc[lab, "value"] = float(changed.loc[lab, "value"]) + 1.0
    again = resources.figure(patient_figures.lab_values_figure, changed)
    assert again is not first
    assert again.to_json() != first.to_json()
    assert again.to_json() == patient_figures.lab_values_figure(changed).to_json()
