"""De-identification of an uploaded DICOM file on the Imaging page, and its report.

Why here and not after the read: an upload is de-identified (PS3.15 Annex E
Basic Profile, the store's key, ``models.deid.deidentify``) before anything decodes,
caches or shows it, so no identifier reaches the page, Streamlit's caches or
the AI read. The store's key is used so that an uploaded study maps to the
same UIDs as the same study ingested with ``oncolens ingest``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from models.deid import deidentify as deid


def deidentify_upload(store_path: str, data: bytes) -> tuple[bytes, deid.DeidReport]:
    """The uploaded bytes, de-identified with the store's key; raises ``deid.DeidentificationError``."""
    key = deid.load_or_create_key(deid.key_path_for_store(store_path))
    ds, report = deid.deidentify(data, key)
    return deid.to_bytes(ds), report


def render_report(report: deid.DeidReport) -> None:
    """What was removed or replaced (attributes and actions, never values), and any burned-in warning."""
    counts = report.counts()
    removed, emptied, dummy, uids = (counts.get(k, 0) for k in ("X", "Z", "D", "U"))
    st.success(
        f"De-identified before display (DICOM PS3.15 Annex E Basic Profile): {removed} attribute(s) removed, "
        f"{emptied} emptied, {dummy} replaced by dummies, {uids} UID(s) remapped with this store's key; "
        "private tags removed. The uploaded original is not kept.",
        icon=":material/shield_person:",
    )
    for warning in report.warnings:
        st.warning(f"This image {warning}.", icon=":material/warning:")
    with st.expander("De-identification report (what changed, never the values)"):
        st.dataframe(pd.DataFrame(report.as_dict()["changes"]), hide_index=True, width="stretch")
