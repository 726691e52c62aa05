"""The chart check of ``test_charts`` on the edge-case store (its own file: the edge-case store and
its server are made only where this walk runs)."""

from __future__ import annotations

import pytest

from tests.e2e.test_charts import viewports, walk


@pytest.mark.slow
@pytest.mark.parametrize("viewport", viewports("1920x1080"))
def test_charts_fit_their_data_on_the_edge_case_store(browser, edge_app, edge_clinic, viewport):
    """No forecast, a single reading, a recurrence, an empty cohort: the same rules hold."""
    patients = (edge_clinic.no_forecast, edge_clinic.single_reading, edge_clinic.recurred)
    problems = walk(browser, edge_app, viewport, "oncologist", patients=patients, empty_cohort=True)
    problems += walk(browser, edge_app, viewport, "ethics", skip=("Cohorts",))
    assert not problems, f"{len(problems)} chart problems:\n" + "\n".join(problems)
