"""Calibration of predicted survival at a horizon against Kaplan-Meier, by groups of predicted value.

Why Kaplan-Meier on the observed side: patients censored before the horizon have no known status
there, so "the share who had an event" over the others is biased (the censored are dropped while
their events-to-be are not counted). The Kaplan-Meier estimate of each group uses every patient.

Sign convention, stated once because two tables on the Governance page used opposite scales (issue
22): ``gap = mean predicted S(horizon) - observed (Kaplan-Meier) S(horizon)``, on the *survival*
scale. Positive: the model is optimistic (predicts more patients free of events than were); on the
event (risk) scale the same miscalibration has the opposite sign.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analytics.survival.constants import Z_95
from analytics.survival.kaplan_meier import KaplanMeier

SIGN = (
    "gap = mean predicted minus Kaplan-Meier observed survival at the horizon (survival scale); "
    "positive: the model is optimistic about survival, i.e. it under-predicts risk"
)


def survival_calibration(
    predicted: ArrayLike,
    time: ArrayLike,
    event: ArrayLike,
    horizon: float,
    *,
    groups: int = 10,
) -> dict:
    """Predicted S(horizon) against Kaplan-Meier S(horizon) in ``groups`` quantile groups of predicted.

    Returns plain JSON: ``bins`` (``group``, ``n``, ``events``, ``mean_predicted``, ``observed``,
    ``ci_low``, ``ci_high``: the log(-log) 95 % band of the group's Kaplan-Meier), ``overall``
    (calibration in the large on the same scale), ``max_abs_gap``, ``horizon_days`` and ``sign``.
    """
    p = np.asarray(predicted, dtype=float)
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=bool)
    if not (p.shape == t.shape == e.shape) or p.ndim != 1:
        raise ValueError("predicted, time and event must be one-dimensional and of equal length")
    if len(p) < 2 * groups:
        raise ValueError(f"at least {2 * groups} patients are needed for {groups} groups")
    order = np.argsort(p, kind="stable")
    bins = []
    for k, idx in enumerate(np.array_split(order, groups)):
        km = KaplanMeier.fit(t[idx], e[idx])
        observed = float(km.survival_at([horizon])[0])
        lo, hi = km.band_at([horizon], z=Z_95)
        mean_p = float(p[idx].mean())
        bins.append(
            {
                "group": k + 1,
                "n": int(len(idx)),
                "events": int(e[idx].sum()),
                "mean_predicted": round(mean_p, 4),
                "observed": round(observed, 4),
                "ci_low": round(float(lo[0]), 4),
                "ci_high": round(float(hi[0]), 4),
                "gap": round(mean_p - observed, 4),
            }
        )
    overall = float(KaplanMeier.fit(t, e).survival_at([horizon])[0])
    return {
        "horizon_days": float(horizon),
        "groups": groups,
        "bins": bins,
        "overall": {
            "mean_predicted": round(float(p.mean()), 4),
            "observed": round(overall, 4),
            "gap": round(float(p.mean()) - overall, 4),
        },
        "max_abs_gap": round(max(abs(b["gap"]) for b in bins), 4),
        "sign": SIGN,
    }
