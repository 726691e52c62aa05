"""analytics.treatment.model.metrics.cross_validate: a test fold whose follow-up starts late is still scored."""

from __future__ import annotations

import numpy as np

from analytics.treatment.data import gbsg2_table
from analytics.treatment.model.learners import make_learner
from analytics.treatment.model.metrics import cross_validate, evaluation_grid


def test_brier_is_scored_inside_each_folds_follow_up():
    table = gbsg2_table()
    grid = evaluation_grid(table)
    later = np.flatnonzero(table.time_days > np.percentile(table.time_days, 15))
    late = np.sort(np.random.default_rng(0).choice(later, size=len(later) // 2, replace=False))
    assert table.time_days[late].min() > grid[0]  # this fold's follow-up starts after the grid does
    rest = np.setdiff1d(np.arange(table.n), late)  # (which made sksurv refuse the whole fold)
    cv = cross_validate(
        table, lambda seed: make_learner("cox_ph", seed), "cox_ph", [late, rest], grid
    )
    assert np.isfinite(cv.ibs).all() and (cv.ibs > 0).all()
