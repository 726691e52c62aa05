"""What the pages write to the audit trail: AI reads, explanations, forecasts and views, once per session, chained."""

from __future__ import annotations

import pytest

from analytics import store
from analytics.governance import audit
from tests.dashboard.app_pages.test_imaging_page import env, imaging_db  # noqa: F401 - fixtures reused
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")


def _events(db, action):
    with store.open_store(db, read_only=True) as con:
        return con.execute(
            "SELECT actor, role, subject, model_name, model_version, inputs_sha256, details FROM audit_event "
            "WHERE action = ? ORDER BY event_id",
            [action],
        ).fetchall()


def test_the_ai_read_and_its_explanation_are_audited_once_per_session(env):  # noqa: F811 - imported fixture
    db = env["db"]
    reads, explained = len(_events(db, "ai_read_shown")), len(_events(db, "explanation_shown"))
    at = open_page("imaging", patient=str(env["mammo_pid"]))
    box = at.selectbox(key="imaging_source")
    first = next(k - 1 for k, label in enumerate(box.options) if " · MG · " in label)
    box.set_value(first).run()
    assert not at.exception
    at.run()  # a rerun shows the same read again
    # the page opens on the patient's first image (one read), then the chosen mammogram (one more)
    new_reads = [e for e in _events(db, "ai_read_shown")[reads:] if e[3] == "mammography"]
    new_maps = [e for e in _events(db, "explanation_shown")[explained:] if e[3] == "mammography"]
    assert len(new_reads) == 1 and len(new_maps) == 1
    actor, role, subject, model, version, inputs, _ = new_reads[0]
    assert (actor, role, subject, model) == (
        "demo-user",
        "oncologist",
        str(env["mammo_pid"]),
        "mammography",
    )
    assert version and len(inputs) == 64
    assert new_maps[0][3:6] == (model, version, inputs)  # the map is linked to the read it explains
    assert audit.verify_store(db).ok


def test_a_patient_view_and_its_forecast_name_the_signed_in_user(app_env):
    at = open_page("patient", patient="42")
    assert not at.exception
    views = _events(app_env, "view_patient")
    assert views[-1][:3] == ("demo-user", "oncologist", "42")
    if "No forecast" not in texts(at.info):
        assert _events(app_env, "forecast_shown")[-1][:4] == (
            "demo-user",
            "oncologist",
            "42",
            "forecast",
        )
    assert audit.verify_store(app_env).ok
