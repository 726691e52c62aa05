"""analytics.forecast.tumour: the growth-inhibition curve, RECIST marks, vectorised MAP fits, the
empirical-Bayes prior and the predictive bands, against simulations with known parameters."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analytics.forecast.tumour import (
    CALIBRATION_LEVELS,
    CEILING_MM,
    BandCalibration,
    LesionSeries,
    NoiseModel,
    TGIPrior,
    calibrate_bands,
    fit_map,
    fit_prior,
    held_out_mask,
    held_out_split,
    progression_threshold,
    recist_marks,
    tgi_curve,
)

TRUE_MU = np.array([np.log(30.0), np.log(4e-3), np.log(8e-4)])
TRUE_SD = np.array([0.35, 0.3, 0.4])
NOISE = NoiseModel(1.0, 0.04)


def simulate(n: int, visits: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Patients measured every ~100 days from treatment start, true theta drawn from the population."""
    rng = np.random.default_rng(seed)
    theta = TRUE_MU + rng.standard_normal((n, 3)) * TRUE_SD
    t = np.cumsum(rng.integers(80, 131, (n, visits)), axis=1) - 100.0
    f = tgi_curve(theta, t)
    y = np.round(np.maximum(f + rng.standard_normal(f.shape) * NOISE.sd(f), 0.0), 1)
    frame = pd.DataFrame(
        {"person_id": np.repeat(np.arange(n), visits), "t_days": t.ravel(), "mm": y.ravel()}
    )
    return frame, theta


def test_curve_matches_the_formula_by_hand():
    theta = np.array([np.log(20.0), np.log(0.01), np.log(0.002)])
    t = np.array([-30.0, 0.0, 100.0, 500.0])
    expected = [
        20.0,
        20.0,
        20 * (np.exp(-1.0) + np.exp(0.2) - 1),
        20 * (np.exp(-5.0) + np.exp(1.0) - 1),
    ]
    assert tgi_curve(theta, t) == pytest.approx(expected)
    huge = np.array([np.log(100.0), np.log(1e-3), np.log(0.05)])
    assert tgi_curve(huge, np.array([2000.0]))[0] == CEILING_MM  # no overflow, levels off


def test_recist_marks_by_hand():
    progression, response = recist_marks(np.array([40.0, 27.0, 25.0, 29.9, 30.0, 31.0]))
    # response: <= 28 mm (70 % of 40); progression: >= max(1.2 x nadir so far, nadir + 5) = 30 mm
    assert response.tolist() == [False, True, True, False, False, False]
    assert progression.tolist() == [False, False, False, False, True, True]
    assert progression_threshold(10.0) == pytest.approx(15.0)  # the absolute rule wins
    assert progression_threshold(50.0) == pytest.approx(60.0)  # the relative rule wins


def test_prior_and_noise_are_recovered_from_a_simulated_cohort():
    frame, theta = simulate(400, 8, seed=1)
    prior = fit_prior(LesionSeries.from_long(frame))
    assert prior.mu == pytest.approx(TRUE_MU, abs=0.12)
    assert np.sqrt(np.diag(prior.cov)) == pytest.approx(TRUE_SD, abs=0.12)
    assert prior.noise.a_mm == pytest.approx(1.0, abs=0.35)
    assert prior.noise.b == pytest.approx(0.04, abs=0.02)
    fit = fit_map(LesionSeries.from_long(frame), prior)
    for j in range(3):
        assert np.corrcoef(fit.theta[:, j], theta[:, j])[0, 1] > 0.75


def test_vectorised_fit_equals_one_patient_alone():
    frame, _ = simulate(30, 6, seed=2)
    prior = TGIPrior(TRUE_MU, np.diag(TRUE_SD**2), NOISE)
    batch = fit_map(LesionSeries.from_long(frame), prior)
    alone = fit_map(LesionSeries.from_long(frame[frame["person_id"] == 7]), prior)

    # Patient 7's arithmetic is her own in the batch (row-wise sums, her own 3 x 3 solves), but
    # the batch iterates until *every* patient has settled, so she may take more steps there than
    # alone: the two fits agree to the stopping rule, not to rounding, and where exactly a fit
    # stops moves with the CPU's rounding of exp and of the solves. A fit stops once a step gains
    # <= 1e-9 (1 + obj); near the optimum a Gauss-Newton step gains the excess d' H d (H = J'J + P,
    # cov = H^-1), so each fit is within sqrt(1e-9 (1 + obj)) posterior sd of it: 1.5e-4 at
    # obj <= 20 (six readings), 3e-4 for the two fits apart. Allow 1e-3 posterior sd. The
    # covariance moves with theta through the Jacobian, by ~|dJ/dtheta / J| x |d theta|
    # <= 5 x (1e-3 x 0.4) = 2e-3 of sd_i sd_j: allow 1e-2. A fit that used another patient's
    # readings is whole posterior sds away (the last check).
    def distance(theta: np.ndarray) -> float:
        d = theta - batch.theta[7]
        return float(np.sqrt(d @ np.linalg.solve(batch.cov[7], d)))

    assert distance(alone.theta[0]) < 1e-3
    sd = np.sqrt(np.diag(batch.cov[7]))
    assert (np.abs(alone.cov[0] - batch.cov[7]) <= 1e-2 * np.outer(sd, sd)).all()
    assert min(distance(batch.theta[j]) for j in range(30) if j != 7) > 1.0


