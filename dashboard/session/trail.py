"""What the signed-in user was shown or did, written to the hash-chained audit trail.

Why a module: pages rerun on every widget change, so "an AI read was shown"
must be written once per session and content (``shown``), not once per rerun;
an export or a decision is written every time (``record``). The actor and role
come from the session (``auth.actor``). A store that cannot be written right
now does not stop the page: the event is tried again on the next rerun and the
page says so in a caption.

Subjects are patient ids (never names or MRNs); images are named by the sha256
of their bytes (``audit.inputs_hash``), which also links an explanation to the
read it explains.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from analytics import store
from analytics.governance import audit
from dashboard import resources
from dashboard.session import auth

_SHOWN_KEY = "oncolens.trail.shown"  # set[tuple]: what this session has already written as shown


def record(
    db_path: str | Path,
    action: str,
    *,
    subject: str | int | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    inputs_sha256: str | None = None,
    details: dict | None = None,
) -> bool:
    """Write one event now; False (with a caption on the page) when the store cannot be written."""
    username, role = auth.actor()
    try:
        audit.record_event(
            db_path,
            actor=username,
            role=role,
            action=action,
            subject=None if subject is None else str(subject),
            model_name=model_name,
            model_version=None if model_version is None else str(model_version),
            inputs_sha256=inputs_sha256,
            details=details,
            wait_s=resources.READ_WAIT_S,
        )
    except store.StoreError as exc:
        st.caption(f"Not yet written to the audit trail ({action}): {exc}")
        return False
    return True


def shown(
    db_path: str | Path,
    action: str,
    *,
    subject: str | int | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    inputs_sha256: str | None = None,
    details: dict | None = None,
) -> None:
    """``record`` once per session for the same action, subject, model, inputs and details."""
    key = (
        action,
        None if subject is None else str(subject),
        model_name,
        str(model_version),
        inputs_sha256,
        audit.canonical_json(details or {}),
    )
    seen: set[tuple] = st.session_state.setdefault(_SHOWN_KEY, set())
    if key in seen:
        return
    if record(
        db_path,
        action,
        subject=subject,
        model_name=model_name,
        model_version=model_version,
        inputs_sha256=inputs_sha256,
        details=details,
    ):
        seen.add(key)
