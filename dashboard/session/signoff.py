"""The ethics board's sign-off above every model output on a page: a banner, or the output withheld.

Why one function: the Imaging read, the Patient page's treatment options and forecast, and the
report button must say the same thing about the same model version. ``gate`` shows nothing for an
approved version, a warning for one not approved (not reviewed or rejected, with who, when and
the comment), and, where the admin requires approval, an error in place of the output; the
caller then draws nothing of it (and the withholding is audited once per session).
"""

from __future__ import annotations

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
