"""The Worklist page's sections: the freshness line, the bucket counts, the table a nurse reads, and
the review form on the Patient page.

Why a panel: the page reads a stored ranking (``analytics.worklist.stored``), and
stored risks go stale when records, the treatment model or "today" change. The
care team must never take stale risks for current ones, so anything but a
current stored ranking is said in words (with the reasons from
``WorklistStatus``), and a refresh is offered: a button here, or the command.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics import store
from analytics.worklist import buckets as worklist_buckets
from analytics.worklist import changes as record_changes
from analytics.worklist.ranking import WorklistPage
from analytics.worklist.review import NOTE_MAX_CHARS, ReviewError
from dashboard import resources
from dashboard.figures import patient as patient_figures
from dashboard.services import lifecycle
from dashboard.session import auth, trail

MISSING = "–"  # what an empty cell says (never "None")
# The table's columns, in the order a nurse reads them: who, why, what to do, then the numbers.
TABLE_COLUMNS = (
    "open",
    "Bucket",
    "Name",
    "Reason",
    "6-mo risk",
    "Assigned to",
    "Last review",
    "Note",
    "MRN",
    "Born",
    "Site",
    "Last imaging",
    "Latest lesion (mm)",
)

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


BUCKET_HELP = {
    "act_now": "New RECIST progression, recurrence or suspicious AI read since her last review "
    f"(never reviewed: in the {worklist_buckets.NEVER_REVIEWED_WINDOW_DAYS} days before the data's today)",
    "due": "Her imaging is overdue for her own usual interval",
    "by_risk": "Everyone else, highest six-month forecast risk first",
}


def bucket_label(bucket: str, counts: dict[str, int]) -> str:
    """A bucket's title with how many patients it holds now, e.g. "Act now · 16"."""
    if bucket not in counts:
        return worklist_buckets.BUCKET_TITLES.get(bucket, bucket)
    return f"{worklist_buckets.BUCKET_TITLES[bucket]} · {counts[bucket]:,}"


def _text(value, fmt: str = "{}") -> str:
    return MISSING if value is None or pd.isna(value) else fmt.format(value)


