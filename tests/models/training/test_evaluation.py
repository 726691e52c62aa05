"""The bootstrap's AUC is scikit-learn's ``roc_auc_score``, computed without its per-call overhead."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_auc_score

from models.training.evaluation import auc_for, binary_auc, bootstrap


@pytest.mark.parametrize("ties", ["none", "coarse", "float32"])
def test_binary_auc_equals_roc_auc_score_with_and_without_ties(ties):
    rng = np.random.default_rng([2026, len(ties)])
    for _ in range(300):
        n = int(rng.integers(2, 300))
        truth = rng.random(n) < rng.uniform(0.05, 0.95)
        if truth.all() or not truth.any():
            continue
        scores = rng.random(n)
        if ties == "coarse":
            scores = np.round(scores, 1)  # many ties: each counts one half
        elif ties == "float32":
            scores = scores.astype(np.float32)
        assert binary_auc(truth, scores) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)


def test_binary_auc_is_nan_for_one_class_as_roc_auc_score_is():
    for truth in (np.zeros(5, bool), np.ones(5, bool)):
        assert np.isnan(binary_auc(truth, np.arange(5.0)))
        with pytest.warns(UndefinedMetricWarning):
            assert np.isnan(roc_auc_score(truth, np.arange(5.0)))


def test_the_bootstrap_interval_is_the_one_roc_auc_score_gives():
    """Same resamples, one-class resamples skipped by both: the interval is unchanged to the digit."""
    rng = np.random.default_rng(7)
    probabilities = rng.dirichlet(np.ones(3), 60)
    labels = rng.integers(0, 3, 60)
    labels[labels == 1] = 0
    labels[:2] = 1  # two positives in 60: about one resample in eight has none, skipped by both

    def reference(p: np.ndarray, y: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)  # the one-class resamples
            return roc_auc_score(y == 1, p[:, 1])

    fast = bootstrap(auc_for(1), probabilities, labels, n_boot=300, seed=3).as_dict()
    assert fast == bootstrap(reference, probabilities, labels, n_boot=300, seed=3).as_dict()
