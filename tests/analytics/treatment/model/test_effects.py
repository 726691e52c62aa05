"""The doubly robust honest forest: its tree walk equals scikit-learn's, its intervals cover a known effect."""

from __future__ import annotations

import numpy as np

from analytics.treatment.model.effects import DoublyRobustForest, doubly_robust_scores


def _data(n: int, seed: int, effect: bool = True):
    """Outcome = baseline + tau(x) * treated + noise; tau = 0.15 when x0 > 0, else 0 (or 0 everywhere)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    e = 1 / (1 + np.exp(-0.5 * X[:, 1]))  # confounded by x1
    a = (rng.random(n) < e).astype(int)
    base = 0.6 + 0.1 * X[:, 1]
    tau = np.where(X[:, 0] > 0, 0.15, 0.0) if effect else np.zeros(n)
    y = base + tau * a + rng.normal(0, 0.4, n)
    mu = np.stack([base, base + tau], axis=1)
    return X, a, y, mu, np.stack([1 - e, e], axis=1), tau


def test_scores_are_the_aipw_formula():
    y, a = np.array([1.0, 0.0]), np.array([1, 0])
    mu = np.array([[0.5, 0.7], [0.4, 0.6]])
    e = np.array([[0.5, 0.5], [0.8, 0.2]])
    expected = np.array([[0.5, 0.7 + (1.0 - 0.7) / 0.5], [0.4 + (0.0 - 0.4) / 0.8, 0.6]])
    np.testing.assert_allclose(doubly_robust_scores(y, a, mu, e), expected)


def test_intervals_cover_a_known_effect_and_rarely_call_a_null_clear():
    X, a, y, mu, e, tau = _data(3000, 0)
    forest = DoublyRobustForest(seed=1).fit(X, a, y, mu, e)
    est, lo, hi = forest.interval(X, np.ones(len(X), int), np.zeros(len(X), int), 0.90)
    covered = ((lo <= tau) & (tau <= hi)).mean()
    assert covered >= 0.85
    assert est[X[:, 0] > 0.5].mean() > est[X[:, 0] < -0.5].mean() + 0.05  # it finds the effect
    X, a, y, mu, e, _ = _data(3000, 1, effect=False)
    forest = DoublyRobustForest(seed=1).fit(X, a, y, mu, e)
    _, lo, _ = forest.interval(X, np.ones(len(X), int), np.zeros(len(X), int), 0.90)
    assert (lo > 0).mean() <= 0.05


def test_the_tree_walk_and_the_arrays_round_trip():
    X, a, y, mu, e, _ = _data(800, 2)
    forest = DoublyRobustForest(groups=4, seed=3).fit(X, a, y, mu, e)
    again = DoublyRobustForest.from_arrays(forest.to_arrays())
    one, zero = np.ones(len(X), int), np.zeros(len(X), int)
    np.testing.assert_array_equal(forest.contrast(X, one, zero)[0], again.contrast(X, one, zero)[0])
    # the walk lands in leaves (no children), and the contrast is antisymmetric
    leaves = forest._leaves(X)
    assert (forest.left_[np.arange(leaves.shape[0])[:, None], leaves] == -1).all()
    np.testing.assert_allclose(forest.contrast(X, one, zero)[0], -forest.contrast(X, zero, one)[0])


def test_the_first_tree_is_the_one_scikit_learn_grows_with_its_input_checks():
    """The forest skips sklearn's per-tree input checks (a third of its time): its first tree is
    the tree sklearn grows and fills from the same half-sample with its checks on, bit for bit;
    a target that is not finite still meets sklearn's refusal."""
    from sklearn.tree import DecisionTreeRegressor

    X, a, y, mu, e, _ = _data(400, 3)
    forest = DoublyRobustForest(groups=2, seed=5).fit(X, a, y, mu, e)
    scores = doubly_robust_scores(y, a, mu, e)
    target = scores[:, 1:] - scores[:, [0]]
    rng = np.random.default_rng(5)  # the forest's draws for its first tree, in its order
    half = rng.choice(len(X), len(X) // 2, replace=False)
    perm = rng.permutation(half)
    grow = perm[: len(perm) // 2]
    tree = DecisionTreeRegressor(
        min_samples_leaf=forest.min_leaf_,
        max_features=1.0,
        random_state=int(rng.integers(2**31 - 1)),
    ).fit(X[grow].astype(np.float32), target[grow])
    t, nodes = tree.tree_, tree.tree_.node_count
    np.testing.assert_array_equal(forest.left_[0, :nodes], t.children_left)
    np.testing.assert_array_equal(forest.right_[0, :nodes], t.children_right)
    np.testing.assert_array_equal(forest.threshold_[0, :nodes], t.threshold)
    y[0] = np.nan
    try:
        DoublyRobustForest(groups=1, seed=5).fit(X, a, y, mu, e)
    except ValueError as exc:
        assert "NaN" in str(exc) or "infinity" in str(exc)
    else:
        raise AssertionError("a NaN outcome was fitted")
    y[0] = 0.0
    X = X.astype(float)
    X[:, 0] = np.inf  # an infinite covariate (in every tree's sample): refused as sklearn does
    try:
        DoublyRobustForest(groups=1, seed=5).fit(X, a, y, mu, e)
    except ValueError as exc:
        assert "infinity" in str(exc) or "too large" in str(exc), exc
    else:
        raise AssertionError("an infinite covariate was fitted")