def display_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The page's rows as the table shows them: text with "–" for what is missing, never "None".

    Why text: a Streamlit table writes a missing value as "None", which a nurse reads as a value.
    ``person_id`` stays (a number, never missing) for the row selection.
    """
    last_review = [
        "never" if at is None or pd.isna(at) else f"{pd.Timestamp(at):%Y-%m-%d} by {who or MISSING}"
        for at, who in zip(rows["last_reviewed_at"], rows["reviewed_by"], strict=True)
    ]
    return pd.DataFrame(
        {
            "person_id": rows["person_id"].astype("int64"),
            "open": [f"patient?patient={int(pid)}" for pid in rows["person_id"]],
            "Bucket": [worklist_buckets.BUCKET_TITLES.get(b, MISSING) for b in rows["bucket"]],
            "Name": [_text(v) for v in rows["name"]],
            "Reason": [_text(v) for v in rows["reason"]],
            "6-mo risk": [_text(v, "{:.0%}") for v in rows["risk_6m"]],
            "Assigned to": [_text(v) for v in rows["assignee"]],
            "Last review": last_review,
            "Note": [_text(v) for v in rows["review_note"]],
            "MRN": [_text(v) for v in rows["mrn"]],
            "Born": [
                MISSING if v is None or pd.isna(v) else f"{pd.Timestamp(v):%Y-%m-%d}"
                for v in rows["birth_date"]
            ],
            "Site": [_text(v) for v in rows["site"]],
            "Last imaging": [
                MISSING if v is None or pd.isna(v) else f"{pd.Timestamp(v):%Y-%m-%d}"
                for v in rows["last_imaging_date"]
            ],
            "Latest lesion (mm)": [_text(v, "{:.1f}") for v in rows["latest_mm"]],
        }
    )


def without_risk(table: pd.DataFrame) -> pd.DataFrame:
    """``display_rows`` with the forecast's output withheld: the admin requires the ethics board's
    sign-off and the version that ranked the list has none (``session.signoff.gate`` says so above).

    The rows come without risks and *by risk* in the fallback order (``buckets.FALLBACK_ORDER``),
    each by-risk reason saying so; the risk column reads "withheld" rather than blank.
    """
    return table.assign(**{"6-mo risk": "withheld"})


def show_read_signoff(ref: resources.StoreRef, page: WorklistPage, risk_withheld: bool) -> None:
    """What the ethics board's sign-off does to this list (``buckets.SignOff``): AI reads of imaging
    versions not approved, withheld from *act now* where approval is required, else marked; and
    the by-risk order. Said only where the (filtered) list has such reads."""
    counts = page.signoff_counts
    unapproved = [
        f"{name} {version} ({status.short_status})"
        for (name, version), status in resources.imaging_approvals(ref).items()
        if not status.approved
    ]
    pending = " and ".join(unapproved) or "a model version with no card"
    verb = "are" if len(unapproved) > 1 else "is"

    def patients(n: int) -> str:
        return f"{n:,} patient{'' if n == 1 else 's'}"

    if counts.get("withheld"):
        st.error(
            f"AI reads of {patients(counts['withheld'])} are withheld: {pending} {verb} not approved by the "
            "ethics board for the weights in use, and this installation shows only approved output. "
            "These reads do not put a patient in *act now* and are not quoted.",
            icon=":material/gpp_bad:",
        )
    elif counts.get("not_approved"):
        st.warning(
            f"AI reads of {patients(counts['not_approved'])} come from {pending}, not approved by the "
            "ethics board for the weights in use: they still count for *act now* and are quoted with "
            "“model not approved”.",
            icon=":material/gpp_maybe:",
        )
    if risk_withheld:
        st.caption(
            "While the forecast is withheld, *by risk* is listed by "
            f"{worklist_buckets.FALLBACK_ORDER}, not by risk."
        )


def review_line(ref: resources.StoreRef, person_id: int) -> None:
    """On the Patient page: her last worklist review, and a form to mark one now with a note and an assignee.

    Only roles with the worklist review; the row and its audit event are written together
    (``analytics.worklist.review``), so she leaves the worklist's *act now* until something new.
    """
    if not auth.may_open(auth.actor()[1], "worklist"):
        return
    last = resources.last_review(ref, person_id)
    said = (
        "Not reviewed from the worklist yet."
        if last is None
        else (f"Last reviewed {last[0]:%Y-%m-%d %H:%M} UTC by {last[1]}.")
    )
    with st.expander(f"Worklist review · {said}", expanded=False):
        st.caption(
            "Marking a review moves her out of the worklist's *act now* until something new arrives "
            "(a reading, a recurrence, a suspicious AI read). The note stays in the store, not in the "
            "audit trail."
        )
        with st.form(f"review-{person_id}", clear_on_submit=True, border=False):
            note = st.text_input(
                "Note (optional)",
                max_chars=NOTE_MAX_CHARS,
                placeholder="e.g. CT booked for 12 July",
            )
            keep = "(keep as is)"
            nobody = "(nobody)"
            assignee = st.selectbox(
                "Assign to", [keep, nobody, *resources.assignable_users(ref)], index=0
            )
            submitted = st.form_submit_button("Mark reviewed", type="primary")
    if not submitted:
        return
    username, role = auth.actor()
    try:
        resources.mark_reviewed(
            ref,
            person_id,
            username,
            role,
            note=note,
            assignee=None if assignee == keep else ("" if assignee == nobody else assignee),
        )
    except (store.StoreError, ReviewError) as exc:
        st.error(f"The review could not be recorded: {exc}")
        return
    st.rerun()


_CONCEPTS = {"lesion_longest_diameter": "lesion (longest diameter)", **patient_figures.LAB_LABELS}


def _change_lines(changes) -> list[str]:
    """One line per change, newest first within each kind (readings, AI reads, events, decisions)."""
    lines = []
    for row in changes.events.itertuples(index=False):
        lines.append(
            f"**{row.event_type.capitalize()}** recorded {pd.Timestamp(row.event_date):%Y-%m-%d}"
        )
    for row in changes.ai_reads.itertuples(index=False):
        when = f"on {pd.Timestamp(row.created_at):%Y-%m-%d %H:%M} UTC"
        # kept where approval is not required (``_signed_off``), and said so as the banners do
        if getattr(row, "approved", True) is False:
            when += " (model version not approved by the ethics board)"
        if getattr(row, "volume_read", False):
            # a 3D read: what it measured, and which study; its voxel probability is not calibrated
            volume = (
                f", {row.total_volume_ml:.2f} mL in total"
                if row.predicted_class == "lesion" and pd.notna(row.total_volume_ml)
                else ""
            )
            lines.append(
                f"3D AI read **{row.predicted_class}**{volume} ({row.model_name}, series of the "
                f"study of {pd.Timestamp(row.study_date):%Y-%m-%d}) {when}"
            )
        else:
            lines.append(
                f"AI read **{row.predicted_class}** ({row.probability:.0%} calibrated, "
                f"{row.model_name}) {when}"
            )
    for row in changes.readings.itertuples(index=False):
        concept = _CONCEPTS.get(row.concept, str(row.concept).replace("_", " "))
        lines.append(
            f"{concept}: {row.value:g} {row.unit} on {pd.Timestamp(row.measurement_date):%Y-%m-%d}"
        )
    for row in changes.decisions.itertuples(index=False):
        lines.append(
            f"Treatment decision: **{str(row.chosen).replace('_', ' + ')}** by {row.actor} "
            f"on {pd.Timestamp(row.decided_at):%Y-%m-%d %H:%M} UTC"
        )
    return lines


def _signed_off(ref: resources.StoreRef, changes: record_changes.RecordChanges):
    """Its AI reads behind the ethics board's sign-off, as on the Imaging page
    (``signoff.gate_reads``) and the worklist: the sign-off of each version's current weights;
    returns the gated changes and how many reads were left out."""
    statuses = {k: resources.approval(ref, *k) for k in record_changes.read_versions(changes)}
    required = any(status.required for status in statuses.values())
    signoff = lifecycle.worklist_signoff(statuses, None, required)  # the worklist's own rule
    gated = record_changes.signed_off(changes, signoff)
    return gated, changes.counts["ai_reads"] - gated.counts["ai_reads"]


def what_changed(ref: resources.StoreRef, person_id: int, since) -> None:
    """The first thing on her record: what arrived since this user last looked (or the recent course)."""
    try:
        changes = resources.changes_since(ref, person_id, since)
    except store.StoreError as exc:
        st.warning(f"What changed since your last look cannot be read now: {exc}")
        return
    changes, withheld = _signed_off(ref, changes)
    if since is None:
        title = (
            "You have not opened her record before: what arrived in the "
            f"{(changes.as_of - changes.window_start.date()).days} days to {changes.as_of:%Y-%m-%d}"
        )
    else:
        title = f"What changed since you last looked ({pd.Timestamp(since):%Y-%m-%d %H:%M} UTC)"
    counts = changes.counts
    summary = ", ".join(
        f"{n} {one if n == 1 else many}"
        for one, many, n in (
            ("event", "events", counts["events"]),
            ("AI read", "AI reads", counts["ai_reads"]),
            ("reading", "readings", counts["readings"]),
            ("decision", "decisions", counts["decisions"]),
        )
        if n
    )
    with st.container(border=True):
        st.markdown(f"**{title}**")
        if withheld:
            st.caption(
                f"{withheld} AI read{'' if withheld == 1 else 's'} not shown: the ethics board "
                "has not approved the model version that made "
                f"{'it' if withheld == 1 else 'them'}, and approval is required."
            )
        if changes.empty:
            st.caption(
                ("Nothing else to show" if withheld else "Nothing new")
                + ": no readings, AI reads, events or treatment decisions since then."
            )
            return
        st.caption(summary)
        lines = _change_lines(changes)
        st.markdown("\n".join(f"- {line}" for line in lines[:8]))
        if len(lines) > 8:
            with st.expander(f"{len(lines) - 8} more"):
                st.markdown("\n".join(f"- {line}" for line in lines[8:]))
