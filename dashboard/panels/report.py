"""The Patient page's tumour-board report: one button builds the PDF, a second downloads it.

Same code as ``oncolens report`` (``dashboard.services.report``), given the app's loaded treatment
model so the PDF's recommendation is the one the page shows. Pseudonymised unless
the signed-in role may see patient identities (``auth.sees_patient_ids``) and
the user ticks the box. Building takes several seconds (the AI reads, the
saliency maps, the figures), so it runs on request, not on every rerun; each
build is audited (``tumour_board_report``). The section is a fragment (the button reruns it, not the
page), and its key images come through the app's caches (``_reads``), as the Imaging page's do.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from analytics import store
from analytics.patients import PatientSummary
from analytics.treatment.model.files import TreatmentModelError
from dashboard import resources
from dashboard.figures import static as static_figures
from dashboard.session import auth

KEY = "oncolens.report.pdf"


def _reads(path: Path) -> tuple:
    """The report's read of a key image through the app's caches (``report.read_and_explain``'s
    calls, the same results): an image the Imaging page or an earlier report read and explained is
    not read again (issue 23). The Grad-CAM target is the AI read's label, which is the class the
    report's default explains (the argmax of the same logits), and the Imaging page's default."""
    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.services.report import SALIENCY_METHOD
    from models.inference.read import (  # lazy: only this section needs it (torch)
        model_for,
    )

    data = Path(path).read_bytes()
    image = resources.read_image(data)
    model = model_for(image, resources.imaging_model)
    ai = resources.ai_read(data, 0, image, model.name).require_accepted()
    target = model.labels.index(ai.label)
    return (
        image,
        model,
        ai,
        resources.explanation(data, 0, image, model.name, SALIENCY_METHOD, target),
    )


def show(ref: resources.StoreRef, summary: PatientSummary) -> None:
    st.subheader("Tumour-board report")
    # the PDF's figures are drawn by a browser; start it now, in the background, and keep it, so
    # that "Prepare the PDF" does not wait for it to start (most of the report's time, issue 23)
    static_figures.keep_warm()
    _build(ref, summary)


@st.fragment
def _build(ref: resources.StoreRef, summary: PatientSummary) -> None:
    """The checkbox, the button and the download: a fragment, so that "Prepare the PDF" reruns this
    section alone, not the whole Patient page (seconds of it, issue 23)."""
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.forecast.patient import ForecastError
    from dashboard.services.report import report_bytes  # (the same)

    user, role = auth.actor()
    names = auth.sees_patient_ids(role) and st.checkbox(
        "Include the patient's name and MRN",
        value=False,
        key="oncolens.report.names",
        help="Off: the report carries a pseudonym only, and can be shared outside the care team.",
    )
    if st.button("Prepare the PDF", key="oncolens.report.build"):
        try:
            clinic = resources.treatment_model(ref)
        except TreatmentModelError:
            clinic = None  # the report says why there is no recommendation
        try:  # the page's forecast (cached): not fitted a second time for the PDF (issue 23)
            forecast = resources.patient_forecast(ref, summary.person_id)
        except (ForecastError, LookupError, store.StoreError):
            forecast = None  # the report tries again and says why there is none
        with st.spinner("Building the report (AI reads, saliency, figures)..."):
            st.session_state[KEY] = (
                summary.person_id,
                bool(names),
                report_bytes(
                    ref.path,
                    summary.person_id,
                    include_names=bool(names),
                    actor=user,
                    role=role,
                    clinic=clinic,
                    forecast=forecast,
                    load=resources.imaging_model,  # loaded once per process, not per report
                    reads=_reads,  # the app's cached reads and maps
                ),
            )
    held = st.session_state.get(KEY)
    if held and held[0] == summary.person_id:
        st.download_button(
            "Download the tumour-board report (PDF)",
            held[2],
            mime="application/pdf",
            file_name=f"tumour-board-{'named' if held[1] else 'pseudonymised'}.pdf",
        )
