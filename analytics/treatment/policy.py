"""Judging a treatment policy: on observed outcomes (trial data) and against the simulation's truth.

``followed_vs_not``: the recommendation analysis of DeepSurv (Katzman et al.,
BMC Med Res Methodol 2018;18:24): patients whose actual treatment matched the
policy's recommendation against those whose did not, by Kaplan-Meier,
hazard ratio (Cox, followed = 1) with its 95 % CI, and the log-rank test. It
is run for the model's recommendations and, beside them, for "give everyone
option a": on GBSG2 treating everyone with hormonal therapy already separates
the groups (hazard ratio about 0.7), so a personalised policy earns credit
only for what it adds over that. Without randomisation the groups differ in
more than the policy; the covariate-adjusted hazard ratio is reported too,
and neither is a causal estimate.

``truth_metrics``: on the simulated clinic, where every patient's 5-year RFS
under every option is known: how often the recommended option is truly the
best, the policy value (mean true 5-year RFS if everyone got her
recommendation) against the best single option for all, and the error of the
estimated effects (PEHE, Hill 2011).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.survival.constants import HORIZON_5Y_DAYS, Z_95
from analytics.survival.kaplan_meier import KaplanMeier
from analytics.survival.logrank import log_rank_test
from analytics.treatment.data import SurvivalTable

TIE_TOLERANCE = 0.001  # true 5-year RFS within 0.1 percentage point of the best counts as best


def _km_at(time: np.ndarray, event: np.ndarray, horizon: float) -> dict:
    """Patients, events, Kaplan-Meier RFS at ``horizon`` with its 95 % band, and the median."""
    km = KaplanMeier.fit(time, event)
    s = float(km.survival_at(horizon))
    lo, hi = (float(v) for v in km.band_at(horizon))
    median = km.median()
    return {
        "patients": int(time.size),
        "events": int(event.sum()),
        "rfs": round(s, 4),
        "rfs_ci": [round(lo, 4), round(hi, 4)],
        "median_rfs_days": None if median is None else round(median, 1),
    }


def followed_vs_not(
    table: SurvivalTable,
    recommended: np.ndarray,
    policy: str,
    adjust: bool = True,
    horizon_days: float = HORIZON_5Y_DAYS,
) -> dict:
    """Followed (actual == recommended) vs not: KM RFS at the horizon, HR (95 % CI), log-rank p."""
    # lazy: lifelines is imported only when this is used (start-up time)
    from lifelines import CoxPHFitter

    recommended = np.asarray(recommended, dtype=object)
    followed = recommended == table.treatment
    result: dict = {
        "policy": policy,
        "horizon_days": round(float(horizon_days), 3),
        "followed_patients": int(followed.sum()),
        "not_followed_patients": int((~followed).sum()),
    }
    if (
        followed.all()
        or not followed.any()
        or table.event[followed].sum() == 0
        or table.event[~followed].sum() == 0
    ):
        result["error"] = (
            "everyone (or no one) followed this policy, or one group has no events: no comparison"
        )
        return result
    t, e = table.time_days, table.event
    result["followed"] = _km_at(t[followed], e[followed], horizon_days)
    result["not_followed"] = _km_at(t[~followed], e[~followed], horizon_days)
    df = pd.DataFrame({"time": t, "event": e.astype(int), "followed": followed.astype(float)})
    cox = CoxPHFitter().fit(df, "time", "event")
    summary = cox.summary.loc["followed"]
    result["hazard_ratio"] = round(float(summary["exp(coef)"]), 4)
    result["hazard_ratio_ci"] = [
        round(float(summary["exp(coef) lower 95%"]), 4),
        round(float(summary["exp(coef) upper 95%"]), 4),
    ]
    result["logrank_p"] = log_rank_test(t, e, followed)[1]
    if adjust:
        adj = pd.concat([df, table.covariates.reset_index(drop=True).add_prefix("cov_")], axis=1)
        s = CoxPHFitter(penalizer=0.001).fit(adj, "time", "event").summary.loc["followed"]
        result["hazard_ratio_adjusted"] = round(float(s["exp(coef)"]), 4)
        result["hazard_ratio_adjusted_ci"] = [
            round(float(s["exp(coef) lower 95%"]), 4),
            round(float(s["exp(coef) upper 95%"]), 4),
        ]
    return result


def policy_comparison(
    table: SurvivalTable,
    recommended: np.ndarray,
    policy: str,
    horizon_days: float = HORIZON_5Y_DAYS,
) -> list[dict]:
    """The model's policy first, then "everyone gets option a" for every option, on the same patients."""
    rows = [followed_vs_not(table, recommended, policy, horizon_days=horizon_days)]
    for option in table.options:
        rows.append(
            followed_vs_not(
                table,
                np.full(table.n, option, dtype=object),
                f"everyone: {option}",
                horizon_days=horizon_days,
            )
        )
    return rows


