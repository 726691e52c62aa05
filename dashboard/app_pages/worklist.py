"""Worklist: patients alive and recurrence-free, ranked by forecast risk over the next six months."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard import resources
from dashboard.panels import worklist as worklist_panel
from dashboard.services import plain_language
from dashboard.session import auth, state

PAGE_SIZE = 25
ALL_SITES = "All sites"


@dataclass(frozen=True)
class Filters:
    only_progression: bool
    site: str | None
    page: int  # 1-based

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE


auth.require_page("worklist")
ref = resources.require_store()
st.title("Worklist")
st.caption(
    "**Ranked by forecast risk:** the probability of RECIST progression or recurrence in the next six "
    "months. Progression: the chance that her last lesion reading expected within six months (at her "
    "usual imaging interval) is ≥20 % and ≥5 mm above its nadir (growth-inhibition model of her "
    "measurements, with the cohort's prior). Recurrence: the clinic's treatment model under her "
    "first-line option, given that she is recurrence-free today (when a model is trained). The two are "
    "combined as if independent, a simplification. In validation the order is reliable (AUC 0.97) and "
    "the risks match what followed within their uncertainty (e.g. of patients given 20–40 %, 20 % had "
    "an event; docs/validation.md). Flags follow RECIST "
    "1.1 as measured (response: ≥30 % below baseline). Decision support for research use, not a medical "
    "device: the care team decides whom to review.",
    help=plain_language.glossary_help("forecast risk", "RECIST", "nadir"),
)
a, b, c = st.columns([2, 2, 1])
site = b.selectbox("Site", [ALL_SITES, *resources.sites(ref)])
filters = Filters(
    only_progression=a.toggle(
        "RECIST progression only", help=plain_language.glossary_help("RECIST", "nadir")
    ),
    site=None if site == ALL_SITES else site,
    page=int(c.number_input("Page", min_value=1, value=1, step=1)),
)
with resources.working("Ranking the worklist by forecast risk…"):
    view = resources.worklist_view(
        ref, PAGE_SIZE, filters.offset, filters.only_progression, filters.site
    )
worklist_panel.show_freshness(ref, view)  # stored and current, ranked now, or stale with a refresh
result = view.page
pages = max(1, -(-result.total // PAGE_SIZE))
if result.rows.empty:
    if result.total and filters.page > pages:
        st.info(f"Page {filters.page} is past the end: the list has {pages:,} pages.")
    elif filters.only_progression or filters.site:
        st.info(
            "No patient matches these filters: switch off “RECIST progression only” or choose “All sites”."
        )
    else:
        st.info(
            "The worklist is empty: it lists patients alive and recurrence-free. Import patient records "
            "with `oncolens import` (docs/imports.md), or build the demo clinic with `oncolens demo`."
        )
    st.stop()

st.caption(
    f"Patients {filters.offset + 1:,}–{filters.offset + len(result.rows):,} of {result.total:,} "
    f"(page {filters.page:,} of {pages:,}) · select a row to open the patient · “new” means since her last "
    "review (mark it on her Patient page)"
)
rows = resources.with_review_changes(
    ref, result.rows
)  # what changed since each patient's last review
table = rows.assign(open=[f"patient?patient={pid}" for pid in rows["person_id"]])
picked = st.dataframe(
    table,
    hide_index=True,
    key="worklist_rows",
    on_select="rerun",  # select a row: the patient opens here, in this signed-in session
    selection_mode="single-row",
    column_order=(
        "open",
        "mrn",
        "site",
        "risk_6m",
        "new_progression",
        "new_readings",
        "new_ai_findings",
        "last_reviewed_at",
        "reviewed_by",
        "p_progression_6m",
        "p_recurrence_6m",
        "progression",
        "response",
        "latest_mm",
        "nadir_mm",
        "baseline_mm",
        "change_from_nadir_pct",
        "change_from_baseline_pct",
        "regrowth_ratio",
        "latest_date",
        "n_measurements",
    ),
    column_config={
        "open": st.column_config.LinkColumn("Patient", display_text=r"patient=(\d+)$"),
        "mrn": "MRN",
        "risk_6m": st.column_config.ProgressColumn(
            "Risk, 6 months",
            format="percent",
            min_value=0.0,
            max_value=1.0,
            help="Probability of RECIST progression or recurrence in the next six months (forecast)",
        ),
        "new_progression": st.column_config.CheckboxColumn(
            "New progression",
            help="RECIST progression with its latest reading after the last review (or never reviewed)",
        ),
        "new_readings": st.column_config.NumberColumn(
            "New readings",
            help="Lesion readings dated after the last review (all of them when never reviewed)",
        ),
        "new_ai_findings": st.column_config.NumberColumn(
            "New AI reads", help="AI reads of her images stored after the last review"
        ),
        "last_reviewed_at": st.column_config.DatetimeColumn(
            "Last review",
            format="YYYY-MM-DD HH:mm",
            help="Latest “Mark reviewed” on her Patient page (UTC)",
        ),
        "reviewed_by": "Reviewed by",
        "p_progression_6m": st.column_config.NumberColumn("P(progression)", format="percent"),
        "p_recurrence_6m": st.column_config.NumberColumn("P(recurrence)", format="percent"),
        "regrowth_ratio": st.column_config.NumberColumn("Latest / nadir", format="%.2f"),
        "progression": "Progression",
        "response": "Response",
        "latest_mm": st.column_config.NumberColumn("Latest (mm)", format="%.1f"),
        "nadir_mm": st.column_config.NumberColumn("Nadir (mm)", format="%.1f"),
        "baseline_mm": st.column_config.NumberColumn("Baseline (mm)", format="%.1f"),
        "change_from_nadir_pct": st.column_config.NumberColumn("vs nadir", format="%+.0f %%"),
        "change_from_baseline_pct": st.column_config.NumberColumn("vs baseline", format="%+.0f %%"),
        "latest_date": st.column_config.DateColumn("Last measured"),
        "n_measurements": st.column_config.NumberColumn("Readings"),
    },
)
if picked.selection.rows:  # (the Patient link opens a new tab, which is a new session: signed out)
    person_id = int(table["person_id"].iloc[picked.selection.rows[0]])
    state.select_patient(person_id)
    st.switch_page("app_pages/patient.py", query_params={state.PATIENT_PARAM: str(person_id)})
