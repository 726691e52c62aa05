"""analytics.worklist.ranking at speed (issue 23): batches on threads, the fast fits, same ranking.

On a 4,000-patient demo clinic with small batches (many jobs): the ranking computed on two
threads is the serial one, and both are the ranking of the computation before issue 23 (the
padded-batch fit and the einsum draws of ``tests/analytics/forecast/test_tumour_fit.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics import store
from analytics.forecast import patient, tumour
from analytics.forecast.patient import estimate_prior
from analytics.forecast.tumour import TGIFit
from analytics.worklist import ranking as worklist
from analytics.worklist import stored
from tests.analytics.forecast.test_tumour_fit import reference_fit_map

SMALL_CHUNK = 700  # several batches and their recurred parts: a dozen jobs


@pytest.fixture(scope="module")
def ranked_serial(clinic_db):
    with store.open_store(clinic_db, read_only=True) as con:
        prior = estimate_prior(con)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(worklist, "RISK_CHUNK", SMALL_CHUNK)
            rows = worklist.ranked(con, prior=prior)
    return prior, rows


def test_two_threads_rank_exactly_as_one(clinic_db, ranked_serial, monkeypatch):
    prior, serial = ranked_serial
    monkeypatch.setattr(worklist, "RISK_CHUNK", SMALL_CHUNK)
    with store.open_store(clinic_db, read_only=True) as con:
        threaded = worklist.ranked(con, prior=prior, threads=2)
    assert len(serial) > 4 * SMALL_CHUNK and serial["risk_6m"].notna().sum() > 500
    pd.testing.assert_frame_equal(threaded, serial, check_exact=True)


def _reference_fit(series, prior, iterations=tumour.LM_ITERATIONS, start=None):
    theta, cov = reference_fit_map(series, prior, iterations, start)
    return TGIFit(series, prior, theta, cov)


def _reference_draws(self, n_draws, seed):
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(self.cov + 1e-12 * np.eye(tumour.N_PARAMS))
    z = rng.standard_normal((n_draws, self.series.n, tumour.N_PARAMS))
    return self.theta[None] + np.einsum("nij,snj->sni", chol, z)


def test_the_ranking_is_the_one_before_the_fast_paths(clinic_db, ranked_serial, monkeypatch):
    prior, fast = ranked_serial
    monkeypatch.setattr(worklist, "RISK_CHUNK", SMALL_CHUNK)
    monkeypatch.setattr(patient, "fit_map", _reference_fit)
    monkeypatch.setattr(tumour, "fit_map", _reference_fit)  # the prior's fits too
    monkeypatch.setattr(TGIFit, "draws", _reference_draws)
    with store.open_store(clinic_db, read_only=True) as con:
        reference_prior = estimate_prior(con)
        reference = worklist.ranked(con, prior=reference_prior)
    assert reference_prior.to_state() == prior.to_state()
    with store.open_store(clinic_db, read_only=True) as con:
        monkeypatch.undo()
        assert estimate_prior(con, threads=2).to_state() == prior.to_state()
    pd.testing.assert_frame_equal(fast, reference, check_exact=True)


def test_a_full_refresh_estimating_its_prior_beside_the_flags_ranks_as_one_thread(
    clinic_db, monkeypatch
):
    # with threads, the prior is estimated on a cursor while the flags are computed
    monkeypatch.setattr(worklist, "RISK_CHUNK", SMALL_CHUNK)
    with store.open_store(clinic_db, read_only=True) as con:
        as_of, prior, serial = stored._rank_everyone(con, None, threads=1)
        as_of2, prior2, threaded = stored._rank_everyone(con, None, threads=2)
    assert as_of2 == as_of and prior2.to_state() == prior.to_state()
    assert serial["risk_6m"].notna().sum() > 500
    pd.testing.assert_frame_equal(threaded, serial, check_exact=True)
