"""The Worklist page's freshness line: where the ranking came from, and a refresh when it is out of date.

Why a panel: the page reads a stored ranking (``analytics.worklist.stored``), and
stored risks go stale when records, the treatment model or "today" change. The
care team must never take stale risks for current ones, so anything but a
current stored ranking is said in words (with the reasons from
``WorklistStatus``), and a refresh is offered: a button here, or the command.
"""

from __future__ import annotations

import streamlit as st

from analytics import store
from dashboard import resources
from dashboard.session import auth, trail

SECONDS_PER_PATIENT = (
    0.0004  # full refresh on 2 cores: ~0.45 ms per eligible patient, ~2/3 eligible
)


def _duration(patients: int) -> str:
    seconds = 10 + patients * SECONDS_PER_PATIENT
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def _refresh(ref: resources.StoreRef, patients: int) -> None:
    """The button that ranks the stored worklist again, and the command that does the same."""
    if st.button(
        f"Refresh the worklist ({_duration(patients)} for {patients:,} patients)",
        key="worklist-refresh",
    ):
        try:
            with resources.working("Ranking every eligible patient by forecast risk…"):
                result = resources.refresh_worklist(ref)
        except store.StoreError as exc:
            st.error(f"The worklist could not be refreshed now: {exc}")
            return
        trail.record(
            ref.path,
            "worklist_refresh",
            details={
                "mode": result.mode,
                "entries": result.entries,
                "seconds": round(result.seconds, 1),
            },
        )
        st.rerun()
    st.caption(f"The same from a shell: `oncolens worklist --refresh --db {ref.path}`")


def show_freshness(ref: resources.StoreRef, view: resources.WorklistView) -> None:
    """Say where the rows come from; stops the page when there is nothing to show yet."""
    status = view.status
    at = "" if status.computed_at is None else f"{status.computed_at:%Y-%m-%d %H:%M}"
    if view.source == "stored":
        st.caption(f"Stored ranking computed {at}; imports and imaging ingest keep it current.")
        return
    why = "; ".join(status.reasons)
    if view.source == "on_the_fly":
        st.info(f"Ranked just now, because the stored worklist is out of date: {why}.")
    elif view.source == "stale":
        st.warning(
            f"**These risks are out of date** (computed {at}): {why}. The order below may no longer be "
            "the order of risk; refresh it."
        )
    else:
        st.warning(
            f"**The worklist has not been ranked for this store yet** ({status.patients:,} patients: too "
            "many to rank while the page waits)."
        )
    _refresh(ref, status.patients)
    if view.source == "missing":
        st.stop()


def review_line(ref: resources.StoreRef, person_id: int) -> None:
    """On the Patient page: when she was last reviewed from the worklist, and a button to mark a review now.

    Only roles with the worklist review; the row and its audit event are written together
    (``analytics.worklist.review``), so the worklist's "new since review" columns start over.
    """
    if not auth.may_open(auth.actor()[1], "worklist"):
        return
    last = resources.last_review(ref, person_id)
    said = (
        "Not reviewed from the worklist yet."
        if last is None
        else (f"Last reviewed {last[0]:%Y-%m-%d %H:%M} UTC by {last[1]}.")
    )
    left, right = st.columns([4, 1])
    left.caption(
        said + " Marking a review resets the worklist's “new since review” columns for her."
    )
    if right.button(
        "Mark reviewed",
        key=f"review-{person_id}",
        help="Record that you reviewed her worklist entry",
    ):
        username, role = auth.actor()
        try:
            resources.mark_reviewed(ref, person_id, username, role)
        except store.StoreError as exc:
            st.error(f"The review could not be recorded now: {exc}")
            return
        st.rerun()
