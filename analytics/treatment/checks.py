"""Data checks before a treatment model is fitted: leakage, overlap, events, redundant or coded columns.

Why: a column that re-codes the treatment arm lets the outcome model read the arm from
the covariates, so "what if she received the other option" is answered by a patient who
did not exist, and the recommendation inverts without a word (seen: the worse arm
"best predicted" for 91 % of patients). Each check below returns a plain warning
(``{"check", "message", ...}``) that the CLI prints and the JSON carries under
``warnings``; leakage is refused unless the user keeps the column on purpose.

- **leakage**: a covariate whose values alone separate one option from the others
  almost perfectly (one-vs-rest AUC >= ``LEAKAGE_AUC``) is named and refused;
- **overlap**: cross-fitted propensities (``effects.cross_fitted_propensity``): their
  distribution among patients who received each option and those who did not, and the
  share of patients outside the common support (the range both groups cover);
- **events**: too few events among patients who received an option (< ``MIN_EVENTS``);
- **constant / duplicated columns**: dropped (a copy adds nothing but a second name);
- **coded categories**: whole numbers with 3-10 levels are read as ordered numbers; the
  warning says so, because category codes (site 1-4) would need to be given as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from analytics.treatment.data import SurvivalTable, TreatmentDataError
from analytics.treatment.model.effects import cross_fitted_propensity

LEAKAGE_AUC = 0.95
MIN_EVENTS = 20
SUPPORT_SHARE_WARNING = 0.05
EXTREME_PROPENSITY = 0.05


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Rank AUC of ``score`` for ``positive``, folded to >= 0.5 (direction does not matter)."""
    # lazy: sklearn is imported only when this is used (start-up time)
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return 0.5
    auc = float(roc_auc_score(positive, score))
    return max(auc, 1.0 - auc)


def _redundant_columns(table: SurvivalTable) -> tuple[list[str], list[dict]]:
    drop, warnings = [], []
    cov = table.covariates
    for c in cov.columns:
        if cov[c].nunique() <= 1:
            drop.append(c)
            warnings.append(
                {
                    "check": "constant_column",
                    "column": c,
                    "message": f"covariate {c!r} has one value only; left out",
                }
            )
    seen: dict[bytes, str] = {}
    for c in cov.columns:
        if c in drop:
            continue
        key = cov[c].to_numpy(dtype=float).tobytes()
        if key in seen:
            drop.append(c)
            warnings.append(
                {
                    "check": "duplicated_column",
                    "column": c,
                    "message": f"covariate {c!r} repeats {seen[key]!r} value for value; left out",
                }
            )
        else:
            seen[key] = c
    return drop, warnings


def _coded_categories(table: SurvivalTable) -> list[dict]:
    out = []
    for c in table.covariates.columns:
        v = table.covariates[c].to_numpy(dtype=float)
        levels = np.unique(v)
        if 3 <= levels.size <= 10 and np.all(v == np.round(v)):
            out.append(
                {
                    "check": "coded_categories",
                    "column": c,
                    "levels": [float(x) for x in levels],
                    "message": f"covariate {c!r} holds {levels.size} whole-number codes, read as ordered "
                    "numbers; if they are categories without an order, give them as text",
                }
            )
    return out


def _leakage(table: SurvivalTable, keep: Iterable[str]) -> list[dict]:
    keep = set(keep)
    found = []
    for c in table.covariates.columns:
        x = table.covariates[c].to_numpy(dtype=float)
        aucs = {o: _auc(x, table.treatment == o) for o in table.options}
        option, auc = max(aucs.items(), key=lambda kv: kv[1])
        if auc >= LEAKAGE_AUC:
            found.append({"column": c, "option": option, "auc": round(auc, 4), "kept": c in keep})
    refused = [f for f in found if not f["kept"]]
    if refused:
        f = refused[0]
        others = (
            f" (and {', '.join(repr(g['column']) for g in refused[1:])})"
            if len(refused) > 1
            else ""
        )
        raise TreatmentDataError(
            f"covariate {f['column']!r}{others} predicts the treatment almost perfectly (AUC {f['auc']:.2f} for "
            f"{f['option']!r}): it likely encodes the treatment itself; remove it, or keep it on purpose with "
            f"--keep-covariate {f['column']}"
        )
    return [
        {
            "check": "leakage",
            "column": f["column"],
            "auc": f["auc"],
            "message": f"covariate {f['column']!r} predicts the treatment almost perfectly (AUC {f['auc']:.2f}); "
            "kept on request: estimates under the other option are extrapolated",
        }
        for f in found
    ]


def overlap(
    table: SurvivalTable, folds: list[np.ndarray], seed: int = 0
) -> tuple[dict, list[dict]]:
    """Propensity distributions per option and the share outside common support, plus warnings."""
    received = np.array([table.options.index(o) for o in table.treatment])
    p = cross_fitted_propensity(
        table.covariates.to_numpy(dtype=float), received, len(table.options), folds, seed
    )
    q = [5, 25, 50, 75, 95]
    report: dict = {"quantiles": q, "options": {}}
    warnings = []
    for j, o in enumerate(table.options):
        got, other = p[received == j, j], p[received != j, j]
        lo, hi = max(got.min(), other.min()), min(got.max(), other.max())
        outside = float(((p[:, j] < lo) | (p[:, j] > hi)).mean())
        extreme = float(
            ((p[:, j] < EXTREME_PROPENSITY) | (p[:, j] > 1 - EXTREME_PROPENSITY)).mean()
        )
        report["options"][o] = {
            "propensity_received": [round(float(v), 4) for v in np.percentile(got, q)],
            "propensity_not_received": [round(float(v), 4) for v in np.percentile(other, q)],
            "common_support": [round(float(lo), 4), round(float(hi), 4)],
            "share_outside_common_support": round(outside, 4),
            "share_extreme_propensity": round(extreme, 4),
        }
        if outside > SUPPORT_SHARE_WARNING:
            warnings.append(
                {
                    "check": "overlap",
                    "option": o,
                    "message": f"{outside:.0%} of patients are outside the common support of {o!r} "
                    "(propensities no patient of the other group has): their estimates are extrapolated",
                }
            )
    return report, warnings


def check_table(
    table: SurvivalTable, folds: list[np.ndarray], *, keep: Iterable[str] = (), seed: int = 0
) -> tuple[SurvivalTable, list[dict], dict]:
    """The table to fit (constant and duplicated covariates left out), the warnings, the overlap report.

    Raises ``TreatmentDataError`` for a covariate that encodes the treatment (unless in ``keep``).
    """
    drop, warnings = _redundant_columns(table)
    if drop:
        kept = [f for f in table.features if f.column not in drop]
        if not kept:
            raise TreatmentDataError(
                "every covariate is constant or a copy of another: nothing to model"
            )
        table = replace(
            table, covariates=table.covariates[[f.column for f in kept]], features=tuple(kept)
        )
    warnings += _leakage(table, keep)
    for o in table.options:
        events = int(table.event[table.treatment == o].sum())
        if events < MIN_EVENTS:
            warnings.append(
                {
                    "check": "events",
                    "option": o,
                    "events": events,
                    "message": f"only {events} events among patients who received {o!r} (fewer than "
                    f"{MIN_EVENTS}): estimates under it are uncertain",
                }
            )
    warnings += _coded_categories(table)
    report, overlap_warnings = overlap(table, folds, seed)
    return table, warnings + overlap_warnings, report
