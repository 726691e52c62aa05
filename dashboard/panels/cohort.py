"""The Cohorts page's "Build a cohort" section: filter builder, KM with number at risk, Table 1, exports.

The page stays thin: this module reads the widgets into a ``CohortQuery`` (a
``CohortDefinition``: conditions ANDed inside a group, groups ORed), asks
``resources.cohort_result`` (which calls ``analytics.cohorts.builder``, the code behind
``oncolens cohort``) and renders. Conditions are kept as the same "FIELD OP VALUE" texts the
command line takes, and the definition is the JSON ``oncolens cohort --definition`` reads, so a
researcher can take it into a batch job and get the same cohort. Saved cohorts and the patient
list are in ``cohort_saved``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from analytics.cohorts.balance import SMD_FLAG
from analytics.cohorts.definition import CohortDefinition
from analytics.cohorts.fields import (
    FIELDS,
    CohortError,
    EmptyCohortError,
    operators_for,
    parse_filter,
)
from dashboard import resources
from dashboard.figures import cohort as cohort_figures
from dashboard.panels import cohort_saved
from dashboard.services import cohort_export, plain_language
from dashboard.session import auth, trail

GROUPS_KEY = (
    "cohort_groups"  # session state: list[list[str]], the OR groups of "FIELD OP VALUE" texts
)
GROUP_BY_KEY = "cohort_group_by"
NO_GROUP = "(none)"
NEW_GROUP = "a new OR group"
RULE = (
    "A patient is in the cohort when she meets **every** condition of **at least one** group: "
    "conditions inside a group are joined by AND, groups by OR."
)


@dataclass(frozen=True)
class CohortQuery:
    """What the researcher asked for: the cohort's definition (AND/OR groups and the group-by field)."""

    definition: CohortDefinition

    @property
    def group_by(self) -> str | None:
        return self.definition.group_by


def _groups() -> list[list[str]]:
    groups = st.session_state.setdefault(GROUPS_KEY, [])
    groups[:] = [g for g in groups if g]  # a group whose last condition was removed is gone
    return groups


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


def filter_builder() -> CohortQuery | None:
    """Widgets to add and remove conditions in AND/OR groups and to choose a group-by field.

    Returns the query they describe, or None (with the reason shown) when the conditions kept in
    the session no longer make a cohort (e.g. a saved cohort from a newer catalogue).
    """
    groups = _groups()
    with st.container(border=True):
        st.markdown("**Add a condition**")
        c_field, c_op, c_value, c_group = st.columns([2, 1, 2, 1.4])
        name = c_field.selectbox(
            "Field",
            list(FIELDS),
            format_func=lambda n: f"{FIELDS[n].label} ({n})",
            key="cohort_field",
        )
        op = c_op.selectbox("Operator", operators_for(FIELDS[name]), key=f"cohort_op_{name}")
        with c_value:
            value = _value_widget(name, op)
        targets = [f"group {i}" for i in range(1, len(groups) + 1)] + [NEW_GROUP]
        target = c_group.selectbox(
            "Add to",
            targets,
            key=f"cohort_target_{len(groups)}",
            help="Conditions in one group must all hold (AND); a new group is an alternative (OR).",
        )
        added = st.button("Add filter", key="cohort_add")
    if added:
        if value is None:
            st.warning("Choose a value first.")
        else:
            text = f"{name} {op} {value}"
            try:
                parse_filter(text)
                CohortDefinition.of([[text]])
            except CohortError as exc:
                st.error(str(exc))
            else:
                if target == NEW_GROUP:
                    groups.append([text])
                else:
                    group = groups[targets.index(target)]
                    if text not in group:
                        group.append(text)
                st.rerun()
    if groups:
        st.markdown("**Conditions**")
        st.caption(RULE)
        for i, group in enumerate(list(groups)):
            if i:
                st.markdown("**OR**")
            with st.container(border=True):
                st.markdown(f"Group {i + 1} (all must hold)")
                for j, text in enumerate(list(group)):
                    left, right = st.columns([6, 1])
                    left.code(text, language=None)
                    if right.button("Remove", key=f"cohort_remove_{i}_{j}_{text}"):
                        group.remove(text)
                        st.rerun()
    else:
        st.caption("No filters: the cohort is every patient with a diagnosis and follow-up.")
    groupable = [n for n, f in FIELDS.items() if f.groupable]
    if st.session_state.get(GROUP_BY_KEY) not in (NO_GROUP, *groupable):
        st.session_state[GROUP_BY_KEY] = NO_GROUP
    group = st.selectbox(
        "Compare groups by",
        [NO_GROUP, *groupable],
        key=GROUP_BY_KEY,
        format_func=lambda n: n if n == NO_GROUP else f"{FIELDS[n].label} ({n})",
    )
    try:
        definition = CohortDefinition.of(groups, None if group == NO_GROUP else group)
    except CohortError as exc:
        st.error(f"These conditions do not make a cohort: {exc}. Remove the condition named.")
        return None
    if groups:
        st.caption(f"In words: {definition.words(with_grouping=False)}.")
    return CohortQuery(definition)


