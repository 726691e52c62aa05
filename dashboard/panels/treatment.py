"""The Patient page's "Treatment options" section: each option's predicted outcome, the
recommendation or "no clear difference", its SHAP reasons, similar patients, and the
clinician's decision.

Everything shown comes from ``resources.recommendation`` (a ``Recommendation`` from
``analytics.treatment.clinic.recommendation_for``, the function behind ``oncolens recommend``
and the report) and ``resources.similar_patients``; figures from ``dashboard.figures.treatment``;
decisions go to ``analytics.treatment.decisions``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import store
from analytics.governance import audit
from analytics.patients import PatientSummary
from analytics.treatment.clinic import DISCLAIMER
from analytics.treatment.clinic_data import MissingCovariatesError
from analytics.treatment.decisions import (
    DecisionError,
    make_decision,
    record_decision,
    shown_summary,
)
from analytics.treatment.horizon import horizon_label
from analytics.treatment.model.files import TreatmentModelError
from analytics.treatment.recommend import Recommendation
from analytics.treatment.scope import OutOfScopeError, Scope
from dashboard import resources
from dashboard.figures import formats
from dashboard.figures import treatment as treatment_figures
from dashboard.services import plain_language
from dashboard.session import auth, signoff, trail

SMALL_GROUP = 20  # Kaplan-Meier curves of fewer patients are flagged as unreliable


def _pct(p: float) -> str:
    """The one percentage format (``figures.formats``): the metric and the sentence beside it agree."""
    return formats.pct(p)


def first_line_option(treatments: pd.DataFrame) -> str | None:
    """The option (regimen) of the patient's first line of therapy, if recorded."""
    if treatments.empty or "regimen" not in treatments:
        return None
    first = treatments[(treatments["line_of_therapy"] == 1) & treatments["regimen"].notna()]
    return None if first.empty else str(first["regimen"].min())


def show(ref: resources.StoreRef, summary: PatientSummary, scope: Scope | None = None) -> None:
    """Draw the section for one known patient (the page has already loaded her record).

    ``scope``: ``recommendation_scope``'s answer (``resources.care``); outside it the section says
    why and shows no options, no recommendation and no decision form, only the decisions recorded.
    """
    person_id = summary.person_id
    st.subheader(
        "Treatment options", help=plain_language.glossary_help("RFS", "RMST", "SHAP", "C-index")
    )
    current = auth.session()
    if current is None or current.role not in auth.RECOMMENDS:
        st.caption(
            "Treatment recommendations are shown to oncologists, who decide them with the patient."
        )
        return
    if scope is not None and not scope.in_scope and scope.setting.setting != "unknown":
        st.warning(
            "**No recommendation: out of the treatment model's scope.** "
            f"{formats.markdown_plain(scope.reason[0].upper() + scope.reason[1:])}. "
            f"No first-line options are shown. What applies to her: {scope.what_applies}, below.",
            icon=":material/block:",
        )
        _history(ref, person_id)
        return
    st.caption(
        f"{DISCLAIMER} Predictions come from a model of this clinic's own records, where treatment "
        "was chosen by clinicians, not randomised."
    )
    try:
        rec = resources.recommendation(ref, person_id)
    except TreatmentModelError as exc:
        reason = exc.reason[:1].upper() + exc.reason[1:]
        st.info(f"**No usable treatment model for this store.** {reason}.\n\nTrain one with:")
        st.code(f"oncolens recommend --train --db {ref.path}", language="bash")
        _similar_patients(ref, person_id)
        return
    except MissingCovariatesError as exc:
        st.warning(f"No recommendation: {exc}.")
        _similar_patients(ref, person_id)
        return
    except (
        OutOfScopeError
    ) as exc:  # the data changed since the scope was read: say so, show nothing
        st.warning(
            f"**No recommendation: out of the treatment model's scope.** {formats.markdown_plain(exc)}."
        )
        _history(ref, person_id)
        return
    if not signoff.gate(ref, "treatment", rec.model_version, subject=person_id):
        _history(ref, person_id)
        return  # withheld until the ethics board approves this version (admin setting)
    card = resources.treatment_model(ref).card
    _options(rec, card, first_line_option(summary.treatments))
    st.info(plain_language.recommendation_summary(rec), icon=":material/record_voice_over:")
    trail.shown(
        ref.path,
        "recommendation_shown",
        subject=person_id,
        model_name="treatment",
        model_version=rec.model_version,
        inputs_sha256=audit.inputs_hash(rec.shap.to_json()),
        details={"recommended": rec.recommended, "best_predicted": rec.best},
    )
    left, right = st.columns(2)
    left.plotly_chart(
        resources.figure(  # built once per inputs (issue 23: a return rebuilds nothing)
            treatment_figures.benefit_waterfall_figure,
            rec.shap,
            rec.benefit,
            horizon_days=rec.horizon_days,
        )
    )
    left.caption(
        "Exact SHAP values (TreeSHAP) of the predicted benefit, in percentage points of "
        f"{horizon_label(rec.horizon_days)} RFS: "
        f"the average over {card['learner']['background_size']} reference patients plus each feature's "
        f"contribution equals this patient's benefit (additivity error {rec.shap.additivity_error:.0e}). "
        "They explain the model, not the biology.",
        help=plain_language.glossary_help("SHAP", "RFS"),
    )
    with right:
        _similar_patients(ref, person_id)
    _decision(ref, person_id, rec)


