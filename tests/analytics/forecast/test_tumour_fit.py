"""analytics.forecast.tumour's fast paths (issue 23) against the computation they replace.

``fit_map`` pads each series to its width class, keeps the trial curve and drops rows at a
fixed point; ``TGIFit.draws`` sums the Cholesky products by hand. Both must give the numbers of
the straightforward batch computation bit for bit, so that a stored worklist ranked before the
change is still what a refresh writes. The references below are that computation, verbatim.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics import store
from analytics.forecast import tumour
from analytics.forecast.data import (
    clean,
    clean_segments,
    data_cutoff,
    lesion_frame,
    lesion_segments,
)
from analytics.forecast.tumour import (
    CEILING_MM,
    N_PARAMS,
    PAD_QUANTUM,
    LesionSeries,
    TGIFit,
    TGIPrior,
    default_prior,
    fit_map,
    fit_prior,
    held_out_split,
)


def reference_fit_map(series, prior, iterations=tumour.LM_ITERATIONS, start=None):
    """``fit_map`` before issue 23: every row padded to the batch's width, every iteration."""
    t, y, mask = series.t_days, series.mm, series.mask
    mu, prec = prior.mu, prior.precision
    theta = tumour._initial_theta(series, mu) if start is None else np.array(start, dtype=float)
    eye = np.eye(N_PARAMS)
    for weight_pass in range(2):
        size = y if weight_pass == 0 else tumour.tgi_curve(theta, t)
        w = np.where(mask, 1.0 / prior.noise.sd(size), 0.0)
        lam = np.full(series.n, 1e-3)
        obj = tumour._objective(theta, t, y, w, mu, prec)
        for _ in range(iterations):
            f, jac = tumour._curve_and_jacobian(theta, t)
            r = (y - f) * w
            jw = jac * w[..., None]
            hess = np.matmul(jw.transpose(0, 2, 1), jw) + prec
            grad = np.matmul(jw.transpose(0, 2, 1), r[..., None])[..., 0] - (theta - mu) @ prec
            damped = hess + lam[:, None, None] * (hess * eye)
            step = np.clip(np.linalg.solve(damped, grad[..., None])[..., 0], -2.0, 2.0)
            new = theta + step
            new_obj = tumour._objective(new, t, y, w, mu, prec)
            better = new_obj < obj
            gain = np.where(better, obj - new_obj, 0.0)
            theta = np.where(better[:, None], new, theta)
            obj = np.where(better, new_obj, obj)
            lam = np.clip(np.where(better, lam * 0.3, lam * 10.0), 1e-9, 1e9)
            settled = (better & (gain <= 1e-9 * (1.0 + obj))) | (~better & (lam >= 1e4))
            if settled.all():
                break
    _, jac = tumour._curve_and_jacobian(theta, t)
    jw = jac * w[..., None]
    cov = np.linalg.inv(np.matmul(jw.transpose(0, 2, 1), jw) + prec)
    return theta, cov


def _assert_same_fit(series: LesionSeries, prior: TGIPrior, start=None) -> None:
    theta, cov = reference_fit_map(series, prior, start=start)
    fit = fit_map(series, prior, start=start)
    np.testing.assert_array_equal(fit.theta, theta)
    np.testing.assert_array_equal(fit.cov, cov)


@pytest.fixture(scope="module")
def clinic_series(clinic_db):
    """(the listed path's per-patient series, the prior's per-line series, the prior) of the store."""
    with store.open_store(clinic_db, read_only=True) as con:
        as_of = data_cutoff(con)
        readings, _ = clean(lesion_frame(con, "all", as_of=as_of), as_of)
        segments = clean_segments(lesion_segments(con, "all", as_of=as_of), as_of)
    lines = LesionSeries.from_long(segments, by="series_id")
    return LesionSeries.from_long(readings), lines, fit_prior(lines, rounds=2)


def test_fit_matches_the_padded_batch_bit_for_bit_on_a_demo_clinic(clinic_series):
    patients, lines, prior = clinic_series
    assert patients.n > 1_000 and patients.mask.shape[1] > 2 * PAD_QUANTUM  # several width classes
    _assert_same_fit(patients, prior)
    _assert_same_fit(lines, default_prior())  # the prior's first round
    _assert_same_fit(lines, prior, start=fit_map(lines, prior).theta)  # a later round's start


def test_fit_matches_on_truncated_series_as_the_recalibration_fits_them(clinic_series):
    _, lines, prior = clinic_series
    rows, keep = held_out_split(lines)
    _assert_same_fit(lines.subset(rows).first(keep), prior)  # masks shorter than the data


