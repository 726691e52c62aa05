"""The multivariate log-rank test, from per-group event and at-risk counts at each event time.

Why from counts: like Kaplan-Meier (``analytics.survival.kaplan_meier``), the test depends on
the data only through, per group and event time, the events and the number at risk. The cohort
builder gets those counts from DuckDB (a few thousand rows at a million patients) and the
treatment policy report from one row per patient (``log_rank_test``); both end in ``log_rank``,
the statistic of lifelines' ``multivariate_logrank_test`` (the reference in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from analytics.survival.kaplan_meier import event_counts

__all__ = ["event_matrices", "log_rank", "log_rank_test"]

FloatArray = NDArray[np.float64]


def event_matrices(
    groups: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike]],
) -> tuple[np.ndarray, FloatArray, FloatArray]:
    """(event times, events, at risk) from each group's (times ascending, events, removed) counts.

    The event times are every time with an event in any group; ``events`` and ``at_risk`` are
    groups x event times (a group's at-risk number: its patients whose time is at least that time).
    """
    parts = [(np.asarray(d), np.asarray(ev), np.asarray(rm)) for d, ev, rm in groups]
    days = np.unique(np.concatenate([d[ev > 0] for d, ev, _ in parts]))
    events = np.zeros((len(parts), len(days)))
    at_risk = np.zeros((len(parts), len(days)))
    for k, (d, ev, rm) in enumerate(parts):
        if len(d) == 0:
            continue
        left_before = np.concatenate([[0.0], np.cumsum(rm)])  # removed strictly before each day
        at_risk[k] = rm.sum() - left_before[np.searchsorted(d, days, "left")]
        pos = np.searchsorted(d, days)
        hit = (pos < len(d)) & (d[np.minimum(pos, len(d) - 1)] == days)
        events[k, hit] = ev[pos[hit]]
    return days, events, at_risk


def log_rank(events: np.ndarray, at_risk: np.ndarray) -> tuple[float, float]:
    """Multivariate log-rank test from per-group event and at-risk counts at each event time.

    The statistic of lifelines' ``multivariate_logrank_test`` (observed minus expected
    events per group, hypergeometric covariance, chi-square with groups - 1 degrees of
    freedom). Returns (chi2, p).
    """
    from scipy.special import chdtrc  # scipy.special: far lighter to import than scipy.stats

    d, n = events.sum(0), at_risk.sum(0)
    frac = at_risk / n
    observed_minus_expected = (events - frac * d).sum(1)
    scale = np.where(n > 1, d * (n - d) / np.maximum(n - 1, 1), 0.0)
    g = events.shape[0]
    cov = np.empty((g, g))
    for i in range(g):
        for j in range(g):
            cov[i, j] = (scale * frac[i] * ((i == j) - frac[j])).sum()
    z = observed_minus_expected[:-1]
    # pseudo-inverse, as lifelines: a group never at risk at an event time adds no variance
    stat = float(z @ np.linalg.pinv(cov[:-1, :-1]) @ z)
    return stat, float(chdtrc(g - 1, stat))


def log_rank_test(time: ArrayLike, event: ArrayLike, group: ArrayLike) -> tuple[float, float]:
    """Log-rank test of one row per patient (time, event flag, group label): (chi2, p)."""
    t, e, g = np.asarray(time), np.asarray(event, dtype=bool), np.asarray(group)
    if not t.shape == e.shape == g.shape:
        raise ValueError("time, event and group need one entry per patient")
    labels = np.unique(g)
    if labels.size < 2:
        raise ValueError("the log-rank test needs at least two groups")
    _, events, at_risk = event_matrices([event_counts(t[g == k], e[g == k]) for k in labels])
    return log_rank(events, at_risk)