def truth_metrics(
    options: tuple[str, ...],
    estimated_rfs_5y: np.ndarray,
    best: np.ndarray,
    next_best: np.ndarray,
    benefit_ci: np.ndarray,
    clear: np.ndarray,
    true_rfs_5y: np.ndarray,
    assigned: np.ndarray,
    tie_tolerance: float = TIE_TOLERANCE,
) -> dict:
    """Recommendations against the true 5-year RFS under every option (n patients, k options).

    ``best``/``next_best``: option index per patient (the model's ranking);
    ``assigned``: index of the option actually given. Probabilities 0-1.
    """
    n, k = true_rfs_5y.shape
    rows = np.arange(n)
    true_best_value = true_rfs_5y.max(axis=1)
    got = true_rfs_5y[rows, best]
    truly_best = got >= true_best_value - tie_tolerance
    per_option_value = true_rfs_5y.mean(axis=0)
    single = int(np.argmax(per_option_value))
    policy_value = float(got.mean())

    ref_true = true_rfs_5y[:, 1:] - true_rfs_5y[:, [0]]  # each option vs the first
    ref_est = estimated_rfs_5y[:, 1:] - estimated_rfs_5y[:, [0]]
    pehe_by = np.sqrt(np.mean((ref_est - ref_true) ** 2, axis=0))
    est_benefit = estimated_rfs_5y[rows, best] - estimated_rfs_5y[rows, next_best]
    true_benefit = true_rfs_5y[rows, best] - true_rfs_5y[rows, next_best]
    constant = np.sqrt(np.mean((ref_true - ref_true.mean(axis=0)) ** 2))
    covered = (benefit_ci[:, 0] <= true_benefit) & (true_benefit <= benefit_ci[:, 1])

    def r(x: float) -> float:
        return round(float(x), 4)

    return {
        "patients": int(n),
        "tie_tolerance": tie_tolerance,
        "fraction_recommended_truly_best": r(truly_best.mean()),
        "fraction_truly_best_among_clear": r(truly_best[clear].mean()) if clear.any() else None,
        "fraction_clear": r(clear.mean()),
        "fraction_with_tied_true_best": r(
            (np.sort(true_rfs_5y, axis=1)[:, -2] >= true_best_value - tie_tolerance).mean()
        ),
        "recommended_counts": {o: int((best == j).sum()) for j, o in enumerate(options)},
        "true_best_counts": {
            o: int((true_rfs_5y.argmax(axis=1) == j).sum()) for j, o in enumerate(options)
        },
        "policy_value_rfs_5y": r(policy_value),
        "best_single_option": options[single],
        "best_single_option_value_rfs_5y": r(per_option_value[single]),
        "best_single_option_fraction_truly_best": r(
            (true_rfs_5y[:, single] >= true_best_value - tie_tolerance).mean()
        ),
        "policy_value_gain": r(policy_value - per_option_value[single]),
        "as_treated_value_rfs_5y": r(true_rfs_5y[rows, assigned].mean()),
        "oracle_value_rfs_5y": r(true_best_value.mean()),
        "pehe": r(np.sqrt(np.mean((ref_est - ref_true) ** 2))),
        "pehe_by_contrast": {
            f"{o} vs {options[0]}": r(v) for o, v in zip(options[1:], pehe_by, strict=True)
        },
        "pehe_if_constant_true_effect": r(constant),
        "pehe_benefit": r(np.sqrt(np.mean((est_benefit - true_benefit) ** 2))),
        "benefit_interval_level": 0.90,
        "benefit_interval_coverage_of_true_benefit": r(covered.mean()),
    }


# --- who benefits: a shallow policy tree over doubly robust scores ---------------------

