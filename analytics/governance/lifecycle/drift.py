"""Drift: do the inputs (and, where outcomes accrue, the calibration) of a model still look like its
validation, window by window? Pure statistics on plain frames; ``drift_data`` reads the store.

Tests, each alert naming its own (docs/governance.md, "Drift"):

* **PSI > 0.2** (population stability index over the reference's deciles; for a feature with at
  most ten values, over its values): the usual "major shift" rule. PSI is biased upwards in small
  samples (about (bins - 1) / n with no shift at all: 0.45 at n = 20), so it alerts only in windows
  of at least ``PSI_MIN_N`` rows; smaller windows show it, greyed, without an alert.
* **two-sample test p < 0.01 / k**: Kolmogorov-Smirnov (scipy.stats.ks_2samp) for a continuous
  feature, chi-square (scipy.stats.chi2_contingency) for one with at most ten values; Bonferroni
  over the k features of a window, so a window without drift raises a false alert about once in a
  hundred windows.
* **calibration** (outcomes known at the model's horizon): logistic recalibration of the observed
  event on the logit of the predicted risk; an alert when the slope's 95 % interval excludes 1 or
  the calibration-in-the-large intercept's (slope fixed at 1) excludes 0.

Windows are calendar periods (month, quarter or year) of the date the input belongs to (the
study date of an image, the diagnosis date of a patient). A window with fewer than
``MIN_WINDOW_N`` rows is listed with its count and not tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

PSI_THRESHOLD = 0.2
PSI_MIN_N = 100
TEST_ALPHA = 0.01  # family-wise, per window (Bonferroni over its features)
MIN_WINDOW_N = 20
CALIBRATION_MIN_EVENTS = 5
DISCRETE_MAX_VALUES = 10
FREQUENCIES = {"month": "M", "quarter": "Q", "year": "Y"}
_EPS = 1e-4  # empty bins: PSI is infinite without a floor


class DriftError(ValueError):
    """Drift cannot be computed as asked (unknown frequency, no reference)."""


@dataclass(frozen=True)
class DriftAlert:
    """One alert: which model, window and feature, the test, its value and the threshold it crossed."""

    model: str
    window: str
    feature: str
    test: str
    value: float
    threshold: str
    message: str

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "window": self.window,
            "feature": self.feature,
            "test": self.test,
            "value": float(f"{float(self.value):.4g}"),  # p values far below 1e-6 stay non-zero
            "threshold": self.threshold,
            "message": self.message,
        }


@dataclass(frozen=True, eq=False)
class DriftReport:
    """Per-window figures of one model and what is monitored; ``rows`` one row per window x feature."""

    model: str
    monitored: str  # "inputs" or "calibration"
    reference: str  # what the windows are compared with
    frequency: str
    rows: pd.DataFrame
    alerts: tuple[DriftAlert, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def tests_run(self) -> int:
        return int(self.rows["tested"].sum()) if "tested" in self.rows else 0

    def to_json(self) -> dict:
        rows = self.rows.replace({np.nan: None}).to_dict(orient="records")
        return {
            "model": self.model,
            "monitored": self.monitored,
            "reference": self.reference,
            "frequency": self.frequency,
            "windows": sorted({str(r["window"]) for r in rows}),
            "tests_run": self.tests_run,
            "rows": rows,
            "alerts": [a.to_json() for a in self.alerts],
            "notes": list(self.notes),
        }


def window_labels(dates: pd.Series, frequency: str) -> pd.Series:
    """Calendar period of each date as text (``2026-03``, ``2026Q1``, ``2026``)."""
    if frequency not in FREQUENCIES:
        raise DriftError(f"frequency is one of {', '.join(FREQUENCIES)}, not {frequency!r}")
    return pd.to_datetime(dates).dt.to_period(FREQUENCIES[frequency]).astype(str)


def is_discrete(reference: np.ndarray) -> bool:
    return len(np.unique(reference[~np.isnan(reference)])) <= DISCRETE_MAX_VALUES


def _bins(reference: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of reference and sample over the reference's deciles (or values, when discrete)."""
    if is_discrete(reference):
        values = np.union1d(np.unique(reference), np.unique(sample))
        return (
            np.array([(reference == v).sum() for v in values], dtype=float),
            np.array([(sample == v).sum() for v in values], dtype=float),
        )
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11))[1:-1])
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    obs = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=len(edges) + 1)
    return ref.astype(float), obs.astype(float)


