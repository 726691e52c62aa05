"""The Imaging page's PACS browser: search the hospital's archive over DICOMweb, pull a study, read it.

Same code as ``oncolens ingest --dicomweb`` (``dashboard.services.pacs_ingest``). The
PACS is configured in ``.streamlit/secrets.toml`` (``[pacs]`` url, username,
password) or the environment (``ONCOLENS_PACS_*``); without either the panel
says how to configure it and shows nothing else. Search results show what the
PACS returns for the study (the user is a clinician on the hospital network),
but only de-identified copies are filed in the store.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import resources
from dashboard.figures import patient as patient_figures
from dashboard.session import auth, signoff
from models import pacs

MODALITIES = ["", "MG", "MR", "CT", "US", "PT"]


def _config() -> pacs.PacsConfig | None:
    try:
        secrets = dict(st.secrets["pacs"]) if "pacs" in st.secrets else None
    except Exception:  # noqa: BLE001 - no secrets file at all
        secrets = None
    try:
        return pacs.PacsConfig.resolve(secrets=secrets)
    except pacs.PacsNotConfiguredError:
        return None


def render(ref: resources.StoreRef) -> None:
    """Draw the browser (inside an expander, next to the upload)."""
    with st.expander("Pull a study from the PACS (DICOMweb)"):
        config = _config()
        if config is None:
            st.info(
                "No PACS configured. Set `[pacs]` url, username and password in `.streamlit/secrets.toml` "
                "or `ONCOLENS_PACS_URL`, `ONCOLENS_PACS_USER`, `ONCOLENS_PACS_PASSWORD` (docs/hospital.md)."
            )
            return
        with st.form("oncolens.pacs.search"):
            # two by two: the panel sits beside the image picker (a narrow column)
            a, b = st.columns(2)
            c, d = st.columns(2)
            today = dt.date.today()
            date_from = a.date_input("From", value=today - dt.timedelta(days=30))
            date_to = b.date_input("To", value=today)
            modality = c.selectbox("Modality", MODALITIES)
            accession = d.text_input("Accession")
            searched = st.form_submit_button("Search")
        if searched:
            try:
                client = pacs.connect(config)
                st.session_state["oncolens.pacs.results"] = pacs.search_studies(
                    client,
                    date_from=date_from,
                    date_to=date_to,
                    modality=modality or None,
                    accession=accession or None,
                )
            except pacs.PacsError as exc:
                st.error(str(exc))
                return
        results = st.session_state.get("oncolens.pacs.results")
        if not results:
            if results is not None:
                st.info("No study matches.")
            return
        table = pd.DataFrame(results)[
            [
                "StudyDate",
                "ModalitiesInStudy",
                "AccessionNumber",
                "StudyDescription",
                "NumberOfStudyRelatedInstances",
                "StudyInstanceUID",
            ]
        ]
        st.dataframe(table, hide_index=True)
        uid = st.selectbox(
            "Study",
            [r["StudyInstanceUID"] for r in results],
            format_func=lambda u: next(
                f"{r['StudyDate']} {r['AccessionNumber'] or ''} {'/'.join(r['ModalitiesInStudy'])}"
                for r in results
                if r["StudyInstanceUID"] == u
            ),
        )
        send = st.checkbox(
            "Send the AI read back to the PACS (DICOM SEG and SR)",
            help="Images: a SEG of the outline and a TID 1500 SR. Series read in 3D: a multi-frame "
            "SEG (one segment per lesion) and an SR with each lesion's volume and RECIST longest "
            "axial diameter. Research use; every sending is written to the audit trail.",
        )
        if st.button("Pull, de-identify and read"):
            from dashboard.services.pacs_ingest import (  # lazy: only this section needs it; the app opens its first page without it
                PacsIngestError,
                ingest_from_pacs,
            )

            user, role = auth.actor()
            try:
                with st.spinner("Pulling the study..."):
                    report = ingest_from_pacs(
                        ref.path,
                        config,
                        resources.imaging_model,
                        study_uids=[uid],
                        send_results=send,
                        actor=user,
                        role=role,
                    )
            except (pacs.PacsError, PacsIngestError) as exc:
                st.error(str(exc))
                return
            series = len(report.volumes)
            st.success(
                f"Filed {len(report.stored)} image(s)"
                + (
                    f", of which {series} series are volumes (each offered once under "
                    "“Image or series”, for its 3D read)"
                    if series
                    else ""
                )
                + f"; {len(report.failed)} could not be filed."
            )
            for entry in report.failed:
                st.warning(entry["error"])
            for entry in report.stored:
                if entry.get("send_error"):
                    st.warning(f"Results not sent: {entry['send_error']}")
            for volume in report.volumes:
                st.caption(_volume_line(volume))


def _volume_line(entry: dict) -> str:
    """One line per series read in 3D by a pull: the read, and what went back to the PACS."""
    if "note" in entry:
        return f"Series not read in 3D: {entry['note']}"
    if entry.get("refused"):
        return f"3D read refused by the input check: {entry['refused']}"
    if entry.get("withheld"):  # the ethics board's sign-off (lifecycle.signed_off_entry): not sent
        return f"3D read not shown and not sent to the PACS: {entry['withheld']}"
    lesion = entry.get("lesion")
    what = (
        f"{entry['label']}, largest {lesion['volume_ml']:.2f} mL, "
        f"{lesion['longest_axial_diameter_mm']:.1f} mm"
        if lesion
        else str(entry["label"])
    )
    sent = (
        "; SEG and SR sent to the PACS"
        if entry.get("sent")
        else f"; not sent: {entry['send_error']}"
        if entry.get("send_error")
        else ""
    )
    return f"3D read ({entry['model']} {entry['model_version']}, research use): {what}{sent}"


def volume_reads(ref: resources.StoreRef, person_id: int) -> None:
    """Her series read in 3D, and how their SEG and SR reach the PACS (the pull above, with
    "Send the AI read back"): they must reference the hospital's own images, and OncoLens keeps
    only de-identified copies, so they are built while the pulled originals are at hand."""
    reads, lesions = resources.volume_reads(ref, person_id)
    if reads.empty:
        return
    # the ethics board's sign-off of each 3D model version (a banner, or its reads left out)
    reads, _ = signoff.gate_reads(ref, reads, lesions, subject=person_id)
    if reads.empty:
        return
    with st.expander(f"Series read in 3D ({len(reads)})"):
        st.caption(
            "AI, research use, not a medical device. A series of 3 or more parallel positioned "
            "images is read once by the 3D model (not slice by slice) and offered once under "
            "“Image or series” above, to open in the viewer; each lesion's volume and RECIST "
            "longest axial diameter are on the Patient page's timeline. Its DICOM SEG (one segment "
            "per lesion) and SR (TID 1500: volume and diameter per lesion) go to the PACS when the "
            "study is pulled above with “Send the AI read back to the PACS”; each sending is "
            "written to the audit trail."
        )
        table = patient_figures.volume_reads_table(
            reads,
            (
                "study_date", "modality", "model_name", "model_version", "read", "lesions",
                "total_volume_ml", "input_check",
            ),
        )  # fmt: skip
        st.dataframe(table, hide_index=True)
