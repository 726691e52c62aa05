"""Home: what OncoLens is, what it is not, where each role starts, and whether the store is usable."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, resources

auth.require_page("home")
st.title("OncoLens")
st.markdown(
    "Clinical decision support for oncology imaging: one patient's images, history and "
    "measurements on one screen; a worklist for the care team; cohort curves for research; "
    "and the audit trail an ethics board asks for."
)
st.warning(
    "**Research and decision support, not a medical device.** OncoLens is not certified for "
    "diagnosis or treatment decisions. Every output is advice for a qualified clinician, who "
    "decides. The demo clinic is simulated: no real patient is shown.",
    icon=":material/info:",
)

st.subheader("Where to start")
roles = (
    ("Oncologist", "app_pages/patient.py", "one patient: history, lesion size, labs, imaging"),
    ("Radiologist", "app_pages/imaging.py", "imaging studies of a patient or the clinic"),
    ("Care team", "app_pages/worklist.py", "patients ranked by forecast risk over the next six months"),
    ("Researcher", "app_pages/cohorts.py", "cohort distributions and Kaplan–Meier curves"),
    ("Ethics board", "app_pages/governance.py", "schema, data provenance and the audit trail"),
)
roles = tuple(r for r in roles if auth.may_open(auth.actor()[1], r[1].removeprefix("app_pages/").removesuffix(".py")))
for column, (role, page, what) in zip(st.columns(len(roles)), roles, strict=True):
    with column:
        st.page_link(page, label=f"**{role}**")
        st.caption(what)

st.subheader("Store")
status = resources.store_status()
if not status.ok:
    resources.show_store_problem(status)
else:
    a, b, c, d = st.columns(4)
    a.metric("Patients", f"{status.patients:,}")
    b.metric("Data cut-off", status.metadata_value("data_cutoff"))
    c.metric("Clinic", status.metadata_value("kind"))
    d.metric("Schema version", status.schema_version)
    st.caption(f"Database: `{status.path}`")
