"""The ethics board's sign-off above every model output on a page: a banner, or the output withheld.

Why one function: the Imaging read, the Patient page's treatment options and forecast, and the
report button must say the same thing about the same model version. ``gate`` shows nothing for an
approved version, a warning for one not approved (not reviewed or rejected, with who, when and
the comment), and, where the admin requires approval, an error in place of the output; the
caller then draws nothing of it (and the withholding is audited once per session).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from dashboard import resources
from dashboard.session import trail


def gate(
    ref: resources.StoreRef,
    model_name: str,
    version: str | None,
    *,
    subject: int | str | None = None,
) -> bool:
    """Show the version's sign-off banner; False when its output must be withheld."""
    if version is None:
        return True  # an output with no model version (a per-patient fit) has nothing to approve
    status = resources.approval(ref, model_name, str(version))
    message = status.banner()
    if message is None:
        return True
    if status.withheld:
        st.error(message, icon=":material/gpp_bad:")
        trail.shown(
            ref.path,
            "output_withheld",
            subject=subject,
            model_name=model_name,
            model_version=str(version),
            details={"status": status.status},
        )
        return False
    st.warning(message, icon=":material/gpp_maybe:")
    return True


def gate_view(
    ref: resources.StoreRef, view: resources.SeriesView, *, subject: int | str | None = None
) -> resources.SeriesView:
    """A series' 3D read behind the same gate as a 2D read (issue 21): its model's banner, and
    where approval is required and not given, the view without its read (the volume is still
    shown; no outline, label, measurement or saliency map). A refusal is not a model output and
    passes, as for 2D. The version id is the bundle's pinned sha256 (``resources.version_id``)."""
    read = view.read
    if read is None or read.refused:
        return view
    if gate(ref, read.model, read.model_version, subject=subject):
        return view
    # no second box: the error above says why there is no read (the image stays high on screen)
    return dataclasses.replace(view, read=None, note=None)


def gate_reads(
    ref: resources.StoreRef,
    reads: pd.DataFrame,
    lesions: pd.DataFrame,
    *,
    subject: int | str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored 3D reads (``analytics.imaging.volumes.patient_volume_reads`` and its lesions) behind
    the gate: one banner per model version, and where approval is required the rows of versions
    not approved are left out, as are rows made by other weights than the approved ones (a read
    stored before a retraining under the same version string: the worklist's rule for 2D reads)."""
    if reads.empty:
        return reads, lesions
    keep = pd.Series(True, index=reads.index)
    for (name, version), rows in reads.groupby(["model_name", "model_version"], sort=True):
        refused = rows["refused"].notna() & (rows["refused"].astype(str) != "")
        if refused.all():
            continue  # refusals only: nothing of the model's output is shown
        if not gate(ref, str(name), str(version), subject=subject):
            keep[rows.index[~refused]] = False
            continue
        status = resources.approval(ref, str(name), str(version))
        if status.required and "weights_sha256" in rows:
            other = rows["weights_sha256"].astype(str) != str(status.version_id)
            keep[rows.index[other & ~refused]] = False
    kept = reads[keep]
    if not lesions.empty:  # a lesion belongs to its read by series and model
        pairs = set(zip(kept["series_uid"], kept["model_name"], strict=True))
        lesions = lesions[
            [p in pairs for p in zip(lesions["series_uid"], lesions["model_name"], strict=True)]
        ]
    return kept, lesions
