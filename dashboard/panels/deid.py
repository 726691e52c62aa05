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

from analytics.imaging.queries import identity_mismatches as _mismatches
from dashboard.session import trail
from models.deid import deidentify as deid
from models.dicom import reader as dicom


def deidentify_upload(store_path: str, data: bytes) -> tuple[bytes, deid.DeidReport]:
    """The uploaded bytes, de-identified with the store's key; raises ``deid.DeidentificationError``."""
    key = deid.load_or_create_key(deid.key_path_for_store(store_path))
    ds, report = deid.deidentify(data, key)
    return deid.to_bytes(ds), report


def identity_mismatches(data: bytes, identity: dict[str, str | None]) -> list[str]:
    """Which identifiers of the uploaded file contradict the open patient, read before de-identification.

    Raises ``dicom.DicomReadError`` for a file that is not DICOM.
    """
    header = dicom.read_header(data)
    return _mismatches(
        identity,
        patient_id=str(getattr(header, "PatientID", "") or ""),
        patient_name=str(getattr(header, "PatientName", "") or ""),
        birth_date=str(getattr(header, "PatientBirthDate", "") or ""),
        sex=str(getattr(header, "PatientSex", "") or ""),
    )


def confirm_identity(
    store_path: str,
    data: bytes,
    person_id: int,
    mismatched: list[str],
    *,
    upload_id: str | None = None,
    files: int = 1,
) -> bool:
    """Refuse an upload whose identifiers do not match the open patient unless the user confirms.

    ``files``: how many files the confirmation covers (the files of a series or zip that were
    checked), so the warning and the checkbox name what was uploaded: "this file" / "this image"
    for one, "the N files of this upload" for several, where the user would otherwise wonder
    whether the tick covers the one file named or the whole upload. The confirmation is written
    to the audit trail (who, which patient, which fields differed, the file's hash, and
    ``upload_id``: the id the upload's viewing event carries too, so the two can be joined; never
    the identifiers themselves). Returns whether the page may go on.
    """
    # lazy: hashlib is imported only when this is used (start-up time)
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    if files > 1:
        # "some or all": the counts after it say how many differ (3 of 94, say)
        subject = f"Some or all of the {files} files of this upload may belong to another patient."
        unless = (
            "None of them is shown or read unless you confirm that they belong to this patient."
        )
        label = f"I have checked: these {files} files belong to the open patient"
    else:
        subject = "This file may belong to another patient."
        unless = "It is not shown or read unless you confirm that it belongs to this patient."
        label = "I have checked: this image belongs to the open patient"
    st.error(
        f"{subject} Not matching the open patient (checked before de-identification): "
        + ", ".join(mismatched)
        + f". {unless}",
        icon=":material/person_alert:",
    )
    key = f"imaging_identity_ok_{digest[:16]}_{person_id}"
    if not st.checkbox(label, key=key, value=False):
        return False
    trail.shown(
        store_path,
        "upload_identity_override",
        subject=int(person_id),
        inputs_sha256=digest,
        details={"mismatched": list(mismatched)} | ({"upload_id": upload_id} if upload_id else {}),
    )
    st.warning(
        "Shown under the open patient on your confirmation (recorded in the audit trail).",
        icon=":material/how_to_reg:",
    )
    return True


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