def psi(reference: np.ndarray, sample: np.ndarray) -> float:
    """Population stability index of ``sample`` against ``reference`` (sum (o - r) ln(o / r))."""
    ref, obs = _bins(np.asarray(reference, float), np.asarray(sample, float))
    r = np.maximum(ref / ref.sum(), _EPS)
    o = np.maximum(obs / obs.sum(), _EPS)
    return float(((o - r) * np.log(o / r)).sum())


def two_sample_test(reference: np.ndarray, sample: np.ndarray) -> tuple[str, float, float]:
    """(test name, statistic, p): KS for a continuous feature, chi-square for a discrete one."""
    reference, sample = np.asarray(reference, float), np.asarray(sample, float)
    if is_discrete(reference):
        ref, obs = _bins(reference, sample)
        keep = (ref + obs) > 0
        table = np.vstack([ref[keep], obs[keep]])
        if table.shape[1] < 2:
            return "chi-square", 0.0, 1.0
        chi2, p, _, _ = sps.chi2_contingency(table)
        return "chi-square", float(chi2), float(p)
    result = sps.ks_2samp(reference, sample)
    return "Kolmogorov-Smirnov", float(result.statistic), float(result.pvalue)


def input_drift(
    model: str,
    reference: pd.DataFrame,
    observed: pd.DataFrame,
    *,
    date_column: str,
    reference_label: str,
    frequency: str = "month",
) -> DriftReport:
    """Each feature of ``observed`` (every column of ``reference``) per window against ``reference``."""
    features = [c for c in reference.columns if c in observed.columns]
    if not features:
        raise DriftError(f"no reference for the inputs of {model}")
    rows, alerts = [], []
    if observed.empty:
        return DriftReport(
            model,
            "inputs",
            reference_label,
            frequency,
            pd.DataFrame(columns=["window", "feature", "n", "tested"]),
            notes=(f"no inputs of {model} recorded yet",),
        )
    windows = window_labels(observed[date_column], frequency)
    alpha = TEST_ALPHA / len(features)
    for window in sorted(windows.unique()):
        part = observed[windows == window]
        for feature in features:
            ref = reference[feature].dropna().to_numpy(float)
            sample = part[feature].dropna().to_numpy(float)
            row = {
                "window": window,
                "feature": feature,
                "n": len(sample),
                "reference_mean": float(ref.mean()) if len(ref) else np.nan,
                "window_mean": float(sample.mean()) if len(sample) else np.nan,
                "psi": np.nan,
                "test": None,
                "statistic": np.nan,
                "p": np.nan,
                "alpha": alpha,
                "tested": False,
                "alert": False,
            }
            if len(sample) >= MIN_WINDOW_N and len(ref) >= MIN_WINDOW_N:
                value = psi(ref, sample)
                test, statistic, p = two_sample_test(ref, sample)
                row.update(psi=value, test=test, statistic=statistic, p=p, tested=True)
                if p < alpha:
                    alerts.append(
                        DriftAlert(
                            model,
                            window,
                            feature,
                            test,
                            p,
                            f"p < {alpha:.2g} (0.01 / {len(features)} features)",
                            f"{feature} in {window} differs from the reference ({test} p = {p:.2g} "
                            f"< {alpha:.2g}; mean {row['window_mean']:.3g} vs {row['reference_mean']:.3g}, "
                            f"n = {len(sample)})",
                        )
                    )
                    row["alert"] = True
                if value > PSI_THRESHOLD and len(sample) >= PSI_MIN_N:
                    alerts.append(
                        DriftAlert(
                            model,
                            window,
                            feature,
                            "PSI",
                            value,
                            f"PSI > {PSI_THRESHOLD} (windows of n >= {PSI_MIN_N})",
                            f"{feature} in {window}: PSI {value:.2f} > {PSI_THRESHOLD} (n = {len(sample)})",
                        )
                    )
                    row["alert"] = True
            rows.append(row)
    small = sorted({r["window"] for r in rows if not r["tested"]})
    notes = (
        (f"windows with fewer than {MIN_WINDOW_N} inputs are not tested: {', '.join(small)}",)
        if small
        else ()
    )
    return DriftReport(
        model, "inputs", reference_label, frequency, pd.DataFrame(rows), tuple(alerts), notes
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def logistic_fit(
    y: np.ndarray, x: np.ndarray | None, offset: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression by Newton steps: coefficients and their standard errors.

    ``x`` None fits the intercept alone with ``offset`` (calibration-in-the-large); otherwise the
    design is [1, x]. Standard errors from the inverse observed information.
    """
    n = len(y)
    design = np.ones((n, 1)) if x is None else np.column_stack([np.ones(n), x])
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        eta = offset + design @ beta
        mu = 1 / (1 + np.exp(-eta))
        w = mu * (1 - mu)
        info = design.T @ (design * w[:, None])
        step = np.linalg.solve(info + 1e-9 * np.eye(len(beta)), design.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    mu = 1 / (1 + np.exp(-(offset + design @ beta)))
    info = design.T @ (design * (mu * (1 - mu))[:, None])
    se = np.sqrt(np.diag(np.linalg.inv(info + 1e-9 * np.eye(len(beta)))))
    return beta, se


def calibration_drift(
    model: str,
    observed: pd.DataFrame,
    *,
    date_column: str,
    reference_label: str,
    frequency: str = "year",
) -> DriftReport:
    """Calibration per window of ``predicted`` (risk of the event by the horizon) against ``event`` (0/1)."""
    z = sps.norm.ppf(0.975)
    rows, alerts = [], []
    windows = (
        window_labels(observed[date_column], frequency)
        if not observed.empty
        else pd.Series([], dtype=str)
    )
    for window in sorted(windows.unique()):
        part = observed[windows == window]
        y = part["event"].to_numpy(float)
        lp = _logit(part["predicted"].to_numpy(float))
        row = {
            "window": window,
            "feature": "calibration",
            "n": len(y),
            "events": int(y.sum()),
            "observed_rate": float(y.mean()) if len(y) else np.nan,
            "predicted_rate": float(part["predicted"].mean()) if len(y) else np.nan,
            "intercept": np.nan,
            "intercept_low": np.nan,
            "intercept_high": np.nan,
            "slope": np.nan,
            "slope_low": np.nan,
            "slope_high": np.nan,
            "tested": False,
            "alert": False,
        }
        if (
            len(y) >= MIN_WINDOW_N
            and CALIBRATION_MIN_EVENTS <= y.sum() <= len(y) - CALIBRATION_MIN_EVENTS
        ):
            (a,), (sa,) = logistic_fit(y, None, lp)
            (_, b), (_, sb) = logistic_fit(y, lp, np.zeros(len(y)))
            row.update(
                intercept=a,
                intercept_low=a - z * sa,
                intercept_high=a + z * sa,
                slope=b,
                slope_low=b - z * sb,
                slope_high=b + z * sb,
                tested=True,
            )
            if not row["intercept_low"] <= 0 <= row["intercept_high"]:
                alerts.append(
                    DriftAlert(
                        model,
                        window,
                        "calibration-in-the-large",
                        "logistic recalibration intercept",
                        a,
                        "95 % CI excludes 0",
                        f"in {window} the observed risk ({row['observed_rate']:.0%}) differs from the "
                        f"predicted ({row['predicted_rate']:.0%}): intercept {a:.2f} "
                        f"(95 % CI {row['intercept_low']:.2f} to {row['intercept_high']:.2f}) excludes 0",
                    )
                )
                row["alert"] = True
            if not row["slope_low"] <= 1 <= row["slope_high"]:
                alerts.append(
                    DriftAlert(
                        model,
                        window,
                        "calibration slope",
                        "logistic recalibration slope",
                        b,
                        "95 % CI excludes 1",
                        f"in {window} the calibration slope is {b:.2f} (95 % CI {row['slope_low']:.2f} "
                        f"to {row['slope_high']:.2f}), excluding 1",
                    )
                )
                row["alert"] = True
        rows.append(row)
    notes: tuple[str, ...] = ()
    if not rows:
        notes = ("no outcomes known at the horizon yet",)
    elif any(not r["tested"] for r in rows):
        notes = (
            f"windows with fewer than {MIN_WINDOW_N} patients or fewer than "
            f"{CALIBRATION_MIN_EVENTS} events or non-events are not tested",
        )
    return DriftReport(
        model,
        "calibration",
        reference_label,
        frequency,
        pd.DataFrame(rows, columns=None if rows else ["window", "feature", "n", "tested"]),
        tuple(alerts),
        notes,
    )