def test_fit_matches_at_every_width_class_boundary():
    # series of 1..33 readings (each side of 8, 16, 24, 32), some at the ceiling, some wild
    rng = np.random.default_rng(5)
    counts = np.r_[np.arange(1, 34), rng.integers(1, 34, 300)]
    m = int(counts.max())
    t = np.sort(rng.uniform(-30, 1500, (counts.size, m)), axis=1)
    theta = np.column_stack(
        [
            rng.normal(np.log(30), 0.6, counts.size),
            rng.normal(-6, 1, counts.size),
            rng.normal(-7, 1.5, counts.size),
        ]
    )
    y = np.maximum(tumour.tgi_curve(theta, t) + rng.normal(0, 2, t.shape), 0.5)
    y[:5] = CEILING_MM
    mask = np.arange(m)[None, :] < counts[:, None]
    series = LesionSeries(
        np.arange(counts.size), np.where(mask, t, 0.0), np.where(mask, y, 0.0), mask
    )
    _assert_same_fit(series, default_prior())


def test_width_classes_cover_every_row_once_at_a_multiple_of_eight_or_the_full_width():
    counts = np.array([0, 1, 7, 8, 9, 16, 17, 40, 41, 44])
    classes = tumour._width_classes(counts, 44)
    rows = np.sort(np.concatenate([r for r, _ in classes]))
    np.testing.assert_array_equal(rows, np.arange(counts.size))
    for r, width in classes:
        assert width % PAD_QUANTUM == 0 or width == 44
        assert (counts[r] <= width).all()
        assert (counts[r] > width - PAD_QUANTUM).all() or width == PAD_QUANTUM


def test_draws_match_the_einsum_they_replace(clinic_series):
    patients, _, prior = clinic_series
    fit = fit_map(patients, prior)
    chol = np.linalg.cholesky(fit.cov + 1e-12 * np.eye(N_PARAMS))
    z = np.random.default_rng(3).standard_normal((50, patients.n, N_PARAMS))
    expected = fit.theta[None] + np.einsum("nij,snj->sni", chol, z)
    got = TGIFit(patients, prior, fit.theta, fit.cov).draws(50, 3)
    np.testing.assert_array_equal(got, expected)


def _reference_exceedance(fit, t_days, threshold, n_draws, seed):
    """``TGIFit.exceedance`` before issue 23's second pass: the whole (draws, n, k) array at once."""
    y = fit.sample_measurements(t_days, n_draws, seed)
    threshold = np.asarray(threshold, dtype=float)[None, :, None]
    if fit.prior.calibration is None:
        return (y >= threshold).mean(axis=0)
    return 1.0 - fit.prior.calibration.probability_below((y < threshold).mean(axis=0))


@pytest.mark.parametrize("block", [tumour.MEASUREMENT_BLOCK, 7])
def test_event_probabilities_by_blocks_match_the_whole_array(clinic_series, monkeypatch, block):
    # blocks of 7 patients: a last block that is not full, and hundreds of them
    patients, lines, prior = clinic_series
    monkeypatch.setattr(tumour, "MEASUREMENT_BLOCK", block)
    fit = fit_map(patients, prior)
    assert patients.n > 3 * tumour.MEASUREMENT_BLOCK
    last = np.max(np.where(patients.mask, patients.t_days, -np.inf), axis=1)
    at = np.column_stack([last + 90.0, last + 180.0])  # two times per patient
    threshold = tumour.progression_threshold(patients.mm[:, 0])
    calibrated = TGIFit(patients, calibrated_prior(lines, prior), fit.theta, fit.cov)
    for f in (fit, calibrated):  # raw bands and recalibrated ones
        np.testing.assert_array_equal(
            f.exceedance(at, threshold, 120, 11), _reference_exceedance(f, at, threshold, 120, 11)
        )
    shared = np.array([400.0, 800.0])  # one set of times for every patient
    np.testing.assert_array_equal(
        fit.exceedance(shared, threshold, 60, 2),
        _reference_exceedance(fit, shared, threshold, 60, 2),
    )
    hidden = np.where(patients.mask, patients.t_days, 0.0)
    y = fit.sample_measurements(hidden, 80, 5)
    expected = (y < patients.mm[None]).mean(axis=0) + 0.5 * (y == patients.mm[None]).mean(axis=0)
    np.testing.assert_array_equal(fit.pit(hidden, patients.mm, 80, 5), expected)


def calibrated_prior(lines: LesionSeries, prior: TGIPrior) -> TGIPrior:
    calibration = tumour.calibrate_bands(lines, start=prior)
    assert calibration is not None
    return TGIPrior(prior.mu, prior.cov, prior.noise, prior.n_patients, calibration)
