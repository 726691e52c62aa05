"""Imaging: the selected patient's studies, or the clinic's most recent ones."""

from __future__ import annotations

import streamlit as st

from analytics import store
from analytics.patients import UnknownPatientError
from dashboard import resources, state

ref = resources.require_store()
choice = state.patient_choice()
st.title("Imaging")
st.info(
    "The AI read (class probabilities, lesion outline, saliency maps) arrives with the "
    "imaging issue; this page lists the studies on record.",
    icon=":material/construction:",
)
if choice.is_invalid:
    st.warning(f"“{choice.raw}” is not a patient id (a whole number). Search by MRN in the sidebar.")
elif choice.person_id is not None:
    try:
        summary = resources.patient_summary(ref, choice.person_id)
    except UnknownPatientError as exc:
        st.warning(f"{str(exc).capitalize()}. Check the id, or search by MRN in the sidebar.")
        st.stop()
    try:
        state.patient_shown(ref.path, summary.person_id, page="imaging")
    except store.StoreError as exc:
        st.warning(f"This view could not be written to the audit trail yet: {exc}")
    st.subheader(f"Studies of {summary.mrn} · id {summary.person_id}")
    if summary.imaging_studies.empty:
        st.write("No imaging studies recorded for this patient.")
    else:
        st.dataframe(summary.imaging_studies, hide_index=True)
    st.stop()

st.subheader("Most recent studies in the clinic")
st.caption("Choose a patient in the sidebar to see only her studies.")
st.dataframe(resources.recent_imaging_studies(ref), hide_index=True)