def _hazard_ratio_table(result) -> pd.DataFrame:
    hr = result.hazard_ratios.copy()
    hr["hazard ratio (95 % CI)"] = [
        "not estimable" if pd.isna(r.hr) else f"{r.hr:.2f} ({r.lo:.2f}–{r.hi:.2f})"
        for r in hr.itertuples(index=False)
    ]
    hr["p"] = hr["p"].map(lambda p: "–" if pd.isna(p) else f"{p:.3g}")
    return hr[["group", "hazard ratio (95 % CI)", "p"]]


def _export(ref: resources.StoreRef, query: CohortQuery, n: int, name: str) -> None:
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
    if not st.toggle(f"Prepare CSV and Parquet files ({n:,} patients)", key="cohort_export"):
        return
    rows = auth.protect_ids(resources.cohort_rows(ref, query.definition), ref.path)
    if not clinical:
        rows = cohort_export.month_only(rows)
    about = cohort_export.header(
        name=name,
        filters=query.definition,
        data_cutoff=resources.store_status().metadata_value("data_cutoff", "not recorded"),
        exported_by=f"{auth.actor()[0]} ({role})",
        exported_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        ids="store person_id" if clinical else "pseudonymised (HMAC under the store's secret)",
        dates="exact" if clinical else "month only (YYYY-MM), exact dates withheld",
        rows=len(rows),
        saved_cohort=cohort_saved.loaded_id(query.definition),
    )
    stem = cohort_export.file_stem(name)
    csv_col, parquet_col = st.columns(2)
    export = {
        "details": {
            "what": "cohort",
            "name": name,
            "rows": len(rows),
            "groups": query.definition.texts(),
            "group_by": query.group_by,
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
    """Saved cohorts and a link's cohort, the condition builder, then the cohort's survival, Table 1,
    patient list, saving and exports (or a plain message)."""
    cohort_saved.open_from_link(ref, GROUPS_KEY, GROUP_BY_KEY, NO_GROUP)
    cohort_saved.saved_list(ref)
    query = filter_builder()
    if query is None:
        return
    cohort_saved.loaded_banner(query.definition)
    try:
        result = resources.cohort_result(ref, query.definition)
    except EmptyCohortError as exc:
        next_step = (
            "remove a filter or widen its range above"
            if query.definition.groups
            else "the store holds no patient with a diagnosis and follow-up yet; import records with "
            "`oncolens import` (docs/imports.md)"
        )
        message = str(exc)
        st.info(
            f"{message[:1].upper()}{message[1:]}: {next_step}.", icon=":material/filter_alt_off:"
        )
        return
    except CohortError as exc:
        st.error(str(exc))
        return
    # a cohort built is a view of many patients: audited once per session and definition (issue 22)
    trail.shown(
        ref.path,
        "cohort_view",
        details={
            "groups": query.definition.texts(),
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
        kwargs={"details": {"what": "cohort_figure", "groups": query.definition.texts()}},
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
    _table1(result)
    cohort_saved.patient_list(ref, query.definition)
    st.session_state.setdefault(
        cohort_saved.NAME_KEY, "cohort"
    )  # a link's cohort sets its own name
    name = st.text_input("Cohort name (names saved cohorts and files)", key=cohort_saved.NAME_KEY)
    cohort_saved.save_form(ref, query.definition, name)
    _export(ref, query, result.n, name)


def _table1(result) -> None:
    """Table 1 with its missing-value rows, and the SMD column when groups are compared."""
    st.markdown(
        "**Table 1**: n (%) or median [IQR]; *missing*: patients without a value"
        + ("; **SMD**: standardised mean difference" if not result.smd.empty else ""),
        help=plain_language.glossary_help("SMD") if not result.smd.empty else None,
    )
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts.builder import table1_wide

    wide = table1_wide(result.table1, result.smd)
    # tall enough to read a variable with its levels and missing row without scrolling the table
    st.dataframe(wide, hide_index=True, height=min(36 + 35 * len(wide), 630))
    if not result.smd.empty:
        flagged = result.imbalanced(SMD_FLAG)
        if len(flagged):
            st.markdown(
                f"**Groups differ at baseline (SMD > {SMD_FLAG:g})** in: "
                + ", ".join(
                    f"{v} ({'∞' if x == float('inf') else f'{x:.2f}'})"
                    for v, x in zip(flagged["variable"], flagged["smd"], strict=True)
                )
                + ". A comparison of these groups' outcomes may be confounded by them."
            )
        st.caption(
            "SMD: continuous variables, difference of means over the pooled SD "
            "(√((SD₁² + SD₂²)/2)); categorical ones, one multivariate SMD over all levels "
            "(Yang & Dalton), as R's tableone; with more than two groups, the largest over all pairs. "
            "Above 0.1 the groups differ enough to matter for any comparison between them. "
            "The grouping variable itself has none."
        )
