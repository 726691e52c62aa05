"""Patient: one patient's demographics, diagnosis, treatment options, timeline with forecasts, labs,
treatments, outcomes and imaging."""

from __future__ import annotations

import streamlit as st

from analytics import store
from analytics.patients import UnknownPatientError
from dashboard import resources
from dashboard.figures import formats
from dashboard.figures import patient as patient_figures
from dashboard.panels import care as care_panel
from dashboard.panels import forecast as forecast_panel
from dashboard.panels import report as report_panel
from dashboard.panels import treatment as treatment_panel
from dashboard.panels import worklist as worklist_panel
from dashboard.session import auth, state

auth.require_page("patient")
ref = resources.require_store()
choice = state.patient_choice()
st.title("Patient")
if choice.is_invalid:
    st.warning(
        f"“{choice.raw}” is not a patient id (a whole number). Search by name, MRN, id or birth date "
        "in the sidebar."
    )
    st.stop()
if choice.person_id is None:
    st.info(
        "Find a patient by name, MRN, id or birth date in the sidebar, or open one from the Worklist."
    )
    st.stop()
try:
    summary = resources.patient_summary(ref, choice.person_id)
except UnknownPatientError as exc:
    st.warning(f"{str(exc).capitalize()}. Check the id, or search by name or MRN in the sidebar.")
    st.stop()
try:  # this user's previous look, read before this visit's own view is recorded
    since = state.last_look(ref.path, summary.person_id)
except store.StoreError:
    since = None
try:
    state.patient_shown(ref.path, summary.person_id, page="patient")
except store.StoreError as exc:  # fail closed: a record whose view cannot be audited is not shown
    st.error(
        "This record is not shown because its view could not be written to the audit trail "
        f"({exc}). Try again in a moment."
    )
    st.stop()

demo, dx, period = summary.demographics, summary.diagnosis, summary.observation_period
st.header(f"{demo.mrn} · id {demo.person_id}")
worklist_panel.what_changed(ref, demo.person_id, since)
worklist_panel.review_line(ref, demo.person_id)
setting, scope = resources.care(ref, demo.person_id)
care_panel.banner(setting, scope)
a, b, c, d = st.columns(4)
a.metric(
    "Age at diagnosis",
    "unknown" if demo.age_at_diagnosis_years is None else f"{demo.age_at_diagnosis_years} y",
)
b.metric("Menopausal status", demo.menopausal_status)
c.metric("Site", demo.site)
d.metric(
    "Follow-up ends",
    "unknown" if period is None else f"{period.end_date:%Y-%m-%d}",
    help=None if period is None else f"reason: {period.end_reason.replace('_', ' ')}",
)

st.subheader("Diagnosis")
if dx is None:
    st.info(
        "No cancer diagnosis recorded for this patient: import it with `oncolens import` (docs/imports.md); "
        "treatment options and forecasts need it."
    )
else:
    st.caption(
        f"{dx.condition.replace('_', ' ')}, {dx.laterality}, diagnosed {dx.diagnosis_date:%Y-%m-%d}"
    )
    cols = st.columns(
        4
    )  # two rows of four: seven values in one row are cut off at 1366 px (docs/experience.md)
    cols[0].metric("Stage", dx.stage)
    cols[1].metric("Grade", dx.grade)
    cols[2].metric("Tumour size", f"{dx.tumour_size_mm:.0f} mm")
    cols[3].metric("Positive nodes", dx.positive_nodes)
    cols = st.columns(4)
    cols[0].metric(f"ER ({dx.er_fmol:g} fmol/mg)", "positive" if dx.er_positive else "negative")
    cols[1].metric(f"PR ({dx.pr_fmol:g} fmol/mg)", "positive" if dx.pr_positive else "negative")
    cols[2].metric("HER2", "positive" if dx.her2_positive else "negative")

treatment_panel.show(ref, summary, scope)
care_panel.course(ref, setting)

forecast_panel.show(ref, summary, setting, scope)
report_panel.show(ref, summary)
st.plotly_chart(resources.figure(patient_figures.lab_values_figure, summary.measurements))

st.subheader("Treatments")
if summary.treatments.empty:
    st.info(
        "No treatment recorded for this patient: import her treatment records with `oncolens import` "
        "(docs/imports.md)."
    )
else:
    st.dataframe(formats.fill_missing(summary.treatments), hide_index=True)

st.subheader("Outcome events")
if summary.outcome_events.empty:
    st.write("No recurrence or death recorded up to the end of follow-up.")
else:
    st.dataframe(formats.fill_missing(summary.outcome_events), hide_index=True)

st.subheader("Imaging studies")
if summary.imaging_studies.empty:
    st.info(
        "No imaging studies recorded for this patient: ingest her DICOM files with `oncolens ingest PATH` "
        "or pull a study from the PACS on the Imaging page."
    )
else:
    st.dataframe(formats.fill_missing(summary.imaging_studies), hide_index=True)
