"""Worklist: who to look at first. Act now (new since her last review), imaging due, then by forecast risk."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from analytics.worklist import buckets as worklist_buckets
from dashboard import resources
from dashboard.panels import worklist as worklist_panel
from dashboard.services import plain_language
from dashboard.session import auth, signoff, state

PAGE_SIZE = 25
ALL_SITES = "All sites"
ALL_BUCKETS = "All"


@dataclass(frozen=True)
class Filters:
    only_progression: bool
    site: str | None
    hide_reviewed: bool
    bucket: str | None
    page: int  # 1-based

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE


auth.require_page("worklist")
ref = resources.require_store()
st.title("Worklist")
st.caption(
    "Top-down: **act now** (new progression, recurrence or suspicious AI read since her last review), "
    "**imaging due** (overdue for her usual interval), then **by forecast risk**. Decision support for "
    "research use, not a medical device: the care team decides whom to review."
)
with st.expander("How the list is ordered"):
    st.caption(
        "**Forecast risk:** the probability of RECIST progression or recurrence in the next six "
        "months. Progression: the chance that her last lesion reading expected within six months (at her "
        "usual imaging interval) is ≥20 % and ≥5 mm above the nadir of her current line (growth-inhibition "
        "model of her measurements since the line began, with the cohort's prior; a progression ends the "
        "line, as in RECIST 1.1). Recurrence: the clinic's treatment model under her first-line option, "
        "given that she is recurrence-free today (when a model is trained; not after a recurrence). The "
        "two are combined as if independent, a simplification. In validation the order is reliable and "
        "the risks match what followed within their uncertainty (docs/validation.md). Ties are ordered by "
        "the most recent event. *Act now* keeps most recent first, *imaging due* most overdue first; "
        f"never-reviewed patients count events of the last {worklist_buckets.NEVER_REVIEWED_WINDOW_DAYS} "
        "days before the data's today as new.",
        help=plain_language.glossary_help("forecast risk", "RECIST", "nadir"),
    )


@st.fragment
def ranked_list() -> None:
    """The filters, buckets, list and pager: a fragment, so that a new page, bucket or filter reruns
    only this (issue 23: the whole app, its sidebar and session checks, ran for every page turn)."""
    a, b, c = st.columns([6, 3, 3])
    site = b.selectbox("Site", [ALL_SITES, *resources.sites(ref)])
    hide_reviewed = c.toggle(
        "Hide reviewed",
        help="Leave out patients reviewed since anything new arrived; they come back when it does",
    )
    only_progression = c.toggle(
        "Progression only",
        help="Her latest reading meets RECIST progression. "
        + plain_language.glossary_help("RECIST", "nadir"),
    )

    page_number = int(st.session_state.get("worklist-page", 1))
    chosen = st.session_state.get("worklist-bucket")
    filters = Filters(
        only_progression=only_progression,
        site=None if site == ALL_SITES else site,
        hide_reviewed=hide_reviewed,
        bucket=None if chosen in (None, ALL_BUCKETS) else chosen,
        page=page_number,
    )
    with resources.working("Ranking the worklist by forecast risk…"):
        view = resources.worklist_view(
            ref,
            PAGE_SIZE,
            filters.offset,
            filters.only_progression,
            filters.site,
            hide_reviewed=filters.hide_reviewed,
            bucket=filters.bucket,
        )
    counts = view.page.buckets
    a.segmented_control(  # drawn after the read: each bucket's label carries its count
        "Show",
        [ALL_BUCKETS, *worklist_buckets.BUCKETS],
        default=ALL_BUCKETS,
        format_func=lambda v: (
            f"All · {sum(counts.values()):,}"
            if v == ALL_BUCKETS
            else worklist_panel.bucket_label(v, counts)
        ),
        key="worklist-bucket",
        help=" · ".join(
            f"{worklist_buckets.BUCKET_TITLES[b]}: {worklist_panel.BUCKET_HELP[b]}"
            for b in worklist_buckets.BUCKETS
        ),
    )
    worklist_panel.show_freshness(
        ref, view
    )  # stored and current, ranked now, or stale with a refresh
    # the ethics board's sign-off of the forecast that ranked the list (issue 22): a banner, or withheld
    risk_shown = signoff.gate(ref, "forecast", view.ranked_by)
    # imaging reads of versions not approved, and the by-risk order without the forecast
    worklist_panel.show_read_signoff(ref, view.page, risk_withheld=not risk_shown)
    result = view.page
    pages = max(1, -(-result.total // PAGE_SIZE))
    if result.rows.empty:
        st.number_input(  # still drawn, so that a page past the end can be changed back
            f"Page (of {pages:,})", min_value=1, value=1, step=1, key="worklist-page", width=160
        )
        if result.total and filters.page > pages:
            st.info(f"Page {filters.page} is past the end: the list has {pages:,} pages.")
        elif filters.only_progression or filters.site or filters.hide_reviewed or filters.bucket:
            st.info(
                "No patient matches these filters: show all buckets, switch off “Hide reviewed” and "
                "“RECIST progression only”, or choose “All sites”."
            )
        else:
            st.info(
                "The worklist is empty: it lists patients alive and followed. Import patient records "
                "with `oncolens import` (docs/imports.md), or build the demo clinic with `oncolens demo`."
            )
        st.stop()

    st.caption(
        f"Patients {filters.offset + 1:,}–{filters.offset + len(result.rows):,} of {result.total:,} "
        f"(page {filters.page:,} of {pages:,}) · select a row to open the patient · mark a review, a note "
        "and an assignee on her Patient page"
    )
    table = worklist_panel.display_rows(result.rows)
    if not risk_shown:
        table = worklist_panel.without_risk(table)
    picked = st.dataframe(  # at 1366 px: who, why and the risk fit; the rest scrolls sideways
        table,
        hide_index=True,
        key="worklist_rows",
        on_select="rerun",  # select a row: the patient opens here, in this signed-in session
        selection_mode="single-row",
        column_order=worklist_panel.TABLE_COLUMNS,
        column_config={
            "open": st.column_config.LinkColumn(
                "Patient", display_text=r"patient=(\d+)$", width=60
            ),
            "Bucket": st.column_config.TextColumn(width=80),
            "Name": st.column_config.TextColumn(width=140),
            "Reason": st.column_config.TextColumn(
                width=520, help="Why she is in this bucket, in one sentence"
            ),
            "6-mo risk": st.column_config.TextColumn(
                width=70,
                help="Probability of RECIST progression or recurrence in the next six months (forecast)",
            ),
        },
    )
    st.number_input(
        f"Page (of {pages:,})", min_value=1, value=1, step=1, key="worklist-page", width=160
    )
    if picked.selection.rows:  # (the Patient link opens a new tab, signed in by the session cookie)
        person_id = int(table["person_id"].iloc[picked.selection.rows[0]])
        state.select_patient(person_id)
        st.switch_page("app_pages/patient.py", query_params={state.PATIENT_PARAM: str(person_id)})


ranked_list()
