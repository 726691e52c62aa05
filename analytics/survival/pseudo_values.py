"""Jackknife pseudo-observations of the Kaplan-Meier survival function: a censoring-aware target.

Why pseudo-observations: a censored patient has no observed "alive and
recurrence-free at 5 years" value, so an ordinary regression cannot use her.
The jackknife pseudo-value of patient i at time t,

    theta_i(t) = n * S(t) - (n - 1) * S_{-i}(t),

(S the Kaplan-Meier estimate on all n patients, S_{-i} without patient i) is
defined for every patient, censored or not, and its conditional mean given
the covariates is the survival probability S(t | x) when censoring does not
depend on the covariates (Andersen, Klein & Rosthoj 2003, Biometrika 90:15;
Andersen & Perme 2010, Stat Methods Med Res 19:71). A regression of
pseudo-values on covariates therefore estimates S(t | x) on the probability
scale itself (identity link), which is what lets TreeSHAP explain a predicted
survival difference in percentage points exactly.

The leave-one-out estimates are computed in O(n log n), not by refitting the
curve n times: removing patient i lowers the number at risk by one at every
event time up to her own time, and the number of events by one at her own
time if she had the event. ``pseudo_values_naive`` is the n-refits
definition, kept for the tests.
"""

from __future__ import annotations

import numpy as np

from analytics.survival.kaplan_meier import KaplanMeier, kaplan_meier_at


def _log_factor(deaths: np.ndarray, at_risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(1 - d/n) per event time, split into its finite part and a 'reached zero' flag."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(at_risk > 0, deaths / np.where(at_risk > 0, at_risk, 1), 0.0)
    zero = ratio >= 1.0 - 1e-12
    return np.log(np.where(zero, 1.0, 1.0 - ratio)), zero


def pseudo_values(time: np.ndarray, event: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """Jackknife pseudo-values of S(t) for every patient and horizon, shape (n, len(horizons)).

    ``time`` in days (> 0), ``event`` true for an observed event, ``horizons`` in days.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    horizons = np.atleast_1d(np.asarray(horizons, dtype=float))
    n = time.size
    if n < 2:
        raise ValueError("pseudo-values need at least two patients")
    km = KaplanMeier.fit(time, event)
    uniq, deaths, at_risk = km.time, km.events, km.at_risk
    inverse = np.searchsorted(uniq, time)  # each patient's distinct-time index

    # Full-sample and "one fewer at risk" log factors, cumulated over the unique times.
    log_full, zero_full = _log_factor(deaths, at_risk)
    log_less, zero_less = _log_factor(deaths, at_risk - 1)
    cum_full = np.cumsum(log_full)
    cum_less = np.cumsum(log_less)
    zcum_full = np.cumsum(zero_full)
    zcum_less = np.cumsum(zero_less)
    # Patient i's own time: at-risk one fewer and, if she had the event, one death fewer.
    own_log_ev, own_zero_ev = _log_factor(deaths - 1, at_risk - 1)

    s_full = km.survival_at(horizons)  # (k,)
    h_idx = np.searchsorted(uniq, horizons, side="right") - 1  # last unique time <= t
    out = np.empty((n, horizons.size))
    for k, (hk, sk) in enumerate(zip(h_idx, s_full, strict=True)):
        if hk < 0:  # before any time: S = 1 for all
            out[:, k] = 1.0
            continue
        i_idx = inverse  # unique-time index of each patient
        before = np.minimum(i_idx - 1, hk)  # event times strictly before T_i, up to t
        log_s = np.where(before >= 0, cum_less[np.maximum(before, 0)], 0.0)
        zero = np.where(before >= 0, zcum_less[np.maximum(before, 0)], 0)
        own = i_idx <= hk  # her own time is within [0, t]
        own_log = np.where(event, own_log_ev[i_idx], log_less[i_idx])
        own_zero = np.where(event, own_zero_ev[i_idx], zero_less[i_idx])
        log_s = log_s + np.where(own, own_log, 0.0)
        zero = zero + np.where(own, own_zero, 0)
        after = own  # times after T_i up to t: unchanged
        log_s = log_s + np.where(after, cum_full[hk] - cum_full[i_idx], 0.0)
        zero = zero + np.where(after, zcum_full[hk] - zcum_full[i_idx], 0)
        s_minus = np.where(zero > 0, 0.0, np.exp(log_s))
        out[:, k] = n * sk - (n - 1) * s_minus
    return out


def pseudo_values_naive(time: np.ndarray, event: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """The definition, with n leave-one-out Kaplan-Meier fits (O(n^2)); for tests."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    horizons = np.atleast_1d(np.asarray(horizons, dtype=float))
    n = time.size
    s_full = kaplan_meier_at(time, event, horizons)
    out = np.empty((n, horizons.size))
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        keep[i] = False
        out[i] = n * s_full - (n - 1) * kaplan_meier_at(time[keep], event[keep], horizons)
        keep[i] = True
    return out
