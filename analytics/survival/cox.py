"""Cox proportional hazards with a group as the only covariate, Efron's ties, from counts.

Why from counts: the partial likelihood of a categorical covariate depends on the data only
through, per group and event time, the events and the number at risk (``event_matrices`` in
``analytics.survival.logrank``). Newton-Raphson on those counts gives lifelines' ``CoxPHFitter``
estimates (the reference in the tests) in milliseconds at a million patients, where lifelines on
one row per patient takes seconds. The cohort builder's hazard ratios between groups come from
here; a Cox model with covariates is lifelines' (``analytics.treatment``).
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

__all__ = ["MAX_ABS_LOG_HR", "MAX_LOG_HR_SE", "cox_group_hazard_ratios"]


@overload
def _efron_sums(
    beta: np.ndarray,
    events: np.ndarray,
    at_risk: np.ndarray,
    derivatives: Literal[True] = ...,
) -> tuple[float, np.ndarray, np.ndarray]: ...


@overload
def _efron_sums(
    beta: np.ndarray, events: np.ndarray, at_risk: np.ndarray, derivatives: Literal[False]
) -> tuple[float, None, None]: ...


def _efron_sums(
    beta: np.ndarray, events: np.ndarray, at_risk: np.ndarray, derivatives: bool = True
) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """Efron's log-denominator summed over event times, with its gradient and Hessian in ``beta``.

    At an event time with d tied events, at-risk weight A = sum_g R_g exp(b_g) and event weight
    C = sum_g E_g exp(b_g), Efron's term is S = sum_{l<d} log(A - l C / d). With x = A d / C it is
    d log(C / d) + lgamma(x + 1) - lgamma(x - d + 1), and its derivatives are the same sums of
    1 / (x - l) and 1 / (x - l)^2: digamma and trigamma differences. One term per event *time*
    instead of one per event: at a million patients ~3,600 instead of ~280,000, the Cox fit in
    milliseconds instead of ~0.4 s. x - d + 1 >= 1 because at least the events are at risk.
    """
    # lazy: scipy is imported only when this is used (start-up time)
    from scipy.special import digamma, gammaln, polygamma

    shift = beta.max()
    w = np.exp(beta - shift)
    a, e = at_risk * w[:, None], events * w[:, None]  # groups x event times
    big_a, c, d = a.sum(0), e.sum(0), events.sum(0)
    x = big_a * d / c
    total = float((d * np.log(c / d) + gammaln(x + 1) - gammaln(x - d + 1) + d * shift).sum())
    if not derivatives:  # a line search needs the value only
        return total, None, None
    t1 = digamma(x + 1) - digamma(x - d + 1)  # sum_l 1 / (x - l)
    t2 = polygamma(1, x - d + 1) - polygamma(1, x + 1)  # sum_l 1 / (x - l)^2
    h0, h1 = d / c * t1, (x * t1 - d) / c  # sum_l 1/D_l, sum_l (l/d)/D_l
    q0 = (d / c) ** 2 * t2  # sum_l 1/D_l^2
    q1 = d / c**2 * (x * t2 - t1)  # sum_l (l/d)/D_l^2
    q2 = (x * x * t2 - 2 * x * t1 + d) / c**2  # sum_l (l/d)^2/D_l^2
    grad = a @ h0 - e @ h1
    hess = np.diag(grad) - ((a * q0) @ a.T - (a * q1) @ e.T - (e * q1) @ a.T + (e * q2) @ e.T)
    return total, grad, hess


MAX_ABS_LOG_HR = (
    15.0  # |log HR| beyond this (HR over 3 million) is a diverging fit, not an estimate
)
MAX_LOG_HR_SE = 100.0  # ... as is a standard error of the log HR beyond this


def cox_group_hazard_ratios(
    events: np.ndarray, at_risk: np.ndarray, max_iter: int = 50
) -> np.ndarray:
    """Cox model with the group as the only covariate (row 0 the reference), Efron's ties, from counts.

    The partial likelihood of a categorical covariate depends on the data only through the
    per-group events and numbers at risk at each event time, so Newton-Raphson on those
    counts (``_efron_sums``) gives lifelines' ``CoxPHFitter`` estimates (tested) in milliseconds
    at a million patients. ``events`` and ``at_risk``: groups x event times, every column with at
    least one event. Returns rows (log HR, standard error) for groups 1..G-1; NaN if it does not
    converge, and NaN for a group without a finite estimate (see the end).
    """
    g = events.shape[0]
    observed = events.sum(1)

    def loglik(b: np.ndarray) -> float:
        return float(observed @ b) - _efron_sums(b, events, at_risk, derivatives=False)[0]

    beta = np.zeros(g)
    current = loglik(beta)
    # The closed form subtracts lgamma values near x log x (x about the risk set's size), so the
    # log-likelihood carries rounding error of ~1e-16 x log x per event time. A step is kept unless it
    # lowers the likelihood by more than 1e-9 of its size: rounding cannot then halve a good step,
    # and an overshoot that small costs the next Newton step nothing.
    tolerance = 1e-9 * (1.0 + abs(current))
    for _ in range(max_iter):
        _, s_grad, s_hess = _efron_sums(beta, events, at_risk)
        grad = (observed - s_grad)[1:]
        hess = -s_hess[1:, 1:]
        try:
            step = np.linalg.solve(hess, -grad)
        except np.linalg.LinAlgError:  # a group never at risk at an event time: no information
            return np.full((g - 1, 2), np.nan)
        step *= min(1.0, 2.0 / max(np.max(np.abs(step)), 1e-300))  # at most 2 log-units per step
        trial = beta.copy()
        for _halving in range(30):  # keep steps that raise the likelihood
            trial[1:] = beta[1:] + step
            new = loglik(trial)
            if new >= current - tolerance:
                break
            step /= 2
        beta, current = trial, new
        # A group running off to infinity (monotone likelihood) never settles; the others do, to
        # the limit lifelines also reports, so convergence is judged on the groups still in range.
        settled = np.abs(beta[1:]) < MAX_ABS_LOG_HR
        if not settled.any() or np.max(np.abs(step[settled])) < 1e-9:
            break
    else:
        return np.full((g - 1, 2), np.nan)
    hess = -_efron_sums(beta, events, at_risk)[2][1:, 1:]
    se = np.full(g - 1, np.inf)
    try:  # standard errors of the settled groups from their own block: a runaway group carries no
        # information about them in the limit (its rows of the information matrix vanish)
        se[settled] = np.sqrt(np.diag(np.linalg.inv(-hess[np.ix_(settled, settled)])))
    except np.linalg.LinAlgError:
        return np.full((g - 1, 2), np.nan)
    fit = np.column_stack([beta[1:], se])
    # A group whose events all fall where no other group is at risk (or the reverse) has no
    # finite estimate: the likelihood keeps rising as its log HR runs off, and the search stops
    # somewhere out there with an enormous standard error. Not estimable, not a number to show.
    fit[~((np.abs(fit[:, 0]) < MAX_ABS_LOG_HR) & (fit[:, 1] < MAX_LOG_HR_SE))] = np.nan
    return fit