def _options(rec: Recommendation, card: dict, received: str | None) -> None:
    options, recommended, best = rec.options, rec.recommended, rec.best
    for column, o in zip(st.columns(len(options)), options, strict=True):
        tag = (
            " · recommended"
            if o.treatment == recommended
            else (" · best predicted" if o.treatment == best else "")
        )
        tag += " · received" if o.treatment == received else ""
        lo, hi = o.rfs_ci
        column.metric(
            f"{formats.option(o.treatment)}{tag}",
            _pct(o.rfs),
            help=plain_language.glossary_help(
                "RFS",
                "confidence interval",
                "RMST",
                lead=f"Predicted {horizon_label(rec.horizon_days)} recurrence-free survival",
            ),
        )
        column.caption(
            f"95 % interval {formats.pct_interval(lo, hi)}  \n"
            f"RMST {o.rmst_days:,.0f} of {rec.horizon_days:,.0f} days recurrence-free "
            f"(95% interval {o.rmst_ci_days.lo:,.0f} to {o.rmst_ci_days.hi:,.0f})"
        )
    statement = plain_language.statement(rec)
    if recommended is not None:
        st.success(f"**Recommended: {formats.option(recommended)}.** {statement}.")
    else:
        st.info(
            f"**{statement[0].upper()}{statement[1:]}.** The 90% interval of the difference "
            "includes zero, so the model does not pick an option."
        )
    st.plotly_chart(
        resources.figure(
            treatment_figures.treatment_options_figure,
            options,
            recommended or best,
            horizon_days=rec.horizon_days,
        )
    )
    learner = card["learner"]
    c_index = (
        card.get("metrics", {})
        .get("learners", {})
        .get(learner["name"], {})
        .get("harrell_c", {})
        .get("mean")
    )
    quality = f"; cross-validated Harrell's C {c_index:.2f}" if c_index is not None else ""
    st.caption(
        f"Model {rec.model_version} ({learner['name']}: gradient-boosted trees on pseudo-values), trained on "
        f"{card['training']['patients']:,} patients of this clinic{quality}; horizon "
        f"{horizon_label(rec.horizon_days)} ({_horizon_reason(card)}). Each option's 95% interval: ±1.96 "
        f"standard errors over {learner['bootstrap']} bootstrap refits (resampling noise only). The benefit's "
        "90% interval comes from a doubly robust forest that accounts for model error; it decides "
        "“clear”. RMST: restricted mean recurrence-free time up to the horizon. "
        f"{rec.caveat.removeprefix(DISCLAIMER).strip()}",
        help=plain_language.glossary_help("C-index", "confidence interval", "RMST"),
    )
    _data_warnings(card)


def _horizon_reason(card: dict) -> str:
    """Why this horizon, from the card (models trained before horizons were chosen have none)."""
    horizon = card.get("horizon")
    if not horizon:
        return "fixed at training"
    return f"{horizon['at_risk_at_horizon']:,} patients still followed there"


def _data_warnings(card: dict) -> None:
    """The data checks run before the model was fitted, as the card records them."""
    warnings = card.get("data_checks", {}).get("warnings", [])
    if warnings:
        with st.expander(f"Data checks before fitting: {len(warnings)} warning(s)"):
            for w in warnings:
                st.markdown(f"- {w['message']}")


