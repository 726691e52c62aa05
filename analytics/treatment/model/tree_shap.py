"""Exact interventional SHAP of shallow trees (depth <= 2) as lookup tables: microseconds per patient.

Why: shap's interventional TreeSHAP walks every tree once per reference
patient for every explained patient (cost ~ patients x references x trees),
about 3 ms per patient here, so 10,000 patients took half a minute. For
trees of depth at most two a tree's output depends on an input only through
which side of at most three thresholds it falls, so a tree has at most 2**3
"patterns" of an input. For every tree and pattern, the Shapley values of the
game v(S) = mean over references z of f(x_S, z_rest) are computed once, when
the explainer is built; explaining a patient is then one table lookup per tree.

The quantity is exactly shap's ``TreeExplainer(feature_perturbation=
"interventional")`` with the same references: Shapley values are linear in
the game, so averaging the game over references first changes nothing.
Inputs that are fixed for the explanation (the option indicators and the
horizon, equal in the patient and in every reference) never change the game
and get zero attribution, as in ``analytics.treatment.model.shap_values``. A tree's nodes
that split on the same feature count as one player; padding nodes added for
shallower trees (``StackedForest``) never change a path, so they are null
players and change no one's value. Efficiency holds per tree, hence
base value + contributions = prediction (to float rounding).
"""

from __future__ import annotations

from math import factorial

import numpy as np

from analytics.treatment.model.forest import StackedForest

MAX_DEPTH = 2


class UnsupportedTreesError(ValueError):
    """Trees deeper than ``MAX_DEPTH``: use shap's TreeExplainer instead."""


def _left(values: np.ndarray, threshold: np.ndarray, default_left: np.ndarray) -> np.ndarray:
    """xgboost's rule: left when x < threshold (float32), missing values as ``default_left`` says."""
    values = np.asarray(values, dtype=np.float32)
    return np.where(np.isnan(values), default_left, values < threshold)


class ShallowTreeShap:
    """SHAP tables of one xgboost booster for inputs ``[covariates (d), fixed tail]``.

    ``fixed_tail``: the values of the design columns after the ``d`` covariates
    (option indicators, horizon), the same for the patient and every reference;
    ``background``: reference patients' covariates, (references, d).
    """

    def __init__(
        self, booster, n_covariates: int, fixed_tail: np.ndarray, background: np.ndarray
    ) -> None:
        forest = StackedForest.from_boosters([booster])
        if forest.depth > MAX_DEPTH:
            raise UnsupportedTreesError(
                f"trees of depth {forest.depth} (tables need depth <= {MAX_DEPTH})"
            )
        d = int(n_covariates)
        feature, threshold, default_left, leaf = (
            forest.feature,
            forest.threshold,
            forest.default_left,
            forest.leaf,
        )
        n_trees, n_nodes = feature.shape
        self.n_covariates, self.depth = d, forest.depth
        self.feature, self.threshold, self.default_left = feature, threshold, default_left
        player = feature < d  # (T, N): splits on a covariate
        tail = np.asarray(fixed_tail, dtype=np.float64)
        fixed_left = _left(tail[np.clip(feature - d, 0, len(tail) - 1)], threshold, default_left)
        # one player per distinct covariate of a tree: its slot is the first node splitting on it
        # (at depth <= 2 counting such nodes apart would give the same sums, by linearity over
        # root-to-leaf paths of at most two nodes; merged, the tables are right at any depth)
        slot = np.tile(np.arange(n_nodes), (n_trees, 1))
        for n in range(n_nodes):
            for m in range(n):
                same = (
                    player[:, n]
                    & player[:, m]
                    & (feature[:, m] == feature[:, n])
                    & (slot[:, n] == n)
                )
                slot[same, n] = m
        players = np.zeros(n_trees, dtype=np.int64)  # bitmask of player slots
        for n in range(n_nodes):
            players |= np.where(player[:, n], 1 << slot[:, n], 0)
        self.player, self.slot = player, slot

        bg = np.asarray(background, dtype=np.float64)
        bg_left = _left(bg[:, np.clip(feature, 0, d - 1)], threshold, default_left)  # (B, T, N)
        bg_left = np.where(player, bg_left, fixed_left)
        patterns = 1 << n_nodes
        x_left = ((np.arange(patterns)[:, None] >> np.arange(n_nodes)) & 1).astype(bool)  # (P, N)
        trees = np.arange(n_trees)
        # game[S, p, t]: mean over references of the tree's output, players in S taken from pattern p
        game = np.empty((patterns, patterns, n_trees))
        for s in range(patterns):
            from_x = player & (((s >> slot) & 1) == 1)  # (T, N)
            for p in range(patterns):
                left = np.where(from_x, x_left[p], bg_left)  # (B, T, N)
                pos = np.zeros(left.shape[:2], dtype=np.int64)
                for _ in range(forest.depth):
                    pos = 2 * pos + 1 + ~np.take_along_axis(left, pos[..., None], axis=2)[..., 0]
                game[s, p] = leaf[trees, pos - n_nodes].mean(axis=0)
        count = np.array([bin(s).count("1") for s in range(patterns)])
        per_tree = count[players]  # players per tree
        table = np.zeros((n_trees, patterns, n_nodes))  # (T, pattern, slot)
        for j in range(n_nodes):
            has_j = ((players >> j) & 1) == 1
            for s in range(patterns):
                ok = has_j & ((s & ~players) == 0) & (((s >> j) & 1) == 0)
                if not ok.any():
                    continue
                k = count[s]
                weight = np.where(
                    ok,
                    [
                        factorial(k) * factorial(max(mm - k - 1, 0)) / factorial(mm)
                        for mm in per_tree
                    ],
                    0.0,
                )
                table[:, :, j] += weight[:, None] * (game[s | (1 << j)] - game[s]).T
        self.table = table
        self.expected_value = float(game[0, 0].sum() + forest.base_score[0])
        # where each slot's value goes: the covariate of the slot's node (null slots hold zeros)
        self.to_feature = np.zeros((n_trees * n_nodes, d))
        self.to_feature[np.arange(n_trees * n_nodes), np.clip(feature, 0, d - 1).ravel()] = 1.0

    def shap_values(self, covariates: np.ndarray) -> np.ndarray:
        """Contributions of the covariates, (patients, d); their sum + ``expected_value`` is the output."""
        x = np.asarray(covariates, dtype=np.float64)
        n_trees, n_nodes = self.feature.shape
        left = _left(
            x[:, np.clip(self.feature, 0, self.n_covariates - 1)], self.threshold, self.default_left
        )
        pattern = (left.astype(np.int64) << np.arange(n_nodes)).sum(axis=2)  # (n, T)
        values = self.table[np.arange(n_trees), pattern]  # (n, T, slot)
        return values.reshape(len(x), n_trees * n_nodes) @ self.to_feature
