"""The selected patient: where it lives, how it is chosen, and the once-per-session view audit.

Why here and typed: pages must not treat ``st.session_state`` as an untyped bag.
Everything the app keeps per session goes through the few functions below,
under keys that say what they hold.

- The URL (``?patient=ID``) is the source of truth, so a link reopens the same
  view. Streamlit drops the query string when the user switches page, so the
  last patient shown is also remembered in the session and put back in the URL
  by ``patient_choice``.
- The sidebar picker searches by id, MRN prefix, name or date of birth (a text box,
  never a selectbox of the whole clinic) and offers at most 20 matches, each with
  name, birth date, MRN and site so that two namesakes are told apart.
- Each patient's record is written to the audit trail once per session
  (``view_patient``), not on every rerun.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import streamlit as st

from analytics import store
from analytics.governance import audit
from dashboard import resources
from dashboard.session import auth

PATIENT_PARAM = "patient"

_LAST_PATIENT_KEY = "oncolens.last_patient_id"  # int: last patient shown in this session
_AUDITED_VIEWS_KEY = "oncolens.audited_patient_views"  # set[int]: patients whose view was audited
_SEARCH_KEY = "oncolens.patient_search_text"  # the picker's text box
_LAST_LOOK_KEY = (
    "oncolens.last_look"  # dict[int, datetime | None]: this user's previous look, per patient
)


@dataclass(frozen=True)
class PatientChoice:
    """The patient asked for by the URL: ``person_id`` when it parses, ``raw`` as written."""

    person_id: int | None
    raw: str | None

    @property
    def is_invalid(self) -> bool:
        """Something was asked for, but it is not a patient id."""
        return self.raw is not None and self.person_id is None


def parse_patient_id(raw: object) -> int | None:
    """A person id from URL text: a whole number (surrounding spaces allowed), else None."""
    text = str(raw).strip() if raw is not None else ""
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    return value if value < 2**63 else None


def patient_choice() -> PatientChoice:
    """The patient in the URL, or the last one shown in this session (put back in the URL)."""
    raw = st.query_params.get(PATIENT_PARAM)
    if raw is None:
        remembered = st.session_state.get(_LAST_PATIENT_KEY)
        if isinstance(remembered, int):
            st.query_params[PATIENT_PARAM] = str(remembered)
            return PatientChoice(remembered, str(remembered))
        return PatientChoice(None, None)
    return PatientChoice(parse_patient_id(raw), str(raw))


def select_patient(person_id: int) -> None:
    """Open ``person_id``: in the URL (shareable) and in the session (survives page switches)."""
    st.query_params[PATIENT_PARAM] = str(person_id)
    st.session_state[_LAST_PATIENT_KEY] = int(person_id)


def clear_patient() -> None:
    """Close the patient: pages fall back to their clinic-wide view."""
    st.query_params.pop(PATIENT_PARAM, None)
    st.session_state.pop(_LAST_PATIENT_KEY, None)


def last_look(db_path: str | Path, person_id: int) -> object:
    """When this user last looked at the patient before this visit (None: never), read once per session.

    Read before the visit's own view is audited and kept for the session, so "what changed
    since your last look" does not empty itself on the next rerun; only looks from before this
    session began count, so nothing this session wrote can stand in for the previous look.
    """
    looks: dict = st.session_state.setdefault(_LAST_LOOK_KEY, {})
    if int(person_id) not in looks:
        s = auth.session()
        started = (
            datetime.fromtimestamp(s.started, timezone.utc).replace(tzinfo=None)
            if s is not None and s.started
            else None
        )
        looks[int(person_id)] = resources.last_look(
            db_path, int(person_id), auth.actor()[0], before=started
        )
    return looks[int(person_id)]


def patient_shown(db_path: str | Path, person_id: int, page: str) -> None:
    """Remember the patient for other pages and audit the view once per session.

    Raises ``store.StoreError`` when the audit event cannot be written; the
    view then counts as not audited and is tried again on the next run.
    """
    st.session_state[_LAST_PATIENT_KEY] = int(person_id)
    audited: set[int] = st.session_state.setdefault(_AUDITED_VIEWS_KEY, set())
    if person_id in audited:
        return
    username, role = auth.actor()
    audit.record_event(
        db_path,
        actor=username,
        role=role,
        action="view_patient",
        subject=str(person_id),
        details={"page": page},
        wait_s=resources.READ_WAIT_S,
    )
    audited.add(int(person_id))


def patient_picker(
    patient_page: st.Page, pages_with_patient: Iterable[st.Page], current: st.Page
) -> None:
    """Sidebar search by id, MRN, name or date of birth; a chosen match opens on this page or on the Patient page."""
    with st.sidebar:
        st.subheader("Patient")
        choice = patient_choice()
        if choice.person_id is not None:
            st.caption(f"Open: patient id {choice.person_id}")
            if st.button("Clear patient", key="oncolens.clear_patient"):
                clear_patient()
                st.rerun()
        text = st.text_input(
            "Find by name, MRN, id or birth date",
            key=_SEARCH_KEY,
            placeholder="e.g. Lange Aisha, MRN00000042, 42, 1985-01-15",
            help="A whole number is a patient id (or MRN digits); YYYY-MM-DD a date of birth; "
            "otherwise the start of an MRN or of her given and family names.",
        )
        if not text.strip():
            return
        status = resources.store_status()
        if status.ref is None:
            st.caption("No database to search; see the Home page.")
            return
        try:
            matches = resources.search_patients(status.ref, text)
        except store.StoreError as exc:
            st.caption(f"Search failed: {exc}")
            return
        if matches.empty:
            st.caption(f"No patient found for “{text.strip()}” (name, MRN, id or YYYY-MM-DD).")
            return
        stay = current.url_path in {page.url_path for page in pages_with_patient}
        for row in matches.itertuples(index=False):
            born = (
                "" if pd.isna(row.birth_date) else f" · b. {pd.Timestamp(row.birth_date):%Y-%m-%d}"
            )
            label = f"{row.name}{born} · {row.mrn} · id {row.person_id} · {row.site}"
            if st.button(label, key=f"oncolens.pick_patient.{row.person_id}", width="stretch"):
                select_patient(int(row.person_id))
                if not stay:
                    st.switch_page(patient_page, query_params={PATIENT_PARAM: str(row.person_id)})
                st.rerun()