def _similar_patients(ref: resources.StoreRef, person_id: int) -> None:
    similar = resources.similar_patients(ref, person_id)
    st.plotly_chart(
        resources.figure(
            treatment_figures.similar_patients_figure,
            similar.km,
            similar.counts,
            similar.criteria,
        )
    )
    if similar.criteria is None:
        return
    small = [
        str(g)
        for g, n in zip(similar.counts["group"], similar.counts["patients"], strict=True)
        if n < SMALL_GROUP
    ]
    sample = (
        f" (a fixed sample of {similar.used:,} of {similar.matched:,})" if similar.sampled else ""
    )
    st.caption(
        f"Similar patients: the same stage and oestrogen-receptor status at diagnosis ({similar.criteria}), "
        f"this patient left out, by the first-line option they received{sample}; n per curve in the legend. "
        "Observed outcomes of patients treated differently for clinical reasons: not a treatment effect."
        + (
            f" Fewer than {SMALL_GROUP} patients: {', '.join(small)}; read those curves with care."
            if small
            else ""
        ),
        help=plain_language.glossary_help("Kaplan–Meier"),
    )


def _decision(ref: resources.StoreRef, person_id: int, rec: Recommendation) -> None:
    st.markdown("**Decision**")
    options = [o.treatment for o in rec.options]
    recommended = rec.recommended
    with st.form(f"oncolens.treatment_decision.{person_id}", clear_on_submit=True):
        if recommended is not None:
            chosen = st.selectbox(
                "Option, if you override",
                [o for o in options if o != recommended],
                format_func=formats.option,
            )
            reason = st.text_area("Reason (required to override)", max_chars=1000)
            a, b = st.columns(2)
            accept = a.form_submit_button(f"Accept {formats.option(recommended)}", type="primary")
            submit = b.form_submit_button("Override with the option above")
        else:
            chosen = st.selectbox(
                "Option chosen",
                options,
                index=options.index(rec.best),
                format_func=formats.option,
            )
            reason = st.text_area(
                "Reason (required: the model found no clear difference)", max_chars=1000
            )
            accept = False
            submit = st.form_submit_button("Record choice", type="primary")
    if accept or submit:
        try:
            decision = make_decision(
                person_id=person_id,
                model_version=rec.model_version,
                recommended=recommended,
                options=options,
                actor=auth.actor()[0],
                chosen=None if accept else chosen,
                reason=reason,
            )
            decision_id = record_decision(
                ref.path,
                decision,
                shown=shown_summary(rec),
                wait_s=resources.READ_WAIT_S,
                role=auth.actor()[1],
            )
        except DecisionError as exc:
            st.error(f"Not recorded: {exc}.")
        except store.StoreError as exc:
            st.error(f"The decision could not be stored: {exc}")
        else:
            verb = "accepted" if decision.accepted else "chose"
            st.success(
                f"Decision {decision_id} recorded: {decision.actor} {verb} "
                f"{formats.option(decision.chosen)}."
            )
            ref = resources.store_status().ref or ref  # the write changed the file: read it again
    _history(ref, person_id)


def _history(ref: resources.StoreRef, person_id: int) -> None:
    """The decision log: what was recommended, what was chosen, and the whole reason (never cut)."""
    history = resources.treatment_decision_history(ref, person_id)
    if history.empty:
        st.caption("No decision recorded for this patient yet.")
        return
    st.caption("Decisions recorded for this patient, newest first (also in the audit trail).")
    for row in history.itertuples(index=False):
        recommended = (
            formats.option(row.recommended)
            if isinstance(row.recommended, str)
            else "no clear difference"
        )
        verb = "accepted" if row.accepted else "chose"
        with st.container(border=True):
            st.markdown(
                f"**{pd.Timestamp(row.decided_at):%Y-%m-%d %H:%M}** · {formats.markdown_plain(row.actor)} "
                f"{verb} **{formats.markdown_plain(formats.option(row.chosen))}** · recommended: {formats.markdown_plain(recommended)} "
                f"· model {formats.markdown_plain(row.model_version)} · decision {row.decision_id}"
            )
            reason = row.reason if isinstance(row.reason, str) and row.reason.strip() else None
            st.text(
                f"Reason: {reason}"
                if reason
                else "Reason: none given (the recommendation was accepted)"
            )