def test_few_points_borrow_strength_and_get_wider_bands():
    frame, _ = simulate(50, 10, seed=3)
    prior = TGIPrior(TRUE_MU, np.diag(TRUE_SD**2), NOISE)
    series = LesionSeries.from_long(frame)
    two, ten = fit_map(series.first(2), prior), fit_map(series, prior)
    # rates of two early readings stay near the prior; their posterior is wider than with ten readings
    assert np.abs(two.theta[:, 2] - TRUE_MU[2]).mean() < np.abs(ten.theta[:, 2] - TRUE_MU[2]).mean()
    assert (np.sqrt(two.cov[:, 2, 2]) > np.sqrt(ten.cov[:, 2, 2])).all()
    one = fit_map(series.first(1), prior)
    assert np.isfinite(one.theta).all() and one.theta[:, 1:] == pytest.approx(
        np.tile(TRUE_MU[1:], (50, 1)), abs=0.1
    )


def test_predictive_bands_cover_held_out_readings_near_nominal():
    frame, _ = simulate(300, 10, seed=4)
    series = LesionSeries.from_long(frame)
    prior = fit_prior(series)
    fit = fit_map(series.first(5), prior)
    hidden = series.mask & (np.arange(series.mask.shape[1]) >= 5)
    q = fit.predictive(series.t_days, seed=0, quantiles=(0.1, 0.9, 0.025, 0.975))
    y = series.mm
    cover80 = ((y >= q[0]) & (y <= q[1]))[hidden].mean()
    cover95 = ((y >= q[2]) & (y <= q[3]))[hidden].mean()
    assert 0.72 < cover80 < 0.88
    assert 0.89 < cover95 < 0.99
    again = fit.predictive(series.t_days, seed=0, quantiles=(0.1, 0.9, 0.025, 0.975))
    assert np.array_equal(q, again)  # seeded


def test_recalibration_fitted_on_one_cohort_balances_the_bands_of_another():
    """Even when the model is the truth, Laplace bands forecast from a few early readings are lopsided
    (readings fall below the 80 % band far more often than above it); the recalibration estimated on
    one simulated cohort's held-out readings brings another cohort's coverage and tails to nominal."""
    fitting = LesionSeries.from_long(simulate(300, 8, seed=11)[0])
    prior = fit_prior(fitting)
    calibration = calibrate_bands(fitting, start=prior)
    assert (
        calibration is not None and calibration.readings == 1800
    )  # 300 patients x 6 origins (2..7 readings known), the next reading hidden at each
    checked = LesionSeries.from_long(simulate(300, 8, seed=12)[0])
    rows, keep = held_out_split(checked)
    sub = checked.subset(rows)
    fit = fit_map(sub.first(keep), replace(prior, calibration=calibration))
    hidden = held_out_mask(sub, keep)
    t, y = np.where(hidden, sub.t_days, 0.0), sub.mm

    def shares(calibrated: bool) -> tuple[float, float, float]:
        q = fit.predictive(t, seed=0, quantiles=(0.1, 0.9, 0.025, 0.975), calibrated=calibrated)
        below, above = (y < q[0])[hidden].mean(), (y > q[1])[hidden].mean()
        return below, above, ((y >= q[2]) & (y <= q[3]))[hidden].mean()

    raw_below, raw_above, raw95 = shares(False)
    below, above, cover95 = shares(True)
    assert raw_below > raw_above + 0.05
    assert abs((1 - below - above) - 0.80) < 0.035 and abs(cover95 - 0.95) < 0.02
    assert abs(below - above) < 0.03
    assert abs(cover95 - 0.95) < abs(raw95 - 0.95)


def test_calibration_map_by_hand_and_its_state_round_trip():
    square = BandCalibration(CALIBRATION_LEVELS**2, readings=7)
    assert square.level(0.5) == pytest.approx(0.25) and square.probability_below(
        0.25
    ) == pytest.approx(0.5)
    frame, _ = simulate(40, 6, seed=5)
    series = LesionSeries.from_long(frame)
    plain = TGIPrior(TRUE_MU, np.diag(TRUE_SD**2), NOISE)
    identity = replace(plain, calibration=BandCalibration(CALIBRATION_LEVELS.copy()))
    t = series.t_days + 200.0
    raw = fit_map(series, plain)
    assert np.array_equal(
        raw.predictive(t, seed=3), fit_map(series, identity).predictive(t, seed=3)
    )
    threshold = np.full(series.n, 35.0)
    squared = fit_map(series, replace(plain, calibration=square))
    below = 1.0 - raw.exceedance(t, threshold, 200, seed=4)
    mapped = np.interp(below, CALIBRATION_LEVELS**2, CALIBRATION_LEVELS)  # ~ sqrt, piecewise linear
    assert squared.exceedance(t, threshold, 200, seed=4) == pytest.approx(1.0 - mapped)
    assert (
        squared.exceedance(t, threshold, 200, seed=4)
        <= raw.exceedance(t, threshold, 200, seed=4) + 1e-12
    ).all()
    again = TGIPrior.from_state(json.loads(json.dumps(squared.prior.to_state())))
    assert (
        np.array_equal(again.mu, plain.mu)
        and np.array_equal(again.cov, plain.cov)
        and again.noise == NOISE
    )
    assert (
        np.array_equal(again.calibration.pit_quantiles, square.pit_quantiles)
        and again.calibration.readings == 7
    )
    assert TGIPrior.from_state(plain.to_state()).calibration is None


def test_empty_and_padded_series():
    empty = LesionSeries.from_long(pd.DataFrame(columns=["person_id", "t_days", "mm"]))
    assert empty.n == 0
    assert fit_map(empty, TGIPrior(TRUE_MU, np.diag(TRUE_SD**2), NOISE)).theta.shape == (0, 3)
    s = LesionSeries.from_long(
        pd.DataFrame({"person_id": [5, 3, 5], "t_days": [10.0, 0.0, 0.0], "mm": [1, 2, 3]})
    )
    assert s.person_id.tolist() == [3, 5] and s.counts.tolist() == [1, 2]
    assert s.mm[1, :2].tolist() == [3, 1]  # time order within a patient
