"""analytics.survival.constants: the shared constants are what their comments say."""

from __future__ import annotations

from scipy.stats import norm

from analytics.survival.constants import DAYS_PER_YEAR, HORIZON_5Y_DAYS, Z_95


def test_constants():
    assert Z_95 == norm.ppf(0.975)  # the exact quantile, to the last bit
    assert DAYS_PER_YEAR == 365.25 and HORIZON_5Y_DAYS == 1826.25
