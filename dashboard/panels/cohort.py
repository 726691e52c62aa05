"""The Cohorts page's "Build a cohort" section: filter builder, KM with number at risk, Table 1, exports.

The page stays thin: this module reads the widgets into a ``CohortQuery``,
asks ``resources.cohort_result`` (which calls ``analytics.cohorts.builder``, the code
behind ``oncolens cohort``) and renders. Filters are kept as the same
"FIELD OP VALUE" texts the command line takes, so a researcher can copy them
into a batch job and get the same cohort.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from analytics.cohorts.fields import (
    FIELDS,
    CohortError,
    EmptyCohortError,
    operators_for,
    parse_filter,
)
from dashboard import resources
from dashboard.figures import cohort as cohort_figures
from dashboard.services import cohort_export, plain_language
from dashboard.session import auth, trail

FILTERS_KEY = "cohort_filters"  # session state: list[str], the filters as typed
NO_GROUP = "(none)"


@dataclass(frozen=True)
class CohortQuery:
    """What the researcher asked for: filters as "FIELD OP VALUE" texts and an optional group-by field."""

    filters: tuple[str, ...]
    group_by: str | None


def _filters() -> list[str]:
    return st.session_state.setdefault(FILTERS_KEY, [])


def _value_widget(name: str, op: str) -> str | None:
    """The value input that suits the field: a choice for enumerations, a number, a date, or text."""
    f = FIELDS[name]
    key = f"cohort_value_{name}_{op}"
    if f.values is not None:
        if op == "in":
            chosen = st.multiselect("Values", f.values, key=key)
            return ",".join(chosen) if chosen else None
        return st.selectbox("Value", f.values, key=key)
    if f.kind == "date":
        if op == "between":
            picked = st.date_input("Dates", (dt.date(2018, 1, 1), dt.date(2022, 12, 31)), key=key)
            return (
                f"{picked[0]},{picked[1]}"
                if isinstance(picked, tuple) and len(picked) == 2
                else None
            )
        return str(st.date_input("Date", dt.date(2020, 1, 1), key=key))
    if f.kind == "number" or name == "ai_lesion":
        if op == "between":
            low, high = st.columns(2)
            a = low.number_input("From", value=40.0, key=key + "_lo")
            b = high.number_input("To", value=60.0, key=key + "_hi")
            return f"{a:g},{b:g}"
        return f"{st.number_input('Value', value=50.0, key=key):g}"
    text = st.text_input("Value (comma-separated for 'in')", key=key)
    return text.strip() or None


def filter_builder() -> CohortQuery:
    """Widgets to add and remove filters and choose a group; returns the query they describe."""
    filters = _filters()
    with st.container(border=True):
        st.markdown("**Add a filter**")
        c_field, c_op, c_value = st.columns([2, 1, 2])
        name = c_field.selectbox(
            "Field",
            list(FIELDS),
            format_func=lambda n: f"{FIELDS[n].label} ({n})",
            key="cohort_field",
        )
        op = c_op.selectbox("Operator", operators_for(FIELDS[name]), key=f"cohort_op_{name}")
        with c_value:
            value = _value_widget(name, op)
        added = st.button("Add filter", key="cohort_add")
    if added:
        if value is None:
            st.warning("Choose a value first.")
        else:
            text = f"{name} {op} {value}"
            try:
                parse_filter(text)
            except CohortError as exc:
                st.error(str(exc))
            else:
                if text not in filters:
                    filters.append(text)
    if filters:
        st.markdown("**Filters** (all must hold)")
        st.caption(f"In words: {cohort_export.definition_words(filters)}.")
        for i, text in enumerate(list(filters)):
            left, right = st.columns([6, 1])
            left.code(text, language=None)
            if right.button("Remove", key=f"cohort_remove_{i}_{text}"):
                filters.remove(text)
                st.rerun()
    else:
        st.caption("No filters: the cohort is every patient with a diagnosis and follow-up.")
    groupable = [n for n, f in FIELDS.items() if f.groupable]
    group = st.selectbox(
        "Compare groups by",
        [NO_GROUP, *groupable],
        key="cohort_group_by",
        format_func=lambda n: n if n == NO_GROUP else f"{FIELDS[n].label} ({n})",
    )
    return CohortQuery(tuple(filters), None if group == NO_GROUP else group)


def _hazard_ratio_table(result) -> pd.DataFrame:
    hr = result.hazard_ratios.copy()
    hr["hazard ratio (95 % CI)"] = [
        "not estimable" if pd.isna(r.hr) else f"{r.hr:.2f} ({r.lo:.2f}–{r.hi:.2f})"
        for r in hr.itertuples(index=False)
    ]
    hr["p"] = hr["p"].map(lambda p: "–" if pd.isna(p) else f"{p:.3g}")
    return hr[["group", "hazard ratio (95 % CI)", "p"]]


def _export(ref: resources.StoreRef, query: CohortQuery, n: int) -> None:
    st.markdown("**Export the cohort**")
    role = auth.actor()[1]
    clinical = auth.sees_patient_ids(role)
    st.caption(
        "One row per patient: the store's person_id, the fields above, RFS days and event. "
        "No names, MRN or birth dates. Each file starts with the cohort's name, its definition, the data "
        "cut-off and how ids and dates were protected. Exports hold patient-level data: handle them under "
        "your data-protection rules."
        + (
            ""
            if clinical
            else " For the ethics board, ids are pseudonymised and dates are given as month only."
        )
    )
    name = st.text_input("Cohort name (names the files)", value="cohort", key="cohort_name")
    if not st.toggle(f"Prepare CSV and Parquet files ({n:,} patients)", key="cohort_export"):
        return
    rows = auth.protect_ids(resources.cohort_rows(ref, query.filters, query.group_by), ref.path)
    if not clinical:
        rows = cohort_export.month_only(rows)
    about = cohort_export.header(
        name=name,
        filters=query.filters,
        group_by=query.group_by,
        data_cutoff=resources.store_status().metadata_value("data_cutoff", "not recorded"),
        exported_by=f"{auth.actor()[0]} ({role})",
        exported_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        ids="store person_id" if clinical else "pseudonymised (HMAC under the store's secret)",
        dates="exact" if clinical else "month only (YYYY-MM), exact dates withheld",
        rows=len(rows),
    )
    stem = cohort_export.file_stem(name)
    csv_col, parquet_col = st.columns(2)
    export = {
        "details": {
            "what": "cohort",
            "name": name,
            "rows": len(rows),
            "filters": [str(f) for f in query.filters],
        }
    }
    csv_col.download_button(
        "Download CSV",
        cohort_export.csv_bytes(rows, about),
        f"{stem}.csv",
        mime="text/csv",
        key="cohort_csv",
        on_click=trail.record,
        args=(ref.path, "export"),
        kwargs=export,
    )
    parquet_col.download_button(
        "Download Parquet",
        cohort_export.parquet_bytes(rows, about),
        f"{stem}.parquet",
        mime="application/vnd.apache.parquet",
        key="cohort_parquet",
        on_click=trail.record,
        args=(ref.path, "export"),
        kwargs=export,
    )


def cohort_section(ref: resources.StoreRef) -> None:
    """Filter builder, then the cohort's survival, Table 1 and exports (or a plain error)."""
    query = filter_builder()
    try:
        result = resources.cohort_result(ref, query.filters, query.group_by)
    except EmptyCohortError as exc:
        next_step = (
            "remove a filter or widen its range above"
            if query.filters
            else "the store holds no patient with a diagnosis and follow-up yet; import records with "
            "`oncolens import` (docs/imports.md)"
        )
        st.info(f"{str(exc).capitalize()}: {next_step}.", icon=":material/filter_alt_off:")
        return
    except CohortError as exc:
        st.error(str(exc))
        return
    # a cohort built is a view of many patients: audited once per session and definition (issue 22)
    trail.shown(
        ref.path,
        "cohort_view",
        details={
            "filters": [str(f) for f in query.filters],
            "group_by": query.group_by,
            "patients": result.n,
        },
    )
    a, b, c = st.columns(3)
    a.metric("Patients in cohort", f"{result.n:,}")
    b.metric("Recurrences or deaths", f"{result.events:,}")
    c.metric(
        "Log-rank p",
        "–" if result.logrank_p is None else f"{result.logrank_p:.3g}",
        help=plain_language.glossary_help(
            "log-rank test", lead="– when there are no groups to compare."
        ),
    )

    figure = cohort_figures.km_at_risk_figure(result)
    st.plotly_chart(figure, key="cohort_km")
    st.caption(
        "Kaplan–Meier estimate of recurrence-free survival with 95 % confidence bands "
        "(log–log Greenwood); numbers at risk by year underneath. Save the figure as PNG with the "
        "camera icon of the chart's toolbar, or download it as interactive HTML below.",
        help=plain_language.glossary_help("Kaplan–Meier", "numbers at risk", "confidence interval"),
    )
    st.download_button(
        "Download figure (HTML)",
        figure.to_html(include_plotlyjs="cdn").encode(),
        "cohort_km.html",
        mime="text/html",
        key="cohort_fig_html",
        on_click=trail.record,  # an export like the tables' (issue 22)
        args=(ref.path, "export"),
        kwargs={"details": {"what": "cohort_figure", "filters": [str(f) for f in query.filters]}},
    )
    medians = pd.DataFrame(
        [
            {
                "group": g.name,
                "patients": g.n,
                "events": g.events,
                "median RFS (years)": None
                if g.median_days is None
                else round(g.median_days / 365.25, 1),
            }
            for g in result.groups
        ]
    )
    st.dataframe(medians, hide_index=True)
    if result.reference is not None:
        st.markdown(
            f"**Hazard ratios** against *{result.reference}* (Cox model, group as the only covariate)",
            help=plain_language.glossary_help("hazard ratio", "confidence interval"),
        )
        st.dataframe(_hazard_ratio_table(result), hide_index=True)
        st.caption(
            "Groups were not randomised: they differ in other ways (see Table 1), so these "
            "are descriptive comparisons, not treatment effects."
        )
    for note in result.notes:
        st.info(note)
    st.markdown("**Table 1**: n (%) or median [IQR]")
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts.builder import table1_wide

    st.dataframe(table1_wide(result.table1), hide_index=True)
    _export(ref, query, result.n)
