"""The clinic's treatment model over the whole cohort: what it recommends, and what drives the benefit.

Why a cohort view next to each patient's waterfall: an ethics board or a
research lead needs to see which covariates the model leans on across
everyone (a model driven by age alone, say, would be a finding), and how
often it actually dares to recommend rather than say "no clear difference".

SHAP values are exactly the per-patient waterfall values (same explainer,
same benefit of the best over the next-best option), so the bar chart is the
mean |contribution| of the waterfalls the oncologists see, in percentage
points of 5-year RFS.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from analytics import store
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.shap_values import BenefitShap
from analytics.treatment.recommend import NO_CLEAR_DIFFERENCE, recommend

DEFAULT_MAX_PATIENTS = 5_000


@dataclass(frozen=True, eq=False)
class CohortExplanation:
    """SHAP of every patient's predicted benefit, with what was recommended to whom."""

    shap: BenefitShap
    recommended: np.ndarray  # (n,) option name or NO_CLEAR_DIFFERENCE
    patients: int  # patients explained
    patients_total: int  # patients in the store

    def importance(self) -> pd.DataFrame:
        """Mean |SHAP| and mean SHAP per feature, percentage points, largest first."""
        out = self.shap.importance()
        return out.assign(mean_abs_pp=100 * out["mean_abs_shap"], mean_pp=100 * out["mean_shap"])

    def recommendation_counts(self) -> pd.DataFrame:
        """How many patients get each option, and how many get "no clear difference"."""
        counts = pd.Series(self.recommended).value_counts()
        order = [o for o in counts.index if o != NO_CLEAR_DIFFERENCE] + (
            [NO_CLEAR_DIFFERENCE] if NO_CLEAR_DIFFERENCE in counts.index else []
        )
        counts = counts.reindex(order)
        return pd.DataFrame(
            {
                "recommendation": counts.index,
                "patients": counts.to_numpy(),
                "share": counts.to_numpy() / max(len(self.recommended), 1),
            }
        )

    def beeswarm(self, max_points: int = 2_000, seed: int = 0) -> pd.DataFrame:
        """Long table (feature, shap_pp, value, value_rank) for a beeswarm; a fixed sample above ``max_points``.

        ``value_rank`` is the feature value's rank within the feature in [0, 1]
        (the colour: low to high), so binary and continuous features share a scale.
        """
        n = len(self.recommended)
        rows = np.arange(n)
        if n > max_points:
            rows = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        cov = self.shap.covariates.iloc[rows]
        frames = []
        for j, feature in enumerate(self.shap.features):
            values = cov.iloc[:, j].to_numpy(dtype=float)
            rank = pd.Series(values).rank(pct=True, method="average").to_numpy()
            frames.append(
                pd.DataFrame(
                    {
                        "feature": feature.label,
                        "shap_pp": 100 * self.shap.values[rows, j],
                        "value": values,
                        "value_rank": rank,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


def explain_cohort(
    clinic, con: duckdb.DuckDBPyConnection, max_patients: int = DEFAULT_MAX_PATIENTS
):
    """Recommendations and SHAP of the benefit for the store's patients (a fixed sample above the cap).

    ``clinic``: a loaded ``ClinicModel``. Raises ``TreatmentDataError`` when the
    store has too few usable patients.
    """
    table, _ = clinic_training_table(con, max_patients=max_patients)
    covariates = table.covariates[clinic.model.feature_columns]
    rec = recommend(clinic.model, covariates)
    options = np.asarray(rec.options, dtype=object)
    shap = clinic.explainer.explain(covariates, options[rec.best], options[rec.next_best])
    total = int(store.one_row(con.execute("SELECT count(*) FROM person"))[0])
    return CohortExplanation(shap, rec.recommended_names(), len(covariates), total)
