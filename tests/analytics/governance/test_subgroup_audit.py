"""Subgroup audit: fast metrics equal the reference implementations; a planted gap is found as the largest."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from analytics.governance import subgroup_audit
from analytics.governance.subgroup_audit import (
    BINARY_METRICS,
    age_band,
    auc,
    auc_resampled,
    audit_subgroups,
    false_positive_rate,
    false_positive_rate_resampled,
    true_positive_rate,
    true_positive_rate_resampled,
)
from analytics.governance.subgroup_treatment import (
    SURVIVAL_METRICS,
    harrell_c_fast,
    harrell_c_resampled,
)
from analytics.treatment.model.metrics import harrell_c


def test_fast_metrics_equal_sklearn_sksurv_and_lifelines() -> None:
    from lifelines import KaplanMeierFitter

    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.4
    s = np.round(rng.random(300), 2)  # ties on purpose
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    t = np.round(rng.exponential(1500, 300) / 30) * 30  # tied times too
    e = rng.random(300) < 0.6
    assert harrell_c_fast(t, e, s) == pytest.approx(harrell_c(t, e, s), abs=1e-12)
    km = KaplanMeierFitter().fit(t, e)
    km_rfs = next(m for m in SURVIVAL_METRICS if m.name == "km_rfs_5y")
    assert km_rfs.func(e, s, time=t) == pytest.approx(float(km.predict(1826.25)), abs=1e-9)


def test_harrell_c_of_all_resamples_at_once_is_each_resample_s_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    n = 150
    t = np.round(rng.exponential(1500, n) / 30) * 30  # tied times
    e = rng.random(n) < 0.5
    s = np.round(rng.random(n), 2)  # tied risks
    rows = rng.integers(0, n, (60, n))
    rows[0] = 0  # one patient drawn n times: no comparable pair, NaN as the loop gives
    batch = harrell_c_resampled(t, e, s, rows)
    loop = np.array([harrell_c_fast(t[r], e[r], s[r]) for r in rows])
    assert np.isnan(batch[0]) and np.isnan(loop[0])
    assert np.array_equal(batch[1:], loop[1:])  # equal floats, not approximately


def test_the_audit_with_the_batched_c_index_is_the_audit_with_the_loop() -> None:
    """Same seed, same draws: every gap and interval identical with and without ``Metric.batch``."""
    rng = np.random.default_rng(9)
    n = 600
    frame = pd.DataFrame(
        {
            "site": rng.choice(["A", "B", "C"], n),
            "stage": rng.choice(["I", "II", "III"], n),
            "outcome": (rng.random(n) < 0.45).astype(int),
            "score": np.round(rng.random(n), 2),
            "time": np.round(rng.exponential(1500, n) / 30) * 30,
        }
    )
    frame.loc[frame["site"] == "C", "outcome"] = (
        rng.random((frame["site"] == "C").sum()) < 0.05
    ).astype(int)
    looped = tuple(dataclasses.replace(m, batch=None) for m in SURVIVAL_METRICS)
    kwargs = {"gap_metrics": ("harrell_c",), "bootstrap": 200, "seed": 4}
    fast = audit_subgroups(frame, ["site", "stage"], metrics=SURVIVAL_METRICS, **kwargs)
    slow = audit_subgroups(frame, ["site", "stage"], metrics=looped, **kwargs)
    assert len(fast.gaps) == 2 and fast.gaps[["ci_low", "ci_high"]].notna().all().all()
    pd.testing.assert_frame_equal(fast.gaps, slow.gaps, check_exact=True)


def test_auc_and_error_rates_of_all_resamples_at_once_are_each_resample_s_bit_for_bit() -> None:
    rng = np.random.default_rng(6)
    n = 120
    y = rng.random(n) < 0.3
    s = np.round(rng.random(n), 2)  # tied scores: mid-ranks
    d = s >= 0.5
    rows = rng.integers(0, n, (80, n))
    rows[0] = np.flatnonzero(~y)[0]  # one class only: NaN for AUC and the true positive rate
    rows[1] = np.flatnonzero(y)[0]  # positives only: NaN for the false positive rate
    for batch, loop in (
        (auc_resampled(y, s, rows), [auc(y[r], s[r]) for r in rows]),
        (
            true_positive_rate_resampled(y, s, rows, decision=d),
            [true_positive_rate(y[r], s[r], d[r]) for r in rows],
        ),
        (
            false_positive_rate_resampled(y, s, rows, decision=d),
            [false_positive_rate(y[r], s[r], d[r]) for r in rows],
        ),
    ):
        np.testing.assert_array_equal(
            batch, np.array(loop)
        )  # NaN where NaN, equal floats elsewhere
    assert np.isnan(auc_resampled(y, s, rows)[:2]).all()


def test_the_per_group_table_is_fairlearn_s_metric_frame() -> None:
    """The independent reference: fairlearn's ``MetricFrame`` over the same metrics and rows."""
    from fairlearn.metrics import MetricFrame

    frame = _planted()
    frame.loc[:30, "band"] = None  # missing values: the audit drops them, as its caller does
    sub = frame[frame["band"].notna()]
    ours = subgroup_audit._by_group(sub, "band", BINARY_METRICS, "outcome", "score")
    funcs = {"n": subgroup_audit.count, "positives": subgroup_audit.positives}
    reference = MetricFrame(
        metrics=funcs | {m.name: m.func for m in BINARY_METRICS},
        y_true=sub["outcome"].to_numpy(),
        y_pred=sub["score"].to_numpy(),
        sensitive_features=sub["band"].astype(str).rename("band"),
        sample_params={
            m.name: {p: sub[p].to_numpy() for p in m.params} for m in BINARY_METRICS if m.params
        },
    ).by_group.reset_index()
    assert list(ours["group"]) == list(reference["band"]) == ["x", "y"]
    for column in ["n", "positives", *(m.name for m in BINARY_METRICS)]:
        np.testing.assert_array_equal(
            ours[column].to_numpy(float), reference[column].to_numpy(float)
        )


