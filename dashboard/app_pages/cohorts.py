"""Cohorts: who is in the clinic; a cohort builder (AND/OR conditions, KM, Table 1 with SMDs, the patient
list, saved cohorts opened by ``?cohort=ID``, exports); the treatment model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from analytics.cohorts.summary import NO_REGIMEN
from dashboard import resources
from dashboard.figures import cohort as cohort_figures
from dashboard.figures import common as common_figures
from dashboard.figures import formats
from dashboard.panels import cohort as cohort_panel
from dashboard.panels import treatment as treatment_panel
from dashboard.services import plain_language
from dashboard.session import auth

if TYPE_CHECKING:
    import pandas as pd


def _named(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` with its regimen codes as people read them ("chemotherapy + endocrine", not
    ``chemo_endocrine``), as the treatment section names them; other groups unchanged."""
    return frame.assign(**{column: frame[column].map(formats.option)})


auth.require_page("cohorts")
ref = resources.require_store()
st.title("Cohorts")
# a saved cohort's link (?cohort=ID) opens on the tab that shows it. Only the open tab is computed
# (issue 23: all three took 8-17 s a run, the treatment tab's SHAP over the clinic above all); the
# open tab is in the address (?tab=...), so a link or a reload reopens it.
overview_tab, build_tab, treatment_tab = st.tabs(
    ["Overview", "Build a cohort", "Treatment model"],
    default="Build a cohort" if st.query_params.get("cohort") else None,
    key="tab",
    bind="query-params",
    on_change="rerun",
)

if overview_tab.open:
    with overview_tab:
        overview = resources.cohort_overview(ref)
        if not overview.patients:
            st.info(
                "This store holds no patients yet: import records with `oncolens import` (docs/imports.md), "
                "or build the demo clinic with `oncolens demo`.",
                icon=":material/group_off:",
            )
        else:
            a, b, c, d = st.columns(4)
            a.metric("Patients", f"{overview.patients:,}")
            b.metric("Recurrences", f"{overview.recurrences:,}")
            c.metric("Deaths", f"{overview.deaths:,}")
            d.metric("Median follow-up", f"{overview.median_follow_up_days / 365.25:.1f} years")

            left, right = st.columns(2)
            left.plotly_chart(cohort_figures.age_distribution_figure(overview.age_distribution))
            right.plotly_chart(
                common_figures.bar_figure(
                    overview.grade_counts, "grade", "patients", "Tumour grade", "grade"
                )
            )
            left.plotly_chart(cohort_figures.receptor_figure(overview.receptor_counts))
            right.plotly_chart(
                common_figures.bar_figure(
                    _named(overview.regimen_counts, "regimen"),
                    "regimen",
                    "patients",
                    "First-line regimen",
                    "",
                )
            )

            st.subheader(
                "Recurrence-free survival",
                help=plain_language.glossary_help("Kaplan–Meier", "RFS", "confidence interval"),
            )
            # numbers at risk counted by the cohort builder (the curves' table is on a time grid)
            everyone = resources.cohort_at_risk(ref)
            by_first_line = _named(resources.cohort_at_risk(ref, "first_line_regimen"), "group")
            overall, by_regimen = st.columns(2)
            overall.plotly_chart(
                cohort_figures.km_figure(
                    overview.km[overview.km["group"] == "all patients"],
                    "All patients",
                    at_risk=everyone,
                )
            )
            by_regimen.plotly_chart(
                cohort_figures.km_figure(
                    _named(overview.km[overview.km["group"] != "all patients"], "group"),
                    "By first-line regimen",
                    at_risk=by_first_line,
                )
            )
            st.caption(
                "Kaplan–Meier estimates with 95 % confidence bands; recurrence or death is the event, "
                "patients are censored at the end of follow-up. **Treatment was not randomised**: "
                "regimens were chosen for each patient's disease (e.g. chemotherapy for higher-risk "
                "tumours), so the curves compare different patients and are not treatment effects.",
                help=plain_language.glossary_help("Kaplan–Meier", "confidence interval"),
            )
            if (overview.km_medians["group"] == NO_REGIMEN).any():
                st.caption(
                    f"The group **{NO_REGIMEN}** holds patients whose follow-up ended, or whose "
                    "recurrence or death came, before a first-line regimen was recorded. It is "
                    "defined by that early end, so its curve falls at once: it shows when they "
                    "left the record, not what going without treatment does."
                )
            if overview.km_sampled:
                st.caption(
                    f"Curves from a fixed, deterministic sample of {overview.km_patients:,} of "
                    f"{overview.patients:,} patients; counts above use every patient."
                )
            st.dataframe(
                _named(overview.km_medians, "group").assign(
                    median_rfs_years=overview.km_medians["median_rfs_days"] / 365.25
                ),
                hide_index=True,
                column_order=("group", "patients", "events", "median_rfs_years"),
                column_config={
                    "group": "Group",
                    "median_rfs_years": st.column_config.NumberColumn(
                        "Median RFS (years)",
                        format="%.1f",
                        help="empty when the curve stays above 50 %",
                    ),
                },
            )


@st.fragment
def cohort_builder() -> None:
    """The cohort builder: a fragment, so that a filter, "Compare groups by", the patient list, a
    save or an export reruns only the builder, not the sidebar, the session checks and the tabs
    (issue 23: "Compare groups by" reran the whole page; 0.83 -> 0.76 s on screen, the ``runs``
    column of ``bench_pages`` says which runs an interaction makes). A button that must redraw the page (removing a filter,
    opening or deleting a saved cohort) calls ``st.rerun()``, whose scope is the whole app."""
    cohort_panel.cohort_section(ref)


if build_tab.open:
    with build_tab:
        cohort_builder()

if treatment_tab.open:
    with treatment_tab:
        treatment_panel.cohort_section(ref)