POLICY_TREE_DEPTH = 2
POLICY_TREE_MIN_LEAF = 0.05  # each leaf holds at least 5 % of the patients


def _fit_policy_tree(X: np.ndarray, scores: np.ndarray, depth: int, seed: int):
    """A depth-limited tree that assigns each patient the option with the highest doubly robust score.

    The weighted-classification reduction of policy learning (Athey & Wager 2021, Econometrica
    89:133): label = the option with the best score, weight = how much better it is than the
    patient's second best, so a split is worth what it gains in expected outcome.
    """
    # lazy: sklearn is imported only when this is used (start-up time)
    from sklearn.tree import DecisionTreeClassifier

    order = np.argsort(-scores, axis=1)
    rows = np.arange(len(scores))
    weight = scores[rows, order[:, 0]] - scores[rows, order[:, 1]]
    return DecisionTreeClassifier(
        max_depth=depth,
        min_samples_leaf=max(5, int(POLICY_TREE_MIN_LEAF * len(X))),
        random_state=seed,
    ).fit(X, order[:, 0], sample_weight=weight + 1e-9)


def _tree_rules(
    tree, feature_labels: list[str], options: tuple[str, ...], X: np.ndarray
) -> list[dict]:
    """Each leaf as its conditions, the option it assigns and the patients it holds."""
    t = tree.tree_
    leaves = tree.apply(X)
    out: list[dict] = []

    def walk(node: int, conditions: list[str]) -> None:
        if t.children_left[node] == -1:
            option = options[int(tree.classes_[int(np.argmax(t.value[node][0]))])]
            out.append(
                {
                    "conditions": conditions or ["everyone"],
                    "option": option,
                    "patients": int((leaves == node).sum()),
                }
            )
            return
        name, cut = feature_labels[int(t.feature[node])], float(t.threshold[node])
        walk(int(t.children_left[node]), [*conditions, f"{name} <= {cut:.4g}"])
        walk(int(t.children_right[node]), [*conditions, f"{name} > {cut:.4g}"])

    walk(0, [])
    return out


def policy_tree_report(
    table: SurvivalTable,
    scores: np.ndarray,
    folds: list[np.ndarray],
    *,
    depth: int = POLICY_TREE_DEPTH,
    seed: int = 0,
) -> dict:
    """Who benefits: a depth-``depth`` policy tree, its out-of-fold value against one option for all.

    ``scores``: (n, options) doubly robust scores of S(horizon) under each option, from
    cross-fitted nuisances (``analytics.treatment.model.effects.doubly_robust_scores``). The
    value of a policy is the mean score of the option it assigns (an unbiased estimate of the
    mean RFS at the horizon if everyone followed it); out of fold: each patient is assigned by a
    tree that did not see her. Differences are paired, with 95 % intervals (z x sd / sqrt(n)).
    """
    X = table.covariates.to_numpy(dtype=float)
    n = table.n
    assigned = np.zeros(n, dtype=int)
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        tree = _fit_policy_tree(X[train], scores[train], depth, seed)
        assigned[test] = tree.predict(X[test])
    rows = np.arange(n)
    value = scores[rows, assigned]

    def summary(x: np.ndarray) -> dict:
        m, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(n))
        return {"value": round(m, 4), "ci": [round(m - Z_95 * se, 4), round(m + Z_95 * se, 4)]}

    everyone = {o: summary(scores[:, j]) for j, o in enumerate(table.options)}
    best_single = int(np.argmax(scores.mean(axis=0)))
    gain = summary(value - scores[:, best_single])
    full = _fit_policy_tree(X, scores, depth, seed)
    beats = gain["ci"][0] > 0
    return {
        "depth": depth,
        "method": "weighted-classification policy tree on doubly robust scores (cross-fitted "
        "outcome model and propensity); value out of fold; 95% intervals",
        "tree": _tree_rules(full, table.feature_labels, table.options, X),
        "policy_value": summary(value),
        "everyone_gets": everyone,
        "best_single_option": table.options[best_single],
        "gain_over_best_single_option": gain,
        "verdict": (
            f"the tree's policy beats giving everyone {table.options[best_single]}"
            if beats
            else f"no policy found beats giving everyone {table.options[best_single]} "
            "(the gain's 95% interval includes zero)"
        ),
    }
