"""OncoLens Streamlit entry point: configure the page, route, and draw the shared sidebar.

Run with ``oncolens serve`` (or ``streamlit run dashboard/app.py``); the store
is ``$ONCOLENS_DB``. Pages live in ``app_pages/`` (not ``pages/``, which
Streamlit would treat as its older automatic multipage folder). This file only
configures and routes; each page calls library functions and renders.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state

st.set_page_config(page_title="OncoLens", page_icon=":material/biotech:", layout="wide")

home = st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True)
patient = st.Page("app_pages/patient.py", title="Patient", icon=":material/person:")
imaging = st.Page("app_pages/imaging.py", title="Imaging", icon=":material/radiology:")
worklist = st.Page("app_pages/worklist.py", title="Worklist", icon=":material/checklist:")
cohorts = st.Page("app_pages/cohorts.py", title="Cohorts", icon=":material/groups:")
governance = st.Page("app_pages/governance.py", title="Governance", icon=":material/policy:")

current = st.navigation(
    {
        "OncoLens": [home],
        "Care": [patient, imaging, worklist],
        "Research and oversight": [cohorts, governance],
    }
)
state.patient_picker(patient_page=patient, pages_with_patient=(patient, imaging), current=current)
st.sidebar.caption("Research and decision support, not a medical device.")
current.run()
