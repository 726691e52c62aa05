"""Governance (ethics board, admin): model cards, subgroup audits, saliency checks, audit trail,
decisions, data quality; the admin's accounts."""

from __future__ import annotations

import streamlit as st

from analytics.governance import audit
from analytics.treatment.model.files import TreatmentModelError
from dashboard import resources
from dashboard.panels import governance as panel
from dashboard.panels import lifecycle as lifecycle_panel
from dashboard.session import auth, trail

session = auth.require_page("governance")
ref = resources.require_store()
st.title("Governance")
st.caption(
    "What the models are, how well they work for whom, and what the system showed to whom. "
    "OncoLens is research and decision support, not a medical device."
)

is_admin = session.role == "admin"  # accounts are the admin's (issue 22)
# Only the open tab is computed (issue 23: every tab ran on every rerun, the ethics board's first
# open took 74-90 s); the open tab is in the address (?tab=...), so a link or a reload reopens it.
(
    cards,
    checklist_tab,
    audit_tab,
    saliency_tab,
    trail_tab,
    decisions_tab,
    quality_tab,
    data_tab,
    signoff_tab,
    drift_tab,
    *admin_tabs,
) = st.tabs(
    [
        "Model cards",
        "Checklists and dossier",
        "Subgroup audit",
        "Saliency checks",
        "Audit trail",
        "Decisions",
        "Data quality",
        "Lineage",  # issue 22 item 3: replaces the row counts of "Data provenance"
        "Sign-off",
        "Drift",
        *(["Users"] if is_admin else []),
    ],
    key="tab",
    bind="query-params",
    on_change="rerun",
)

if cards.open:
    with cards:
        for card in resources.model_cards():
            with st.expander(
                f"Imaging: {card.get('title', card.get('name'))} v{card.get('version')}",
                expanded=False,
            ):
                panel.render_card(card, "imaging model (synthetic phantoms)")
        for entry in resources.volume_cards():  # the 3D bundles: built in, and registered ones
            with st.expander(panel.volume_card_label(entry), expanded=False):
                panel.render_volume_card(entry)
        try:
            treatment_card = resources.treatment_card(ref)
            with st.expander(
                f"Treatment: clinic model {treatment_card.get('version')}", expanded=False
            ):
                panel.render_card(treatment_card, "treatment outcome model (this store's clinic)")
        except TreatmentModelError as exc:
            st.info(f"No treatment model card: {exc}")

# issue 22 items 1-2: reporting checklists from live evidence, the model dossier
if checklist_tab.open:
    with checklist_tab:
        models = resources.governed_models()
        model = st.selectbox(
            "Model",
            models,
            key="gov_checklist_model",
            help="TRIPOD+AI for the treatment and forecast models, CLAIM for each imaging model (2D and 3D), DECIDE-AI for all.",
        )
        try:
            panel.render_checklist(resources.model_checklist(ref, model))
        except Exception as exc:  # noqa: BLE001 - a broken card or store: a message, never a traceback
            st.error(f"The checklist of {model} could not be filled: {exc}")
        clinic, audit_of = None, None
        if (
            model == "treatment"
        ):  # the loaded model, and the subgroup audit the page caches (on demand)
            try:
                clinic = resources.treatment_model(ref)
                audit_of = lambda: resources.treatment_subgroups(ref)  # noqa: E731 - one call, deferred
            except TreatmentModelError:
                pass
        panel.render_dossier(ref, model, auth.actor(), clinic, audit_of)