def _planted(seed: int = 11) -> pd.DataFrame:
    """Three sites; the model is informative at A and B and almost random at C (the planted gap)."""
    rng = np.random.default_rng(seed)
    rows = []
    for site, signal in (("A", 2.0), ("B", 2.0), ("C", 0.1)):
        y = rng.random(400) < 0.35
        score = 1 / (1 + np.exp(-(signal * (y - 0.5) + rng.normal(0, 1, 400))))
        rows.append(
            pd.DataFrame(
                {
                    "site": site,
                    "outcome": y.astype(int),
                    "score": score,
                    "decision": (score >= 0.5).astype(int),
                    "band": rng.choice(["x", "y"], 400),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_a_planted_gap_is_the_largest_with_an_interval_that_excludes_zero() -> None:
    frame = _planted()
    audit = audit_subgroups(frame, ["site", "band", "missing"], bootstrap=100, seed=1)
    largest = audit.largest["auc"]
    assert largest["attribute"] == "site" and largest["low_group"] == "C"
    assert largest["gap"] > 0.2 and largest["ci_low"] > 0.1
    band = audit.gaps[(audit.gaps["attribute"] == "band") & (audit.gaps["metric"] == "auc")].iloc[0]
    assert (
        band["gap"] < largest["gap"] and band["ci_low"] < 0 < band["ci_high"]
    )  # no real gap: CI spans 0
    assert audit.skipped == {"missing": "not recorded"}
    by = audit.by_group.set_index(["attribute", "group"])
    assert by.loc[("site", "A"), "n"] == 400 and 0.75 < by.loc[("site", "A"), "auc"] < 0.95


def test_small_and_one_class_groups_never_make_a_gap() -> None:
    frame = _planted()
    frame.loc[:4, "site"] = "tiny"  # 5 patients: shown, left out of the gaps
    frame["only"] = "F"
    audit = audit_subgroups(frame, ["site", "only"], bootstrap=0)
    assert "tiny" in set(audit.by_group["group"])
    assert "tiny" not in set(audit.gaps["low_group"]) | set(audit.gaps["high_group"])
    assert "one group only" in audit.skipped["only"]
    as_json = audit.as_dict()
    assert as_json["largest_gap"]["auc"]["ci_low"] is None  # no bootstrap: no interval, NaN -> None


def test_age_bands() -> None:
    assert list(age_band([39.9, 40, 55, 69.9, 70, 88])) == [
        "<40",
        "40-49",
        "50-59",
        "60-69",
        "70+",
        "70+",
    ]
