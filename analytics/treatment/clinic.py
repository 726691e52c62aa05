"""The clinic's treatment model: train it from a store, and recommend for one patient with it.

One code path for the CLI (`oncolens recommend`), the Patient page and the
tumour-board report: ``train_clinic_model`` fits the outcome model on the
store's records (never its ``truth`` schema), cross-validates it against the
other learners, and saves it with its model card beside the store;
``load_clinic_model`` *loads* that model (verified by sha256) and never refits,
so every screen and command shows the output of the model whose card the
ethics board has read. All three get a patient's recommendation from
``recommendation_for(clinic, con, person_id)``, a typed ``Recommendation``
whose ``to_json()`` is the CLI's JSON: the CLI through ``recommend_patient``
(loads the model, opens the store), the report with the model it loaded (or
the app's), the page with the one it loaded once per process
(``load_clinic_model(..., stack_refits=True)``).

Training opens the store read-only: it needs no write lock, so it can run
while the app is serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics import store
from analytics.cohorts import base as cohort_base
from analytics.governance.lifecycle.provenance import drift_reference, training_lineage
from analytics.survival.calibration import survival_calibration
from analytics.survival.pseudo_values import pseudo_values
from analytics.treatment.checks import check_table
from analytics.treatment.clinic_data import (
    MissingCovariatesError,
    clinic_training_table,
    patient_covariates,
)
from analytics.treatment.horizon import choose_horizon
from analytics.treatment.model.effects import doubly_robust_scores
from analytics.treatment.model.files import load_model, model_dir_for, save_model
from analytics.treatment.model.metrics import stratified_folds
from analytics.treatment.model.outcome_model import OutcomeModel
from analytics.treatment.model.shap_values import BenefitExplainer
from analytics.treatment.policy import policy_tree_report
from analytics.treatment.recommend import NO_CLEAR_DIFFERENCE, Recommendation, recommend
from analytics.treatment.scope import OutOfScopeError, recommendation_scope
from analytics.treatment.validation import (
    CLINIC_LEARNER,
    DEFAULT_BOOTSTRAP,
    DEFAULT_FOLDS,
    DEFAULT_SEED,
    compare_learners,
    learner_report,
    propensity_of,
)

INTENDED_USE = (
    "Research decision support for breast-oncology tumour boards: predicted 5-year recurrence-free "
    "survival (RFS) and 5-year restricted mean survival time under each first-line option, with "
    "bootstrap intervals and SHAP reasons. The clinician decides; OncoLens is not a medical device."
)
OUT_OF_SCOPE = [
    "patients unlike the training clinic (other cancers, node-negative or metastatic disease)",
    "any patient whose disease has recurred or is metastatic: the model answers the adjuvant decision "
    "in early breast cancer only (checked before every recommendation: recommendation_scope)",
    "options the clinic never used, or used for fewer than a few dozen patients",
    "reading the predicted benefit as a causal effect: training data are observational",
    "patients with missing covariates: the model does not impute",
]
CAVEATS = [
    "Treatment in the training data was chosen by clinicians, not randomised: predictions under an "
    "option a patient did not receive rely on no unmeasured confounding.",
    "Pseudo-value targets assume censoring independent of the covariates.",
    "Each option's 95% RFS interval is point +/- 1.96 bootstrap standard errors: resampling noise only. "
    "The benefit's 90% interval comes from a doubly robust forest and accounts for model error; on the "
    "simulated clinic it covered the true benefit for most patients (docs/validation.md gives the figures).",
]
DISCLAIMER = "Decision support for research use, not a medical device: the clinician decides."


@dataclass(frozen=True)
class TrainingSummary:
    folder: Path
    card: dict


def train_clinic_model(
    db_path: Path,
    *,
    folder: Path | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    folds: int = DEFAULT_FOLDS,
    track: Callable[..., Iterable] | None = None,
    command: str | None = None,
) -> TrainingSummary:
    """Fit, cross-validate and save the clinic's outcome model (``<store>_models/`` by default).

    ``command``: the command line that asked for the training, written into the card's lineage
    (``analytics.governance.lifecycle.lineage``) with the store's fingerprint and the data's hash.

    ``track(iterable, description, total)`` may wrap the long loops (learners cross-validated, bootstrap
    refits) to report progress; the CLI passes a progress bar.
    """
    db_path = Path(db_path).expanduser()
    with store.open_store(db_path, read_only=True) as con:
        table, _ = clinic_training_table(con)
        meta = dict(con.execute("SELECT key, value FROM clinic_metadata").fetchall())
        fingerprint = cohort_base.source_fingerprint(con)
    horizon = choose_horizon(table.time_days)
    fold_rows = stratified_folds(table, folds, seed)
    table, warnings, overlap_report = check_table(table, fold_rows, seed=seed)
    results = compare_learners(table, fold_rows, seed, track=track, horizon_days=horizon.days)
    metrics = learner_report(results, horizon.days)
    model = OutcomeModel(
        CLINIC_LEARNER, bootstrap=bootstrap, seed=seed, horizon_days=horizon.days
    ).fit(table, track=track)
    # the benefit intervals' forest, on the learner comparison's out-of-fold predictions
    mu, propensity = results[CLINIC_LEARNER].oof_rfs_5y, propensity_of(table, fold_rows, seed)
    model.fit_effects(table, mu, propensity)
    received = np.array([table.options.index(o) for o in table.treatment])
    scores = doubly_robust_scores(
        pseudo_values(table.time_days, table.event, np.array([horizon.days]))[:, 0],
        received,
        mu,
        propensity,
    )
    folder = Path(folder) if folder is not None else model_dir_for(db_path)
    card = save_model(
        model,
        folder,
        {
            "intended_use": INTENDED_USE,
            "out_of_scope": OUT_OF_SCOPE,
            "missing_values": "not imputed: a patient lacking any feature gets no recommendation",
            "decision_rule": f"recommend the option with the highest predicted {horizon.label} RFS when "
            "the 90% interval of its benefit over the next best excludes zero; otherwise "
            f"'{NO_CLEAR_DIFFERENCE}'",
            "horizon": horizon.to_json(),
            "benefit_interval": "90%: doubly robust honest forest on pseudo-values (cross-fitted outcome "
            "model and propensity), widened to hold the outcome model's point estimate",
            "data_checks": {"warnings": warnings, "overlap": overlap_report},
            "policy_tree": policy_tree_report(table, scores, fold_rows, seed=seed),
            "training": {
                "store": str(db_path),
                "store_metadata": meta,
                "source": table.source,
                "options_received": {o: int((table.treatment == o).sum()) for o in table.options},
                "notes": list(table.notes),
            },
            "metrics": {"cross_validation": {"folds": folds, "seed": seed}, "learners": metrics},
            "calibration": _calibration(mu, received, table, horizon.days, folds),
            "caveats": CAVEATS,
            "lineage": training_lineage(table, fingerprint, meta, command),
            "drift_reference": drift_reference(table, seed),
        },
    )
    return TrainingSummary(folder, card)


def _calibration(
    mu: np.ndarray, received: np.ndarray, table, horizon_days: float, folds: int
) -> dict:
    """The card's calibration (issue 22: the card had none): out-of-fold predicted RFS at the horizon
    under the option each patient received, against Kaplan-Meier, by tenths of predicted RFS."""
    predicted = mu[np.arange(len(received)), received]
    return {
        "method": f"{folds}-fold cross-fitted (out-of-fold) predicted RFS at the horizon under the option "
        "each patient received, in ten equal groups by predicted value; observed: Kaplan-Meier of the "
        "group (censoring handled), with its 95% band",
        "recalibration": "none applied: the pseudo-value trees predict survival probabilities directly, "
        "and the groups below are the evidence a recalibration would be judged on",
        **survival_calibration(predicted, table.time_days, table.event, horizon_days),
    }


@dataclass(frozen=True, eq=False)
class ClinicModel:
    """A loaded, verified clinic model with its card and its (warmed) SHAP explainer.

    Read-only after loading, so one instance can serve every session of the app.
    """

    model: OutcomeModel
    card: dict
    explainer: BenefitExplainer | None  # None: loaded for risks only (the worklist), no SHAP
    folder: Path

    @property
    def version(self) -> str:
        return str(self.card["version"])


def load_clinic_model(
    db_path: Path, *, folder: Path | None = None, stack_refits: bool = False
) -> ClinicModel:
    """Load the saved model of a store (verified by sha256); raises ``TreatmentModelError``.

    ``stack_refits``: also stack the bootstrap refits for fast single-patient predictions
    (about 2 s once; worth it for a long-lived process such as the app, not for one CLI call).
    """
    folder = Path(folder) if folder is not None else model_dir_for(Path(db_path).expanduser())
    model, card = load_model(folder)
    if stack_refits:
        model.compile()
    explainer = BenefitExplainer(model).warm()
    return ClinicModel(model, card, explainer, folder)


def recommendation_for(
    clinic: ClinicModel, con: duckdb.DuckDBPyConnection, person_id: int
) -> Recommendation:
    """One patient's recommendation: the one function behind the CLI, the Patient page and the report.

    Checks the model's scope first (``recommendation_scope``; raises ``OutOfScopeError`` outside it),
    then reads her covariates from the store (the training SQL); raises ``UnknownPatientError`` or
    ``MissingCovariatesError`` (``analytics.treatment.clinic_data``).
    """
    try:
        covariates = patient_covariates(con, person_id)  # an unknown patient fails here, as before
    except MissingCovariatesError:
        covariates = None  # outside the scope, that is the first thing to say
    scope = recommendation_scope(con, person_id)
    if covariates is None and scope.setting.setting == "unknown":
        patient_covariates(
            con, person_id
        )  # no diagnosis: the missing inputs say more than the scope
    if not scope.in_scope:
        raise OutOfScopeError(scope)
    if covariates is None:
        patient_covariates(con, person_id)  # raises MissingCovariatesError with its message
    return recommendation_from_covariates(clinic, person_id, covariates)


def recommendation_from_covariates(
    clinic: ClinicModel, person_id: int, covariates: pd.DataFrame
) -> Recommendation:
    """The recommendation of one patient's covariates (one row, ``FEATURE_COLUMNS``)."""
    ranking = recommend(clinic.model, covariates).patient(0)
    if clinic.explainer is None:
        raise ValueError("this clinic model was loaded without its explainer (risks only)")
    explanation = clinic.explainer.explain(covariates, ranking.best, ranking.next_best)
    return Recommendation(
        options=ranking.options,
        best=ranking.best,
        next_best=ranking.next_best,
        benefit=ranking.benefit,
        benefit_ci=ranking.benefit_ci,
        clear=ranking.clear,
        person_id=int(person_id),
        model_version=clinic.version,
        horizon_days=float(clinic.model.horizon_days),
        shap=explanation.patient(0),
        caveat=DISCLAIMER + " " + CAVEATS[0],
    )


def recommend_patient(
    db_path: Path, person_id: int, *, folder: Path | None = None, clinic: ClinicModel | None = None
) -> Recommendation:
    """One patient's recommendation from the saved clinic model (``oncolens recommend``).

    ``clinic``: an already loaded model (the app keeps one per process); loaded from disk otherwise.
    """
    db_path = Path(db_path).expanduser()
    clinic = clinic if clinic is not None else load_clinic_model(db_path, folder=folder)
    with store.open_store(db_path, read_only=True) as con:
        return recommendation_for(clinic, con, person_id)