if audit_tab.open:
    with audit_tab:
        st.markdown("#### Treatment model on this clinic")
        try:
            with resources.working(
                "Auditing the treatment model by subgroup (once per state of the data)…"
            ):
                treatment_report = resources.treatment_subgroups(ref)
            panel.render_treatment_audit(treatment_report)
        except TreatmentModelError as exc:
            st.info(f"No treatment model to audit: {exc}")
        st.markdown("#### Imaging models on fresh phantoms")
        n = st.select_slider(
            "Phantoms per model",
            [100, 200, 400],
            value=200,
            key="gov_n",
            help="More phantoms: narrower intervals, slower.",
        )
        if st.toggle("Run the imaging subgroup audit", key="gov_run_imaging"):
            names = [c["name"] for c in resources.model_cards()]
            with resources.working(f"Reading {n} fresh phantoms per model…", expanded=True) as box:
                bar, reports = box.progress(0.0), []
                for i, name in enumerate(names):
                    bar.progress(i / len(names), text=f"{name} ({i + 1} of {len(names)})")
                    reports.append(resources.imaging_subgroups(name, n=n))
            for report in reports:
                panel.render_imaging_audit(report)
        else:
            st.caption(
                "Imaging audits generate and read fresh phantoms; switch on to compute them "
                "(cached afterwards; `oncolens validate subgroups --json` prints the same figures)."
            )

if saliency_tab.open:
    with saliency_tab:
        for card in resources.model_cards():
            panel.render_saliency(card.get("name"), resources.saliency_quality(card.get("name")))
        for entry in resources.volume_cards():
            panel.render_saliency(
                f"{entry['name']} (3D)",
                entry.get("saliency"),
                "python -m models.saliency.volume_quality --write-card",
            )

if trail_tab.open:
    with trail_tab:
        _, options = resources.audit_trail(ref)
        chosen = panel.audit_filters(options)
        events, _ = resources.audit_trail(ref, **chosen)
        events = auth.protect_ids(events, ref.path)
        st.caption(
            f"{len(events)} event(s) match. Patient ids are pseudonymised for the ethics board. "
            "`oncolens audit verify` checks the hash chain, as does the button below."
        )
        panel.render_verify(ref.path, auth.actor())
        if events.empty:
            filtered = bool(chosen["actions"] or chosen["actors"])
            st.info(
                "No audit event matches these filters: clear the action and user filters or widen the date range."
                if filtered
                else "No audit events in this range yet: sign-ins, patient views, AI reads shown "
                "and exports are recorded as they happen; widen the date range to see older ones."
            )
        else:
            st.dataframe(events, hide_index=True, width="stretch")
        if not events.empty and st.download_button(
            "Export CSV",
            events.to_csv(index=False).encode(),
            "oncolens_audit_trail.csv",
            "text/csv",
            key="gov_export",
        ):
            user, role = auth.actor()
            audit.record_event(
                ref.path,
                actor=user,
                role=role,
                action="export_audit_trail",
                details={"rows": len(events), **{k: str(v) for k, v in chosen.items()}},
            )

if decisions_tab.open:
    with decisions_tab:
        panel.render_decisions(resources.decision_rates(ref))

if quality_tab.open:
    with quality_tab:
        st.caption(
            "Checks of the store in the spirit of OHDSI's Data Quality Dashboard: completeness, "
            "conformance and plausibility, each with the share of failing rows it allows."
        )
        asked = panel.quality_rerun()
        shown = panel.render_quality(
            resources.data_quality(ref, asked),
            lambda name: resources.quality_failing_rows(ref, name, asked),
        )
        if (
            shown is not None
        ):  # patient-level rows, pseudonymised: who looked at which, once a session
            trail.shown(ref.path, "data_quality_rows_viewed", details={"check": shown})

if admin_tabs and admin_tabs[0].open:
    with admin_tabs[0]:
        panel.render_users(ref.path, lambda: resources.accounts(ref), auth.actor())

if data_tab.open:
    with data_tab:
        versions, usage = resources.model_registry(ref)
        lifecycle_panel.render_lineage(versions, usage, resources.governance_snapshot(ref))

if signoff_tab.open:
    with signoff_tab:
        lifecycle_panel.render_signoff(ref, resources.model_registry(ref)[0], auth.actor())

if drift_tab.open:
    with drift_tab:
        frequency = st.segmented_control(
            "Window of the images", ["month", "quarter", "year"], default="month", key="drift_freq"
        )
        with resources.working("Comparing each model's inputs with its validation…"):
            reports, drift_notes = resources.drift(ref, frequency or "month")
        lifecycle_panel.render_drift(reports, drift_notes)
