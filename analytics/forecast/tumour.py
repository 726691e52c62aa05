"""Tumour-size trajectories: the tumour growth-inhibition (TGI) model fitted to serial lesion diameters.

Model (Stein et al., Clin Cancer Res 2011): f(t) = f0 (exp(-d t) + exp(g t) - 1),
t in days since the start of first-line treatment (clamped at 0: before
treatment the lesion is taken to be f0), decay rate d and growth rate g per day.
The parameters are fitted on the log scale, theta = (log f0, log d, log g), so
all three stay positive.

Why empirical Bayes: a patient has 1-21 measurements, and with two or three a
free three-parameter fit is undetermined or wild. Each patient's fit is the
maximum a posteriori (MAP) estimate under a population prior theta ~ N(mu, Sigma)
whose mu and Sigma are estimated from the cohort itself (``fit_prior``: an
EM-like loop using the Laplace approximation of each patient's posterior), so
a patient with few points borrows the cohort's typical course and one with
many points follows her own data.

Why vectorised: the worklist fits every eligible patient on each data
version; patients are padded to one (patients x measurements) array and a
damped Gauss-Newton (Levenberg-Marquardt) iteration runs on all of them at
once with batched 3 x 3 solves, so 10,000 patients take about a second.

Uncertainty: the Laplace approximation gives each patient's posterior
covariance of theta; forecast bands are quantiles of the curve at parameter
draws from it plus measurement noise sigma(f) = a + b f (estimated from the
cohort's residuals). Bands are therefore for a future *measurement*, which is
what the validation checks them against.

Recalibration (``calibrate_bands``): on the demo cohort these raw bands covered
77 % / 92 % of held-out later readings instead of 80 % / 95 %, and not because
they are too narrow: the noise estimate matches the generator's and the
standardised residuals have sd 0.98. They are lopsided: held-out readings fell
below the 80 % band twice as often as above it (16 % vs 7 %), because the
Laplace (log-normal) posterior makes the predictive more right-skewed than the
readings are. Widening (a variance factor, a Student-t) would fix the total by
making the upper side wider still. Instead each band reads the predictive at
levels recalibrated on held-out readings of the cohort itself (quantile
recalibration, Kuleshov et al., ICML 2018): the PIT value of each held-out
reading (where it falls in its own predictive distribution) is collected, and
the nominal 10 % bound is read at the predictive's level below which 10 % of
those PIT values fell, and so on. Event probabilities (six-month progression)
go through the same map. The point forecast (the MAP curve) is unchanged.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

N_PARAMS = 3
MAX_EXPONENT = 40.0  # exp() arguments are clipped here: no overflow for absurd draws
# Exponential regrowth is unbounded in the model, and a breast is not: curves level off at this size,
# the largest diameter the clinic records (the demo generator caps its lesions there too). A known
# limit of the model, stated on the model card of the forecast (docs/validation.md).
CEILING_MM = 250.0
LM_ITERATIONS = 40
DEFAULT_DRAWS = 400
QUANTILES = (0.025, 0.10, 0.50, 0.90, 0.975)
# Broad starting prior: sizes around 25 mm, rates around 1/300 and 1/1000 per day, wide on the log scale.
START_MU = np.array([np.log(25.0), np.log(3e-3), np.log(1e-3)])
START_SD = np.array([1.5, 2.0, 2.0])
CALIBRATION_LEVELS = np.linspace(0.0, 1.0, 41)  # the recalibration map is kept at these PIT levels
CALIBRATION_SEED = (
    7_919  # its patient split: never the validation's (forecast_validation.DEFAULT_SEED)
)
CALIBRATION_MIN_READINGS = 3  # two known readings and the next one (``held_out_split``)
CALIBRATION_MIN_HIDDEN = 300  # fewer held-out readings than this: no recalibration
# at most this many held-out readings (a seeded sample of the origins): the PIT quantiles are then
# known to about 0.01, and since every origin of a line counts, a 2,000-patient demo has 5,800
# (the recalibration took twice the prior's time; docs/validation.md)
CALIBRATION_MAX_HIDDEN = 3_000
CALIBRATION_CHUNK = 250  # patients per block of predictive draws (memory stays flat)
CALIBRATION_DRAWS = 200  # per held-out reading: its PIT value to 1/200 (thousands are pooled)
CALIBRATION_PRIOR_ROUNDS = 2  # each half's prior, started from the whole cohort's
MEASUREMENT_BLOCK = (
    256  # patients per block of simulated measurements (``TGIFit._measurement_blocks``)
)


@dataclass(frozen=True, eq=False)
class LesionSeries:
    """Patients' lesion diameters padded into arrays.

    ``t_days`` (n, m): days since the start of her (current) line of treatment (negative
    before it); ``mm`` (n, m): measured longest diameter; ``mask`` (n, m): which cells hold a
    measurement (each row's measurements first, in time order); ``person_id`` (n,): each row's
    key, a patient or, built ``from_long(..., by="series_id")``, one line of a patient;
    ``patient`` (n,): whose row it is when rows are lines (None: rows are patients).
    """

    person_id: np.ndarray
    t_days: np.ndarray
    mm: np.ndarray
    mask: np.ndarray
    patient: np.ndarray | None = None

    @property
    def patients(self) -> np.ndarray:
        """Whose series each row is (splits by patient keep all her lines on one side)."""
        return self.person_id if self.patient is None else self.patient

    @property
    def n(self) -> int:
        return len(self.person_id)

    @property
    def counts(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    @classmethod
    def from_long(cls, frame: pd.DataFrame, by: str = "person_id") -> LesionSeries:
        """From one row per measurement: person_id, t_days, mm (any order).

        ``by``: the column that keys a row ("series_id": one row per line, ``patient`` from
        person_id; ``forecast.data.clean_segments``)."""
        if frame.empty:
            empty = np.zeros((0, 1))
            return cls(np.zeros(0, dtype=np.int64), empty, empty.copy(), empty.astype(bool))
        frame = frame.sort_values([by, "t_days"], kind="stable")
        pid = frame[by].to_numpy(dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
        counts = np.diff(np.r_[starts, len(pid)])
        col = np.arange(len(pid)) - np.repeat(starts, counts)
        row = np.repeat(np.arange(len(starts)), counts)
        m = int(counts.max())
        t = np.zeros((len(starts), m))
        y = np.zeros((len(starts), m))
        mask = np.zeros((len(starts), m), dtype=bool)
        t[row, col] = frame["t_days"].to_numpy(dtype=float)
        y[row, col] = frame["mm"].to_numpy(dtype=float)
        mask[row, col] = True
        owner = None if by == "person_id" else frame["person_id"].to_numpy(dtype=np.int64)[starts]
        return cls(pid[starts], t, y, mask, owner)

    def subset(self, rows: np.ndarray) -> LesionSeries:
        owner = None if self.patient is None else self.patient[rows]
        return LesionSeries(
            self.person_id[rows], self.t_days[rows], self.mm[rows], self.mask[rows], owner
        )

    def first(self, k: np.ndarray | int) -> LesionSeries:
        """Each patient's first ``k`` measurements only (per patient, or one k for all)."""
        keep = self.mask & (
            np.arange(self.mask.shape[1])[None, :] < np.broadcast_to(k, (self.n,))[:, None]
        )
        return LesionSeries(self.person_id, self.t_days, self.mm, keep, self.patient)


def patient_halves(series: LesionSeries, seed: int) -> np.ndarray:
    """Each row's half (0 or 1) from a seeded shuffle of *patients*: all lines of a patient fall
    on the same side, so her progression reading (the end of one line and the baseline of the
    next) never sits on both. With one row per patient: ``permutation(n) % 2`` of the rows."""
    owners, row_owner = np.unique(series.patients, return_inverse=True)
    return (np.random.default_rng(seed).permutation(owners.size) % 2)[row_owner]


def tgi_curve(theta: np.ndarray, t_days: np.ndarray) -> np.ndarray:
    """f(t) for parameters (..., 3) on the log scale, broadcasting theta[..., None, :] against t (..., k)."""
    f0, d, g = (np.exp(theta[..., j])[..., None] for j in range(N_PARAMS))
    t = np.maximum(t_days, 0.0)
    f = f0 * (
        np.exp(-np.minimum(d * t, MAX_EXPONENT)) + np.exp(np.minimum(g * t, MAX_EXPONENT)) - 1.0
    )
    return np.minimum(f, CEILING_MM)


def _curve_and_jacobian(theta: np.ndarray, t_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f (n, m) and df/dtheta (n, m, 3) on the log scale."""
    f0, d, g = (np.exp(theta[:, j])[:, None] for j in range(N_PARAMS))
    t = np.maximum(t_days, 0.0)
    decay = np.exp(-np.minimum(d * t, MAX_EXPONENT))
    growth = np.exp(np.minimum(g * t, MAX_EXPONENT))
    f = f0 * (decay + growth - 1.0)
    jac = np.stack([f, -f0 * d * t * decay, f0 * g * t * growth], axis=-1)
    below = f < CEILING_MM  # at the ceiling the curve no longer moves with theta
    return np.minimum(f, CEILING_MM), jac * below[..., None]


@dataclass(frozen=True)
class NoiseModel:
    """Measurement noise of one diameter: sd = a + b * size (mm)."""

    a_mm: float = 1.0
    b: float = 0.05

    def sd(self, size_mm: np.ndarray) -> np.ndarray:
        return self.a_mm + self.b * np.maximum(size_mm, 0.0)


@dataclass(frozen=True, eq=False)
class BandCalibration:
    """Quantile recalibration of the predictive: the empirical quantiles of held-out PIT values.

    ``pit_quantiles[j]`` is the level of the raw predictive below which a share
    ``CALIBRATION_LEVELS[j]`` of held-out readings fell (0 and 1 at the ends, non-decreasing).
    """

    pit_quantiles: np.ndarray  # (len(CALIBRATION_LEVELS),)
    readings: int = 0

    def level(self, nominal: np.ndarray | float | tuple) -> np.ndarray:
        """The raw predictive level to read for a calibrated quantile ``nominal``."""
        return np.interp(np.asarray(nominal, dtype=float), CALIBRATION_LEVELS, self.pit_quantiles)

    def probability_below(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated P(reading < y) from the raw predictive's P(reading < y)."""
        return np.interp(raw, self.pit_quantiles, CALIBRATION_LEVELS)

    def as_dict(self) -> dict:
        return {
            "method": "quantile recalibration on held-out readings (Kuleshov et al. 2018)",
            "held_out_readings": self.readings,
            "levels_read_for_2.5_10_50_90_97.5": [
                round(float(v), 4) for v in self.level(QUANTILES)
            ],
        }


@dataclass(frozen=True, eq=False)
class TGIPrior:
    """Population distribution of theta = (log f0, log d, log g) and the noise model, from a cohort.

    ``calibration``: the recalibration of its bands (``calibrate_bands``), or None (raw bands).
    """

    mu: np.ndarray  # (3,)
    cov: np.ndarray  # (3, 3)
    noise: NoiseModel
    n_patients: int = 0
    calibration: BandCalibration | None = None

    @property
    def precision(self) -> np.ndarray:
        return np.linalg.inv(self.cov)

    def as_dict(self) -> dict:
        return {
            "mu_log_f0_d_g": [round(float(v), 5) for v in self.mu],
            "sd_log_f0_d_g": [round(float(v), 5) for v in np.sqrt(np.diag(self.cov))],
            "noise_sd_mm": {"a_mm": round(self.noise.a_mm, 4), "b": round(self.noise.b, 5)},
            "patients": self.n_patients,
            "band_calibration": None if self.calibration is None else self.calibration.as_dict(),
        }

    def to_state(self) -> dict:
        """Everything, at full precision, as JSON-ready values (``from_state`` reads it back)."""
        return {
            "mu": [float(v) for v in self.mu],
            "cov": np.asarray(self.cov, dtype=float).tolist(),
            "noise": [float(self.noise.a_mm), float(self.noise.b)],
            "patients": int(self.n_patients),
            "pit_quantiles": None
            if self.calibration is None
            else [float(v) for v in self.calibration.pit_quantiles],
            "calibration_readings": 0
            if self.calibration is None
            else int(self.calibration.readings),
        }

    @classmethod
    def from_state(cls, d: dict) -> TGIPrior:
        calibration = None
        if d.get("pit_quantiles") is not None:
            calibration = BandCalibration(
                np.asarray(d["pit_quantiles"], dtype=float), int(d["calibration_readings"])
            )
        return cls(
            np.asarray(d["mu"], dtype=float),
            np.asarray(d["cov"], dtype=float),
            NoiseModel(*d["noise"]),
            int(d["patients"]),
            calibration,
        )


def default_prior() -> TGIPrior:
    """The broad starting prior, used when a cohort is too small to estimate one."""
    return TGIPrior(START_MU.copy(), np.diag(START_SD**2), NoiseModel(), 0)


@dataclass(frozen=True, eq=False)
class TGIFit:
    """MAP estimates and Laplace posterior covariances, one per patient of a ``LesionSeries``."""

    series: LesionSeries
    prior: TGIPrior
    theta: np.ndarray  # (n, 3)
    cov: np.ndarray  # (n, 3, 3)

    def curve(self, t_days: np.ndarray) -> np.ndarray:
        """MAP curve at times (n, k) or (k,) shared by all."""
        t = np.broadcast_to(np.asarray(t_days, dtype=float), (self.series.n, np.shape(t_days)[-1]))
        return tgi_curve(self.theta, t)

    def draws(self, n_draws: int, seed: int) -> np.ndarray:
        """Parameter draws from each Laplace posterior: (draws, n, 3)."""
        rng = np.random.default_rng(seed)
        chol = np.linalg.cholesky(self.cov + 1e-12 * np.eye(N_PARAMS))
        z = rng.standard_normal((n_draws, self.series.n, N_PARAMS))
        return self.theta[None] + _lower_times(chol, z)

    def predictive(
        self,
        t_days: np.ndarray,
        n_draws: int = DEFAULT_DRAWS,
        seed: int = 0,
        quantiles=QUANTILES,
        calibrated: bool = True,
    ) -> np.ndarray:
        """Quantiles of a future measurement at times (n, k) or (k,): (len(quantiles), n, k).

        Parameter uncertainty (draws from the posterior) plus measurement noise, floored at 0 mm
        (a diameter is never negative). With ``calibrated`` and a prior that carries a
        ``BandCalibration``, each quantile is read at its recalibrated level.
        """
        y = self.sample_measurements(t_days, n_draws, seed)
        levels = np.asarray(quantiles, dtype=float)
        if calibrated and self.prior.calibration is not None:
            levels = self.prior.calibration.level(levels)
        return np.quantile(y, levels, axis=0)

    def exceedance(
        self, t_days: np.ndarray, threshold: np.ndarray, n_draws: int, seed: int
    ) -> np.ndarray:
        """P(a measurement at times (n, k) is >= ``threshold`` (n,)): (n, k), recalibrated if the prior says so."""
        threshold = np.asarray(threshold, dtype=float)
        t = np.broadcast_to(np.asarray(t_days, dtype=float), (self.series.n, np.shape(t_days)[-1]))
        share = np.empty(t.shape)  # of draws at or above the threshold (raw) or below (calibrated)
        for rows, y in self._measurement_blocks(t, n_draws, seed):
            if self.prior.calibration is None:
                share[rows] = (y >= threshold[rows][None, :, None]).mean(axis=0)
            else:
                share[rows] = (y < threshold[rows][None, :, None]).mean(axis=0)
        if self.prior.calibration is None:
            return share
        return 1.0 - self.prior.calibration.probability_below(share)

    def pit(
        self, t_days: np.ndarray, observed: np.ndarray, n_draws: int = DEFAULT_DRAWS, seed: int = 0
    ) -> np.ndarray:
        """Where each observed reading (n, k) falls in its raw predictive: P(draw < y) + P(draw = y) / 2."""
        t = np.broadcast_to(np.asarray(t_days, dtype=float), (self.series.n, np.shape(t_days)[-1]))
        observed = np.broadcast_to(observed, t.shape)
        out = np.empty(t.shape)
        for rows, y in self._measurement_blocks(t, n_draws, seed):
            seen = observed[rows][None]
            out[rows] = (y < seen).mean(axis=0) + 0.5 * (y == seen).mean(axis=0)
        return out

    def sample_measurements(self, t_days: np.ndarray, n_draws: int, seed: int) -> np.ndarray:
        """Simulated future measurements (draws, n, k): for event probabilities."""
        t = np.broadcast_to(np.asarray(t_days, dtype=float), (self.series.n, np.shape(t_days)[-1]))
        f = tgi_curve(self.draws(n_draws, seed), t[None])
        rng = np.random.default_rng(seed + 1)
        return np.maximum(f + rng.standard_normal(f.shape) * self.prior.noise.sd(f), 0.0)

    def _measurement_blocks(self, t: np.ndarray, n_draws: int, seed: int):
        """``sample_measurements`` at times ``t`` (n, k), ``MEASUREMENT_BLOCK`` patients at a time:
        (rows, their measurements (draws, rows, k)), for the callers that reduce over the draws.

        The random numbers are drawn whole first, in the same calls as ``sample_measurements``,
        and everything after them is element by element per draw and patient (the Cholesky
        factors are per patient), so each block holds exactly the numbers of the whole array.
        Why blocks: the whole array and its temporaries (400 draws x 20,000 patients, ten arrays
        of 64 MB) run through memory once per operation; a block's stay in the core's caches.
        """
        n = self.series.n
        chol = np.linalg.cholesky(self.cov + 1e-12 * np.eye(N_PARAMS))
        z = np.random.default_rng(seed).standard_normal((n_draws, n, N_PARAMS))
        noise = np.random.default_rng(seed + 1).standard_normal((n_draws, n, t.shape[-1]))
        for first in range(0, n, MEASUREMENT_BLOCK):
            rows = slice(first, min(first + MEASUREMENT_BLOCK, n))
            theta = self.theta[rows][None] + _lower_times(chol[rows], z[:, rows])
            f = tgi_curve(theta, t[rows][None])
            yield rows, np.maximum(f + noise[:, rows] * self.prior.noise.sd(f), 0.0)


def _lower_times(chol: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``einsum("nij,snj->sni", chol, z)`` for lower-triangular 3 x 3 ``chol``, in half the time.

    The sums are taken in the order NumPy's einsum kernel takes them on x86-64 (the products of
    the first and third column, then the second: a four-lane vector sum), so the draws are bit
    for bit those of the einsum it replaces (tests/analytics/forecast/test_tumour_fit.py).
    """
    z0, z1, z2 = z[..., 0], z[..., 1], z[..., 2]
    c = chol[None]
    out = np.empty(z.shape)
    out[..., 0] = c[..., 0, 0] * z0
    out[..., 1] = c[..., 1, 0] * z0 + c[..., 1, 1] * z1
    out[..., 2] = (c[..., 2, 0] * z0 + c[..., 2, 2] * z2) + c[..., 2, 1] * z1
    return out


def _objective(theta, t, y, w, mu, prec) -> np.ndarray:
    r = (y - tgi_curve(theta, t)) * w
    dev = theta - mu
    return np.sum(r * r, axis=1) + np.einsum("ni,ij,nj->n", dev, prec, dev)


def _initial_theta(series: LesionSeries, mu: np.ndarray) -> np.ndarray:
    """Start at the prior mean, with f0 at the first measurement (the size best known)."""
    theta = np.tile(mu, (series.n, 1))
    first = np.where(series.mask[:, 0], series.mm[:, 0], np.exp(mu[0]))
    theta[:, 0] = np.log(np.maximum(first, 1.0))
    return theta


def fit_map(
    series: LesionSeries,
    prior: TGIPrior,
    iterations: int = LM_ITERATIONS,
    start: np.ndarray | None = None,
) -> TGIFit:
    """MAP fit of every patient at once (damped Gauss-Newton), with Laplace covariances.

    Weights: 1 / sd(f) from a first pass on the measured sizes, then again from the fitted
    curve (so a large measured value is not down-weighted for being large by chance).
    ``start``: initial theta (n, 3), e.g. the previous round's estimates. Iteration stops
    early once every patient's objective has stopped improving.

    How it stays fast (issue 23: a million-patient refresh fits ~150,000 series): rows are
    padded only to their own width class (``_width_classes``), not to the longest series of
    the batch, the curve at the trial step is kept for the next iteration instead of being
    computed twice, and a patient whose iteration has reached a fixed point leaves the
    arrays (``_Rows.step``). Every patient's numbers are bit for bit those of fitting the
    whole batch padded to one width (tests/analytics/forecast/test_tumour_fit.py compares
    with that reference): the batch still stops at the same iteration, since a frozen
    patient counts as settled.
    """
    if series.n == 0:
        return TGIFit(series, prior, np.zeros((0, N_PARAMS)), np.zeros((0, N_PARAMS, N_PARAMS)))
    mu, prec = prior.mu, prior.precision
    theta = _initial_theta(series, mu) if start is None else np.array(start, dtype=float)
    blocks = [
        (rows, _Rows(series, rows, width, theta[rows], mu, prec, prior.noise))
        for rows, width in _width_classes(series.counts, series.mask.shape[1])
    ]
    for weight_pass in range(2):
        for _, block in blocks:
            block.start_pass(weight_pass)
        for _ in range(iterations):
            settled = [block.step() for _, block in blocks]
            if all(settled):
                break
    out = np.empty((series.n, N_PARAMS))
    cov = np.empty((series.n, N_PARAMS, N_PARAMS))
    for rows, block in blocks:
        _, jac = _curve_and_jacobian(block.theta, block.t_days)
        jw = jac * block.w[..., None]
        out[rows] = block.theta
        cov[rows] = np.linalg.inv(np.matmul(jw.transpose(0, 2, 1), jw) + prec)
    return TGIFit(series, prior, out, cov)


PAD_QUANTUM = 8  # width classes are multiples of this (see _width_classes)
_LAMBDA_RANGE = (1e-9, 1e9)  # Levenberg-Marquardt damping, clipped to this range


def _width_classes(counts: np.ndarray, width: int) -> list[tuple[np.ndarray, int]]:
    """(rows, width) per class: each row padded to the smallest multiple of ``PAD_QUANTUM`` (or
    the full ``width``) that holds its readings.

    Why multiples of 8: NumPy sums a row of 8 or more cells in eight interleaved partial sums,
    so a row of readings followed by zeros sums to the same bits at any padded width that is a
    multiple of 8 as at the batch's full width; at other widths the order of additions, and the
    last bits, change (measured: a width of exactly the row's count moved 975 of 4,712 fits by
    up to 2e-7). OpenBLAS's 3 x 3 products over the cells behave the same way (tested).
    Most series have 2-6 readings and a batch's longest has 40 or more, so this is most of the
    gain.
    """
    ladder = np.array(sorted({*range(PAD_QUANTUM, width, PAD_QUANTUM), width}))
    which = np.searchsorted(ladder, np.maximum(counts, 1))
    return [
        (rows, int(ladder[k]))
        for k in range(ladder.size)
        if (rows := np.flatnonzero(which == k)).size
    ]


class _Rows:
    """The Levenberg-Marquardt state of one width class of ``fit_map``: exactly the arithmetic of
    one iteration over a padded batch, row by row, with the trial curve kept for the next step.

    The normal equations (``J'WJ + P`` and ``J'Wr``) of a row are kept until its parameters move:
    a rejected step leaves them as they were, and only the damping changes, so the next iteration
    solves the same system with a larger damping. Most rows spend their last iterations rejecting
    steps until the damping reaches its ceiling (``step``), so about half the Jacobians and their
    products were recomputed from unchanged inputs. Each row's products are computed per row
    (stacked 3 x 3 products and solves), so computing them for a subset gives the same bits."""

    def __init__(self, series, rows, width, theta, mu, prec, noise):
        self.t_days = series.t_days[rows, :width]
        self.y = series.mm[rows, :width]
        self.mask = series.mask[rows, :width]
        self.theta = np.array(theta, dtype=float)
        self.mu, self.prec, self.noise = mu, prec, noise

    @staticmethod
    def _curve_parts(theta: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
        """f0, d, g (n, 1), decay, growth, f before the ceiling (n, m): ``_curve_and_jacobian``'s terms."""
        f0, d, g = (np.exp(theta[:, j])[:, None] for j in range(N_PARAMS))
        decay = np.exp(-np.minimum(d * t, MAX_EXPONENT))
        growth = np.exp(np.minimum(g * t, MAX_EXPONENT))
        return f0, d, g, decay, growth, f0 * (decay + growth - 1.0)

    def _normal_equations(
        self, parts: tuple[np.ndarray, ...], t: np.ndarray, y: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(J'WJ + P, J'Wr) per row, at the curve ``parts`` (rows of ``t``, ``y``, ``w``)."""
        f0, d, g, decay, growth, f_raw = parts
        jac = np.stack([f_raw, -f0 * d * t * decay, f0 * g * t * growth], axis=-1)
        below = f_raw < CEILING_MM  # at the ceiling the curve no longer moves with theta
        f, jac = np.minimum(f_raw, CEILING_MM), jac * below[..., None]
        r = (y - f) * w
        jw = jac * w[..., None]
        hess = np.matmul(jw.transpose(0, 2, 1), jw) + self.prec
        return hess, np.matmul(jw.transpose(0, 2, 1), r[..., None])[..., 0]

    def start_pass(self, weight_pass: int) -> None:
        size = self.y if weight_pass == 0 else tgi_curve(self.theta, self.t_days)
        self.w = np.where(self.mask, 1.0 / self.noise.sd(size), 0.0)
        self.lam = np.full(len(self.theta), 1e-3)
        self.obj = _objective(self.theta, self.t_days, self.y, self.w, self.mu, self.prec)
        self.live = np.arange(len(self.theta))  # rows still iterating
        self.t = np.maximum(self.t_days, 0.0)
        self.live_y, self.live_w = self.y, self.w
        self.parts = self._curve_parts(self.theta, self.t)  # at each live row's theta
        # the live rows' normal equations, at their current theta
        self.hess, self.jtr = self._normal_equations(self.parts, self.t, self.y, self.w)

    def step(self) -> bool:
        """One iteration of the live rows; True when every row is settled (``fit_map``'s test).

        A row whose trial step failed with the damping already at its ceiling is at a fixed
        point: its next iteration would repeat this one exactly, so it leaves the arrays."""
        live = self.live
        if live.size == 0:
            return True
        theta, lam, obj = self.theta[live], self.lam[live], self.obj[live]
        t, y, w, mu, prec = self.t, self.live_y, self.live_w, self.mu, self.prec
        hess = self.hess
        grad = self.jtr - (theta - mu) @ prec
        damped = hess + lam[:, None, None] * (hess * np.eye(N_PARAMS))
        step = np.linalg.solve(damped, grad[..., None])[..., 0]
        step = np.clip(step, -2.0, 2.0)  # no leap across the log scale
        new = theta + step
        trial = self._curve_parts(new, t)
        r_new = (y - np.minimum(trial[5], CEILING_MM)) * w
        dev = new - mu
        new_obj = np.sum(r_new * r_new, axis=1) + np.einsum("ni,ij,nj->n", dev, prec, dev)
        better = new_obj < obj
        gain = np.where(better, obj - new_obj, 0.0)
        obj = np.where(better, new_obj, obj)
        new_lam = np.clip(np.where(better, lam * 0.3, lam * 10.0), *_LAMBDA_RANGE)
        settled = (better & (gain <= 1e-9 * (1.0 + obj))) | (~better & (new_lam >= 1e4))
        self.theta[live] = np.where(better[:, None], new, theta)
        self.obj[live], self.lam[live] = obj, new_lam
        self.parts = tuple(
            np.where(better[:, None], mine, old)
            for mine, old in zip(trial, self.parts, strict=True)
        )
        moved = np.flatnonzero(better)
        if moved.size:  # only the rows whose theta moved need their normal equations again
            parts = tuple(part[moved] for part in self.parts)
            self.hess[moved], self.jtr[moved] = self._normal_equations(
                parts, t[moved], y[moved], w[moved]
            )
        frozen = ~better & (lam == _LAMBDA_RANGE[1])
        if frozen.any():
            keep = ~frozen
            self.live = live[keep]
            self.parts = tuple(part[keep] for part in self.parts)
            self.t, self.live_y, self.live_w = t[keep], y[keep], w[keep]
            self.hess, self.jtr = self.hess[keep], self.jtr[keep]
        return bool(settled.all())


def _estimate_noise(fit: TGIFit, min_points: int = 6) -> NoiseModel | None:
    """sd = a + b f from residuals of patients with many points (their fit is mostly their own data).

    Squared residuals are inflated by n / (n - 3) for the three fitted parameters, then
    a and b are chosen by least squares of |r| * sqrt(pi / 2) (the mean absolute value of a
    normal variable times that factor is its sd) on the fitted size.
    """
    s = fit.series
    rows = s.counts >= min_points
    if rows.sum() < 20:
        return None
    f = fit.curve(s.t_days)[rows]
    mask = s.mask[rows]
    n = s.counts[rows][:, None].astype(float)
    r = np.abs(s.mm[rows] - f) * np.sqrt(n / (n - N_PARAMS))
    x, target = f[mask], r[mask] * np.sqrt(np.pi / 2)
    design = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, target, rcond=None)
    return NoiseModel(float(max(a, 0.2)), float(np.clip(b, 0.0, 0.5)))


def fit_prior(series: LesionSeries, rounds: int = 6, start: TGIPrior | None = None) -> TGIPrior:
    """Empirical-Bayes population prior from a cohort's series (Laplace-EM on the log parameters).

    Each round fits every patient's MAP under the current prior, then sets mu to the mean
    of the estimates and Sigma to their covariance plus the mean posterior covariance (the
    Laplace version of the EM update for a normal random-effects model), and re-estimates
    the noise model. Patients with a single measurement carry almost no information on the
    rates and are left out of the update (they would only echo the prior back).
    """
    prior = start or default_prior()
    informative = series.subset(np.flatnonzero(series.counts >= 2))
    if informative.n < 20:
        return prior
    theta = None
    for _ in range(rounds):
        fit = fit_map(informative, prior, start=theta)
        theta = fit.theta
        mu = fit.theta.mean(axis=0)
        dev = fit.theta - mu
        cov = dev.T @ dev / informative.n + fit.cov.mean(axis=0) + 1e-6 * np.eye(N_PARAMS)
        noise = _estimate_noise(fit) or prior.noise
        prior = TGIPrior(mu, cov, noise, informative.n)
    return prior


def held_out_split(
    series: LesionSeries, min_readings: int = CALIBRATION_MIN_READINGS
) -> tuple[np.ndarray, np.ndarray]:
    """For forecasting a later reading from earlier ones: (rows, readings each keeps), one pair per
    forecast origin, so a row repeats once per origin; the reading hidden is the next one
    (``held_out_mask``).

    Every series with at least ``min_readings`` readings is forecast from each origin j = 2 ..
    n - 1 (her first j readings known) to her reading j + 1. Why the next reading only, and not
    the first half against the rest: a line of therapy ends at progression, so a reading two or
    more scans ahead exists only if the line did not progress before it, and the number of
    readings a line will have says how long it lasted. Keeping "the first half of n" let the
    future choose the readings scored, all from lines that had not progressed yet: readings fell
    below the band three times as often as above it, and the recalibration learnt that bias.
    The next reading after an origin is taken whether or not it shows progression.
    The validation and the recalibration use the same design.
    """
    counts = series.counts
    origins = np.maximum(counts - 2, 0) * (counts >= min_readings)
    rows = np.repeat(np.arange(series.n), origins)
    first = np.repeat(np.cumsum(origins) - origins, origins)
    return rows, 2 + np.arange(rows.size) - first


def held_out_mask(series: LesionSeries, keep: np.ndarray) -> np.ndarray:
    """The hidden cell of each row of ``series.subset(rows)`` after ``held_out_split``: reading ``keep``."""
    return series.mask & (np.arange(series.mask.shape[1])[None, :] == keep[:, None])


def calibrate_bands(
    series: LesionSeries,
    start: TGIPrior | None = None,
    seed: int = CALIBRATION_SEED,
    threads: int = 1,
) -> BandCalibration | None:
    """The recalibration of a cohort's bands, from its own held-out readings; None if too few.

    Patients are split in two by a seeded shuffle (``patient_halves``); each half's later readings are forecast from
    their early ones under a prior estimated on the other half (``fit_prior``: no patient's
    hidden readings shape her own prior) at each origin of ``held_out_split``, and the PIT value of
    every hidden reading is kept.
    The map is the empirical quantile function of those PIT values at ``CALIBRATION_LEVELS``.
    ``start``: the whole cohort's prior, if already estimated; each half's prior then starts
    from it and needs ``CALIBRATION_PRIOR_ROUNDS`` rounds instead of six (a third of the time).
    ``threads``: 2 computes the two halves at once (NumPy releases the GIL); the same numbers.
    """
    half = patient_halves(series, seed)
    rows, keep = held_out_split(series)
    if rows.size > CALIBRATION_MAX_HIDDEN:
        rng = np.random.default_rng(seed + 1)
        pick = np.sort(rng.choice(rows.size, CALIBRATION_MAX_HIDDEN, replace=False))
        rows, keep = rows[pick], keep[pick]

    def fold_pits(fold: int) -> list[np.ndarray]:
        train = series.subset(np.flatnonzero(half != fold))
        if train.n == 0:
            return []
        prior = (
            fit_prior(train, rounds=CALIBRATION_PRIOR_ROUNDS, start=start)
            if start
            else fit_prior(train)
        )
        mine = np.flatnonzero(half[rows] == fold)
        sub, k = series.subset(rows[mine]), keep[mine]
        fit = fit_map(sub.first(k), prior)
        hidden = held_out_mask(sub, k)
        t = np.where(hidden, sub.t_days, 0.0)
        out = []
        for first in range(0, sub.n, CALIBRATION_CHUNK):
            part = np.arange(first, min(first + CALIBRATION_CHUNK, sub.n))
            chunk = TGIFit(fit.series.subset(part), prior, fit.theta[part], fit.cov[part])
            pit = chunk.pit(t[part], sub.mm[part], CALIBRATION_DRAWS, seed + fold + first)
            out.append(pit[hidden[part]])
        return out

    if threads > 1:
        with ThreadPoolExecutor(max_workers=2) as pool:
            per_fold = list(pool.map(fold_pits, (0, 1)))
    else:
        per_fold = [fold_pits(fold) for fold in (0, 1)]
    pits = [p for fold in per_fold for p in fold]
    hidden_pits = np.concatenate(pits) if pits else np.zeros(0)
    if hidden_pits.size < CALIBRATION_MIN_HIDDEN:
        return None
    q = np.quantile(hidden_pits, CALIBRATION_LEVELS)
    q[0], q[-1] = 0.0, 1.0
    return BandCalibration(np.maximum.accumulate(q), int(hidden_pits.size))


# --- RECIST on a series ---------------------------------------------------------------------

PROGRESSION_RELATIVE = 0.20  # RECIST 1.1: >= 20 % over the nadir ...
PROGRESSION_ABSOLUTE_MM = 5.0  # ... and >= 5 mm absolute
RESPONSE_RELATIVE = 0.30  # partial response: >= 30 % below baseline


def progression_threshold(nadir_mm: np.ndarray | float) -> np.ndarray:
    """The size at which a lesion with this nadir meets RECIST 1.1 progression."""
    nadir = np.asarray(nadir_mm, dtype=float)
    return np.maximum((1 + PROGRESSION_RELATIVE) * nadir, nadir + PROGRESSION_ABSOLUTE_MM)


def recist_marks(mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per measurement of one series in time order: (meets progression, meets partial response).

    Progression compares with the nadir of the *earlier* measurements; response with the first.
    """
    mm = np.asarray(mm, dtype=float)
    if mm.size == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    nadir_before = np.minimum.accumulate(np.r_[np.inf, mm[:-1]])
    progression = mm >= progression_threshold(nadir_before)
    response = mm <= (1 - RESPONSE_RELATIVE) * mm[0]
    progression[0] = response[0] = False
    return progression, response
