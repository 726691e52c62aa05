"""Worklist: patients alive and recurrence-free, ranked by lesion regrowth (an interim score)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard import resources

PAGE_SIZE = 25
ALL_SITES = "All sites"


@dataclass(frozen=True)
class Filters:
    only_progression: bool
    site: str | None
    page: int                       # 1-based

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE


ref = resources.require_store()
st.title("Worklist")
st.caption(
    "**Interim ranking.** Patients alive and without recorded recurrence, ordered by the latest "
    "target-lesion diameter divided by its nadir. Flags follow RECIST 1.1 (progression: ≥20 % "
    "and ≥5 mm above nadir; response: ≥30 % below baseline). The forecast-based risk score "
    "replaces this ranking in a later release."
)
a, b, c = st.columns([2, 2, 1])
site = b.selectbox("Site", [ALL_SITES, *resources.sites(ref)])
filters = Filters(
    only_progression=a.toggle("RECIST progression only"),
    site=None if site == ALL_SITES else site,
    page=int(c.number_input("Page", min_value=1, value=1, step=1)),
)
result = resources.worklist_page(
    ref, PAGE_SIZE, filters.offset, filters.only_progression, filters.site
)
pages = max(1, -(-result.total // PAGE_SIZE))
if result.rows.empty:
    if result.total and filters.page > pages:
        st.info(f"Page {filters.page} is past the end: the list has {pages:,} pages.")
    else:
        st.info("No patient matches these filters.")
    st.stop()

st.caption(
    f"Patients {filters.offset + 1:,}–{filters.offset + len(result.rows):,} of {result.total:,} "
    f"(page {filters.page:,} of {pages:,})"
)
table = result.rows.assign(open=[f"patient?patient={pid}" for pid in result.rows["person_id"]])
st.dataframe(
    table,
    hide_index=True,
    column_order=(
        "open", "mrn", "site", "score", "progression", "response", "latest_mm", "nadir_mm",
        "baseline_mm", "change_from_nadir_pct", "change_from_baseline_pct", "latest_date",
        "n_measurements",
    ),
    column_config={
        "open": st.column_config.LinkColumn("Patient", display_text=r"patient=(\d+)$"),
        "mrn": "MRN",
        "score": st.column_config.NumberColumn("Score (interim)", format="%.2f"),
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
