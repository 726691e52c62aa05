"""Standardised mean differences (SMD) for Table 1: how different two groups are, on one scale.

Why SMDs and not p-values: Table 1 describes groups that were not randomised; a p-value there
answers the wrong question and shrinks with the cohort's size, while the SMD says how far apart
the groups are in units of spread, whatever the size (|SMD| > 0.1 is the usual flag for an
imbalance worth adjusting for; Austin 2009, Stat Med 28:3083).

The formulas are those of R's ``tableone`` (``ExtractSmd``), so a researcher can check them:

- continuous: ``|mean1 - mean2| / sqrt((var1 + var2) / 2)`` (sample variances, n - 1);
- categorical (binary included): the multivariate SMD of Yang and Dalton (2012, SAS Global
  Forum 335-2012), ``sqrt(d' S^-1 d)`` where ``d`` is the difference of the two groups'
  level proportions without the first level and ``S`` the average of the two multinomial
  covariance matrices (``diag(p) - p p'``). One number per variable, not one per level: a
  five-level variable gets one SMD, as in tableone. For two levels it is the usual
  ``|p1 - p2| / sqrt((p1 (1 - p1) + p2 (1 - p2)) / 2)``. ``S`` is inverted with the
  Moore-Penrose pseudo-inverse (tableone's ``MASS::ginv``) when a level is absent from both
  groups; a difference where neither group varies (all of one group in a level none of the
  other has) is infinite, not zero.
- with more than two groups, the largest SMD over all pairs of groups, and which pair.

Missing values are left out (each group's proportions and moments are over the patients with a
value); Table 1 shows them in their own rows. Pure NumPy: the builder passes per-group counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

SMD_FLAG = 0.1  # |SMD| above this is usually called an imbalance (Austin 2009)


def moments(values: np.ndarray, counts: np.ndarray) -> tuple[int, float, float]:
    """``(n, mean, sample variance)`` of values given with their counts (NaN variance below 2)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n = float(counts.sum())
    if n == 0:
        return 0, math.nan, math.nan
    mean = float((values * counts).sum() / n)
    var = float((counts * (values - mean) ** 2).sum() / (n - 1)) if n > 1 else math.nan
    return int(n), mean, var


def smd_continuous(mean1: float, var1: float, mean2: float, var2: float) -> float:
    """``|mean1 - mean2| / sqrt((var1 + var2) / 2)``; 0 for equal constants, inf for different ones."""
    if any(math.isnan(x) for x in (mean1, var1, mean2, var2)):
        return math.nan
    diff = abs(mean1 - mean2)
    pooled = math.sqrt((var1 + var2) / 2)
    if pooled == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / pooled


def smd_categorical(p1: np.ndarray, p2: np.ndarray) -> float:
    """Yang and Dalton's SMD of two proportion vectors over the same levels (each sums to 1)."""
    p1, p2 = np.asarray(p1, dtype=np.float64), np.asarray(p2, dtype=np.float64)
    if p1.size < 2:
        return 0.0
    a, b = p1[1:], p2[1:]
    d = a - b
    if not np.any(np.abs(d) > 1e-15):
        return 0.0
    s = ((np.diag(a) - np.outer(a, a)) + (np.diag(b) - np.outer(b, b))) / 2
    x = np.linalg.pinv(s) @ d
    if not np.allclose(s @ x, d, atol=1e-10):  # d outside the span of S: no spread to divide by
        return math.inf
    return float(math.sqrt(max(float(d @ x), 0.0)))


def _proportions(levels: list[str], counts: Mapping[str, int]) -> np.ndarray | None:
    n = sum(counts.get(level, 0) for level in levels)
    if n == 0:
        return None
    return np.array([counts.get(level, 0) / n for level in levels])


def table1_smd(
    groups: list[str],
    continuous: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    categorical: Mapping[str, Mapping[str, Mapping[str, int]]],
    order: list[str],
) -> pd.DataFrame:
    """One row per variable: variable, smd, pair ("A vs B": the pair it compares).

    ``continuous[variable][group]``: (values, counts) of the patients with a value;
    ``categorical[variable][group]``: {level: patients} without the missing. Empty below two
    groups. ``order``: the variables in display order.
    """
    if len(groups) < 2:
        return pd.DataFrame(columns=["variable", "smd", "pair"])
    rows = []
    for variable in order:
        best, best_pair = math.nan, ""
        for g1, g2 in itertools.combinations(groups, 2):
            if variable in continuous:
                _, m1, v1 = moments(*continuous[variable].get(g1, (np.array([]), np.array([]))))
                _, m2, v2 = moments(*continuous[variable].get(g2, (np.array([]), np.array([]))))
                value = smd_continuous(m1, v1, m2, v2)
            else:
                per_group = categorical[variable]
                levels = sorted({lv for g in (g1, g2) for lv in per_group.get(g, {})})
                q1 = _proportions(levels, per_group.get(g1, {}))
                q2 = _proportions(levels, per_group.get(g2, {}))
                value = math.nan if q1 is None or q2 is None else smd_categorical(q1, q2)
            if not math.isnan(value) and (math.isnan(best) or value > best):
                best, best_pair = value, f"{g1} vs {g2}"
        rows.append({"variable": variable, "smd": best, "pair": best_pair})
    return pd.DataFrame(rows, columns=["variable", "smd", "pair"])
