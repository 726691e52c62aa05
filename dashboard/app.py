"""OncoLens Streamlit entry point: configure the page, route, and draw the shared sidebar.

Run with ``oncolens serve`` (or ``streamlit run dashboard/app.py``); the store
is ``$ONCOLENS_DB``. Pages live in ``app_pages/`` (not ``pages/``, which
Streamlit would treat as its older automatic multipage folder). This file only
configures and routes; each page calls library functions and renders.

Signed-out users get only the sign-in form (``auth.gate`` stops the run before
``st.navigation``). A signed-in user's navigation holds only the pages their
role may open (``auth.PAGES``), so a URL naming another page leads to Home; each
page checks the role again itself.

Fail closed (issue 24): the page runs inside one container; anything it raises (a store held by
another process, a bug) empties that container, so nothing half-drawn stays on screen, and puts
one plain message in its place, never a traceback (``client.showErrorDetails`` is off as well).
The server log gets the exception's type and where it was raised, never its message or values.
"""

from __future__ import annotations

import logging
import secrets
import traceback

import duckdb
import streamlit as st

from analytics import store
from dashboard import resources
from dashboard.session import auth, state

_log = logging.getLogger("oncolens.app")


def _fail_closed(body: st.delta_generator.DeltaGenerator, exc: Exception) -> None:
    """Replace whatever the run drew with one message; log the type and frames only (no values)."""
    body.empty()
    reference = secrets.token_hex(4)
    frames = "; ".join(
        f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)
    )
    _log.error("page failed [%s]: %s at %s", reference, type(exc).__name__, frames)
    if isinstance(exc, store.StoreError | duckdb.Error):
        st.error(
            "**The clinic database cannot be read right now**, so nothing from it is shown. "
            "Another program (an import, a batch job) may be holding it: try again in a moment. "
            f"Reference {reference}."
        )
    else:
        st.error(
            "**This page could not be shown**, so nothing from it is. The error was recorded in "
            f"the server log under reference {reference}; tell your administrator if it persists."
        )


# What the pages import, slowest first (issue 23): loaded in the background from the first run on
# (``resources.warm_up``), so the sign-in form does not wait for torch, SciPy and Plotly.
WARM_UP = (
    "analytics.treatment.clinic",
    "analytics.forecast.patient",
    "dashboard.panels.treatment",
    "dashboard.panels.forecast",
    "dashboard.panels.care",
    "dashboard.panels.report",
    "dashboard.panels.worklist",
    "dashboard.figures.patient",
    "models.dicom.reader",
    "models.inference.registry",
    "models.inference.read",
    "models.saliency.methods",
    "models.radiomics",
    "models.deid.deidentify",
    "dashboard.panels.saliency",
    "dashboard.panels.deid",
    "dashboard.panels.pacs",
    # not the viewer component: declared outside the script's thread, its iframe stayed 0 px high
    "dashboard.panels.cohort",
    "dashboard.figures.cohort",
    "dashboard.panels.governance",
    "dashboard.panels.lifecycle",
    "dashboard.services.report",
)

st.set_page_config(page_title="OncoLens", page_icon=":material/biotech:", layout="wide")
_body = st.empty()
try:
    with _body.container():
        session = auth.gate(resources.db_path())
except Exception as _exc:  # the sign-in itself reads the store: fail closed there too
    _fail_closed(_body, _exc)
    st.stop()
finally:  # also when the gate stops the run: the sign-in form is drawn by then
    _warming = resources.warm_up(WARM_UP)

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
auth.idle_watch()  # clears the screen on the idle timeout, not only at the next click
st.sidebar.caption("Research and decision support, not a medical device.")
try:
    with _body.container():
        auth.sidebar(resources.db_path(), session)
        if auth.may_open(session.role, "patient"):
            state.patient_picker(
                patient_page=patient, pages_with_patient=(patient, imaging), current=current
            )
        if current is not home:  # Home needs none of it; the other pages wait for the imports
            _warming.join()
        current.run()
except Exception as _exc:
    _fail_closed(_body, _exc)
