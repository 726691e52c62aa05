"""Table 1's standardised mean differences and missing-value rows, against an independent computation.

The reference is computed here from one row per patient with NumPy, the way R's tableone does it
(``ExtractSmd``): continuous variables from the raw values (``np.var(ddof=1)``), categorical ones by
Yang & Dalton's Mahalanobis form built from one-hot covariance matrices (``np.cov``), not from the
counts the builder uses."""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from analytics import store
from analytics.cohorts import balance
from analytics.cohorts import builder as cohorts


def _smd_continuous(a: np.ndarray, b: np.ndarray) -> float:
    return abs(a.mean() - b.mean()) / math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)


def _smd_categorical(a: pd.Series, b: pd.Series) -> float:
    levels = sorted(set(a) | set(b))
    onehot = [np.array([[v == lv for lv in levels[1:]] for v in x], float) for x in (a, b)]
    d = onehot[0].mean(0) - onehot[1].mean(0)
    # population covariance of a one-hot vector is diag(p) - p p' (bias=True: divide by n)
    s = (
        np.atleast_2d(np.cov(onehot[0].T, bias=True))
        + np.atleast_2d(np.cov(onehot[1].T, bias=True))
    ) / 2
    return float(math.sqrt(d @ np.linalg.pinv(s) @ d))


def test_the_formulas_on_a_small_frame_by_hand():
    # binary: p1 = 0.6, p2 = 0.3 -> 0.3 / sqrt((0.24 + 0.21) / 2) = 0.6325 (the textbook formula)
    assert balance.smd_categorical([0.4, 0.6], [0.7, 0.3]) == pytest.approx(
        0.3 / math.sqrt(0.225), abs=1e-12
    )
    a, b = np.array([1.0, 2, 3, 4]), np.array([2.0, 4, 6, 8])
    n, mean, var = balance.moments(np.array([1.0, 2, 3, 4]), np.ones(4))
    assert (n, mean, var) == (4, 2.5, pytest.approx(np.var(a, ddof=1)))
    _, m2, v2 = balance.moments(np.array([2.0, 4, 6, 8]), np.ones(4))
    assert balance.smd_continuous(mean, var, m2, v2) == pytest.approx(_smd_continuous(a, b))
    # three levels: the builder's closed form equals the one-hot covariance computation
    x = pd.Series(list("aaabbc"))
    y = pd.Series(list("abccccc"))
    p = [x.value_counts(normalize=True).get(k, 0) for k in "abc"]
    q = [y.value_counts(normalize=True).get(k, 0) for k in "abc"]
    assert balance.smd_categorical(p, q) == pytest.approx(_smd_categorical(x, y), abs=1e-10)
    # no spread at all but a difference: infinite, not zero (pinv alone would say 0)
    assert balance.smd_categorical([1.0, 0.0], [0.0, 1.0]) == math.inf
    assert balance.smd_categorical([0.5, 0.5], [0.5, 0.5]) == 0.0


@pytest.mark.parametrize("group_by", ["er_status", "stage"])
def test_table1_smds_equal_an_independent_computation_on_the_demo_cohort(demo_con, group_by):
    result = cohorts.build_cohort(demo_con, ["age >= 40"], group_by)
    rows = cohorts.cohort_patients(demo_con, ["age >= 40"], group_by)
    smd = result.smd.set_index("variable")
    names = [g.name for g in result.groups]
    for label, col in cohorts.TABLE1_CONTINUOUS:
        expected = max(
            _smd_continuous(
                rows.loc[rows["group"] == g1, col].to_numpy(float),
                rows.loc[rows["group"] == g2, col].to_numpy(float),
            )
            for g1, g2 in itertools.combinations(names, 2)
        )
        assert smd.loc[label, "smd"] == pytest.approx(expected, rel=1e-9), label
    for label, col in cohorts.TABLE1_CATEGORICAL:
        if col == group_by:
            assert math.isnan(smd.loc[label, "smd"])  # the grouping variable has none
            continue
        values = rows[col].astype(str)
        expected = max(
            _smd_categorical(values[rows["group"] == g1], values[rows["group"] == g2])
            for g1, g2 in itertools.combinations(names, 2)
        )
        assert smd.loc[label, "smd"] == pytest.approx(expected, rel=1e-7, abs=1e-9), label


def test_one_group_has_no_smd_and_the_wide_table_shows_the_column_only_with_groups(demo_con):
    alone = cohorts.build_cohort(demo_con)
    assert alone.smd.empty and "SMD" not in cohorts.table1_wide(alone.table1, alone.smd)
    two = cohorts.build_cohort(demo_con, group_by="er_status")
    wide = cohorts.table1_wide(two.table1, two.smd)
    age = wide[wide["variable"] == "Age at diagnosis (years)"]
    assert (
        age["SMD"].iloc[0]
        == f"{two.smd.set_index('variable').loc[age['variable'].iloc[0], 'smd']:.2f}"
    )
    assert age["SMD"].iloc[1] == ""  # on the variable's first row only


def test_missing_values_get_their_own_rows_per_group(demo_db, tmp_path):
    path = tmp_path / "gaps.duckdb"
    shutil.copyfile(demo_db, path)
    with store.open_store(path) as con:
        # the stored base stays "fresh" (same counts and ids): Table 1 reads these NULLs
        con.execute("UPDATE cohort_base SET tumour_size_mm = NULL WHERE person_id % 7 = 0")
        con.execute("UPDATE cohort_base SET her2_status = NULL WHERE person_id % 11 = 0")
        truth = con.execute(
            "SELECT er_status, count(*) FILTER (tumour_size_mm IS NULL), "
            "count(*) FILTER (her2_status IS NULL), count(*) FROM cohort_base GROUP BY ALL"
        ).fetchall()
        result = cohorts.build_cohort(con, group_by="er_status")
    t1 = result.table1
    for group, size_missing, her2_missing, n in truth:
        cell = t1[(t1["group"] == group) & (t1["level"] == cohorts.MISSING)].set_index("variable")
        assert cell.loc["Tumour size (mm)", "n"] == size_missing > 0
        assert cell.loc["HER2 status", "n"] == her2_missing > 0
        assert cell.loc["Age at diagnosis (years)", "n"] == 0
        assert cell.loc["HER2 status", "percent"] == pytest.approx(100 * her2_missing / n)
    overall = t1[(t1["group"] == cohorts.ALL) & (t1["level"] == cohorts.MISSING)].set_index(
        "variable"
    )
    assert overall.loc["Tumour size (mm)", "n"] == sum(r[1] for r in truth)
    # the levels and the missing row add up to the group
    her2 = t1[(t1["variable"] == "HER2 status") & (t1["group"] == cohorts.ALL)]
    assert her2["n"].sum() == result.n
    wide = cohorts.table1_wide(t1, result.smd)
    levels = wide.loc[wide["variable"] == "HER2 status", "level"].tolist()
    assert levels[-1] == cohorts.MISSING  # missing last
