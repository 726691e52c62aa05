"""OncoLens Streamlit entry point: configure the page, route, and draw the shared sidebar.

Run with ``oncolens serve`` (or ``streamlit run dashboard/app.py``); the store
is ``$ONCOLENS_DB``. Pages live in ``app_pages/`` (not ``pages/``, which
Streamlit would treat as its older automatic multipage folder). This file only
configures and routes; each page calls library functions and renders.

Signed-out users get only the sign-in form (``auth.gate`` stops the run before
``st.navigation``). A signed-in user's navigation holds only the pages their
role may open (``auth.PAGES``), so a URL naming another page leads to Home; each
page checks the role again itself.
"""

from __future__ import annotations

import streamlit as st

from dashboard import resources
from dashboard.session import auth, state

st.set_page_config(page_title="OncoLens", page_icon=":material/biotech:", layout="wide")
session = auth.gate(resources.db_path())

home = st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True)
patient = st.Page("app_pages/patient.py", title="Patient", icon=":material/person:")
imaging = st.Page("app_pages/imaging.py", title="Imaging", icon=":material/radiology:")
worklist = st.Page("app_pages/worklist.py", title="Worklist", icon=":material/checklist:")
cohorts = st.Page("app_pages/cohorts.py", title="Cohorts", icon=":material/groups:")
governance = st.Page("app_pages/governance.py", title="Governance", icon=":material/policy:")

sections = {
    "OncoLens": {"home": home},
    "Care": {"patient": patient, "imaging": imaging, "worklist": worklist},
    "Research and oversight": {"cohorts": cohorts, "governance": governance},
}
allowed = {
    title: [page for name, page in pages.items() if auth.may_open(session.role, name)]
    for title, pages in sections.items()
}
current = st.navigation({title: pages for title, pages in allowed.items() if pages})
auth.sidebar(resources.db_path(), session)
if auth.may_open(session.role, "patient"):
    state.patient_picker(
        patient_page=patient, pages_with_patient=(patient, imaging), current=current
    )
st.sidebar.caption("Research and decision support, not a medical device.")
current.run()
