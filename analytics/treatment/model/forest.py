"""Many boosted-tree regressors evaluated together in NumPy: one call for all bootstrap refits.

Why: the outcome model's uncertainty comes from 25 bootstrap refits, and
asking xgboost for one patient's prediction costs about 0.5-1 ms of call
overhead per model, so a single recommendation spent ~25 ms in overhead. Here
the trees of every refit are stacked into arrays and evaluated at once
(about 1-2 ms for one patient). For large batches xgboost's own multi-threaded
predictor stays faster, so ``OutcomeModel`` uses this only for small batches.

Exactness: xgboost sends a row to the left child when ``x < split_condition``
(both float32) and a missing value the way ``default_left`` says; the same
rule is applied here to the same float32 numbers, so every row reaches the
same leaf. Leaf values are summed in float64 (xgboost: float32), so outputs
agree to about 1e-6. ``from_boosters`` checks the agreement on rows it is
given and refuses (``ForestMismatchError``) if a future xgboost stores its
models differently, so a silent disagreement cannot reach a patient.

Only plain numerical splits of single-output regression trees are supported
(what ``XGBPseudoLearner`` fits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# Largest rows x trees x nodes evaluated in one block (bounds the temporary arrays to ~40 MB).
BLOCK_ELEMENTS = 4_000_000


class ForestMismatchError(RuntimeError):
    """The stacked forest does not reproduce xgboost's predictions (unsupported model format)."""


def _base_score(learner: dict) -> float:
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
    values = [float(v) for v in raw.split(",") if v.strip()]
    if len(values) != 1:
        raise ForestMismatchError(f"expected one base score, found {len(values)}")
    return values[0]


@dataclass(frozen=True, eq=False)
class StackedForest:
    """Trees of ``n_models`` regressors as complete binary trees of one depth.

    Node arrays are (trees, 2**depth - 1) in heap order (children of node p at
    2p+1, 2p+2); ``leaf`` is (trees, 2**depth). A leaf shallower than ``depth``
    is padded with pass-through splits whose every descendant leaf holds its value.
    """

    feature: np.ndarray  # int64, split feature index
    threshold: np.ndarray  # float32, go right when x >= threshold
    default_left: np.ndarray  # bool, where a missing value goes
    leaf: np.ndarray  # float64 leaf values
    model_of_tree: np.ndarray  # int64 (trees,), which regressor each tree belongs to
    base_score: np.ndarray  # float64 (n_models,)
    depth: int

    @property
    def n_models(self) -> int:
        return len(self.base_score)

    @classmethod
    def from_boosters(
        cls, boosters, check_rows: np.ndarray | None = None, tolerance: float = 1e-5
    ) -> StackedForest:
        """Stack xgboost Boosters; with ``check_rows``, verify against xgboost's own predictions."""
        parsed, bases = [], []
        for booster in boosters:
            learner = json.loads(bytes(booster.save_raw("json")))["learner"]
            model = learner["gradient_booster"]["model"]
            if learner["learner_model_param"].get("num_target", "1") not in ("1", "0"):
                raise ForestMismatchError("multi-output trees are not supported")
            bases.append(_base_score(learner))
            parsed.append(model["trees"])
        depth = max(_tree_depth(t) for trees in parsed for t in trees)
        depth = max(depth, 1)
        n_trees = sum(len(trees) for trees in parsed)
        n_nodes, n_leaves = 2**depth - 1, 2**depth
        feature = np.zeros((n_trees, n_nodes), dtype=np.int64)
        threshold = np.full((n_trees, n_nodes), np.inf, dtype=np.float32)
        default_left = np.ones((n_trees, n_nodes), dtype=bool)
        leaf = np.zeros((n_trees, n_leaves), dtype=np.float64)
        model_of_tree = np.empty(n_trees, dtype=np.int64)
        t = 0
        for m, trees in enumerate(parsed):
            for tree in trees:
                _fill(tree, depth, feature[t], threshold[t], default_left[t], leaf[t])
                model_of_tree[t] = m
                t += 1
        forest = cls(
            feature, threshold, default_left, leaf, model_of_tree, np.asarray(bases), depth
        )
        if check_rows is not None:
            rows = np.ascontiguousarray(check_rows, dtype=np.float32)
            expected = np.stack([b.inplace_predict(rows) for b in boosters], axis=1)
            err = float(np.max(np.abs(forest.predict(rows) - expected), initial=0.0))
            if not err <= tolerance:
                raise ForestMismatchError(
                    f"stacked trees differ from xgboost by {err:.3g} (> {tolerance})"
                )
        return forest

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Raw output of every regressor for every row: (rows, n_models)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        n_trees, n_nodes = self.feature.shape
        block = max(1, BLOCK_ELEMENTS // (n_trees * n_nodes))
        # trees of one model are contiguous: sum each model's run of trees
        starts = np.flatnonzero(np.r_[True, self.model_of_tree[1:] != self.model_of_tree[:-1]])
        out = np.empty((len(X), self.n_models))
        flat_feature = self.feature.ravel()
        leaf = self.leaf.ravel()
        leaf_offset = np.arange(n_trees) * (n_nodes + 1) - n_nodes
        for start in range(0, len(X), block):
            x = X[start : start + block][:, flat_feature].reshape(-1, n_trees, n_nodes)
            right = x >= self.threshold
            missing = np.isnan(x)
            if missing.any():
                right = np.where(missing, ~self.default_left, right)
            right = right.reshape(-1)
            row_offset = np.arange(x.shape[0] * n_trees).reshape(x.shape[:2]) * n_nodes
            pos = np.zeros(x.shape[:2], dtype=np.int64)
            for _ in range(self.depth):
                pos = 2 * pos + 1 + right[row_offset + pos]
            values = leaf[pos + leaf_offset]
            out[start : start + block] = np.add.reduceat(values, starts, axis=1)
        return out + self.base_score


def _tree_depth(tree: dict) -> int:
    left, right = tree["left_children"], tree["right_children"]

    def depth(node: int) -> int:
        if left[node] == -1:
            return 0
        return 1 + max(depth(left[node]), depth(right[node]))

    return depth(0)


def _fill(tree: dict, depth: int, feature, threshold, default_left, leaf) -> None:
    """Write one xgboost tree (JSON arrays) into complete-tree slots of ``depth``."""
    left, right = tree["left_children"], tree["right_children"]
    if any(t != 0 for t in tree.get("split_type", [])):
        raise ForestMismatchError("categorical splits are not supported")
    n_nodes = 2**depth - 1

    def walk(node: int, pos: int, level: int) -> None:
        if left[node] == -1:  # a leaf: every slot below it holds its value
            first, count = pos, 1
            for _ in range(depth - level):
                first, count = 2 * first + 1, 2 * count
            leaf[first - n_nodes : first - n_nodes + count] = tree["split_conditions"][node]
            return
        feature[pos] = tree["split_indices"][node]
        threshold[pos] = np.float32(tree["split_conditions"][node])
        default_left[pos] = bool(tree["default_left"][node])
        walk(left[node], 2 * pos + 1, level + 1)
        walk(right[node], 2 * pos + 2, level + 1)

    walk(0, 0, 0)