def _policy_tree(card: dict) -> None:
    """Who benefits: the card's shallow policy tree, its leaves with their patients, its value."""
    tree = card.get("policy_tree")
    if not tree:
        st.caption(
            "This model was trained before policy trees were recorded; retrain it to see one."
        )
        return
    gain, best = tree["gain_over_best_single_option"], tree["best_single_option"]
    st.markdown(
        f"**Who benefits (depth-{tree['depth']} policy tree).** {tree['verdict'][0].upper()}"
        f"{tree['verdict'][1:]}."
    )
    st.dataframe(
        pd.DataFrame(
            {
                "patients with": [" and ".join(leaf["conditions"]) for leaf in tree["tree"]],
                "tree assigns": [leaf["option"] for leaf in tree["tree"]],
                "patients": [leaf["patients"] for leaf in tree["tree"]],
            }
        ),
        hide_index=True,
    )
    everyone = "; ".join(
        f"everyone {o}: {v['value']:.3f}" for o, v in tree["everyone_gets"].items()
    )
    st.caption(
        f"Estimated mean {card.get('horizon', {}).get('label', 'RFS')} if everyone followed the tree "
        f"(out of fold, doubly robust): {tree['policy_value']['value']:.3f}; {everyone}. Gain over "
        f"everyone {best}: {gain['value']:+.3f} (95% interval {gain['ci'][0]:+.3f} to {gain['ci'][1]:+.3f}). "
        "Treatment in this store was chosen by clinicians: these are estimates under no unmeasured "
        "confounding, not trial results."
    )


def cohort_section(ref: resources.StoreRef) -> None:
    """The Cohorts page's view of the treatment model: what it recommends to whom, and what drives it."""
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.treatment.data import TreatmentDataError

    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.figures import treatment as treatment_figures

    st.subheader(
        "The treatment model across the clinic", help=plain_language.glossary_help("SHAP", "RFS")
    )
    st.caption(
        f"{DISCLAIMER} The same model and SHAP values as each patient's treatment section, summarised "
        "over the clinic. SHAP explains the model's predicted benefit of the best over the next-best "
        "option, not the biology; a covariate can matter to the model because of how clinicians chose "
        "treatments in this store."
    )
    try:
        model = resources.treatment_model(ref)
        # the sign-off first: a withheld version's clinic-wide SHAP is not worth computing
        if not signoff.gate(ref, "treatment", model.version):
            return  # withheld until the ethics board approves this version (admin setting)
        with resources.working(
            "Explaining the treatment model over the clinic (SHAP for every patient)…"
        ):
            cohort = resources.cohort_explanation(ref)
    except (TreatmentModelError, TreatmentDataError) as exc:
        st.info(f"**No treatment model summary.** {exc}")
        st.code(f"oncolens recommend --train --db {ref.path}", language="bash")
        return
    _policy_tree(model.card)
    counts = cohort.recommendation_counts()
    sampled = (
        f" (a fixed sample of {cohort.patients:,} of {cohort.patients_total:,} patients)"
        if cohort.patients < cohort.patients_total
        else ""
    )
    cols = st.columns(len(counts))
    for col, row in zip(cols, counts.itertuples(index=False), strict=True):
        col.metric(
            formats.option(row.recommendation).capitalize(),
            f"{row.share:.0%}",
            help=plain_language.glossary_help(
                "confidence interval", lead=f"{row.patients:,} patients{sampled}"
            ),
        )
    st.caption(
        "Share of patients by recommendation. \u201cNo clear difference\u201d: the 90 % interval "
        f"of the benefit (doubly robust, accounts for model error) includes zero, so the model does not "
        f"pick an option{sampled}."
    )
    importance = cohort.importance()
    left, right = st.columns(2)
    horizon_days = model.model.horizon_days
    left.plotly_chart(
        treatment_figures.shap_importance_figure(importance, horizon_days=horizon_days),
        key="cohort_shap_bar",
    )
    right.plotly_chart(
        treatment_figures.shap_beeswarm_figure(
            cohort.beeswarm(), list(importance["feature"]), horizon_days=horizon_days
        ),
        key="cohort_shap_beeswarm",
    )
    st.caption(
        f"Exact TreeSHAP over {cohort.patients:,} patients; largest additivity error "
        f"{cohort.shap.additivity_error:.0e} (base value + contributions = predicted benefit).",
        help=plain_language.glossary_help("SHAP"),
    )
