"""Cohorts: filters over the store, "Table 1", Kaplan-Meier per group, log-rank and Cox.

A cohort is a ``CohortDefinition`` (``analytics.cohorts.definition``): groups of ``Filter`` s over
the field catalogue (``analytics.cohorts.fields``), ANDed within a group and ORed between groups,
plus an optional group-by field; a plain list of filters is one group. ``build_cohort``
compiles the definition into one parameterised query over a per-patient base row
(index diagnosis, covariates, first-line regimen, recurrence-free survival),
materialises the matching patients once in a temporary table, and answers
everything else with aggregates over it.

Why the survival statistics work on aggregated counts: at a million patients,
moving one row per patient into Python costs more than the whole SQL. All the
estimators needed here depend on the data only through, per group and per day,
the number of events and the number of patients leaving the risk set. DuckDB
returns those counts (a few thousand rows per group); the Kaplan-Meier
product-limit and Greenwood bands, the log-rank test and the Cox model (Efron
ties, Newton-Raphson) are computed from them in NumPy by ``analytics.survival``
(``kaplan_meier``, ``logrank``, ``cox``). lifelines' fitters on one row per
patient are the reference in the tests; they take seconds at a million rows
(and lifelines itself ~2 s to import), which is why they are not the code path.

Recurrence-free survival (RFS), as on the rest of the Cohorts page
(``analytics.cohorts.summary``): days from the index diagnosis to the first
recurrence or death, censored at the end of the observation period. Groups
were not randomised: hazard ratios between them describe the cohort, they
are not treatment effects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from analytics.cohorts.balance import table1_smd
from analytics.cohorts.base import BASE_SQL, base_source
from analytics.cohorts.definition import CohortDefinition, as_definition
from analytics.cohorts.fields import (
    FIELDS,
    CohortError,
    EmptyCohortError,
    Filter,
    group_field,
    parse_filter,
)
from analytics.survival.constants import DAYS_PER_YEAR, Z_95
from analytics.survival.cox import cox_group_hazard_ratios
from analytics.survival.kaplan_meier import KaplanMeier
from analytics.survival.logrank import event_matrices, log_rank

__all__ = [
    "CohortDefinition",
    "CohortError",
    "CohortResult",
    "EmptyCohortError",
    "Filter",
    "GroupSurvival",
    "build_cohort",
    "cohort_patients",
    "parse_filter",
]

AT_RISK_YEARS = tuple(range(0, 11))  # number-at-risk table: every year from diagnosis
ALL = "all patients"

# Table 1: (variable, base column) in display order.
TABLE1_CONTINUOUS = (
    ("Age at diagnosis (years)", "age_years"),
    ("Tumour size (mm)", "tumour_size_mm"),
    ("Positive nodes", "positive_nodes"),
    ("Oestrogen receptor (fmol/mg)", "er_fmol"),
    ("Progesterone receptor (fmol/mg)", "pr_fmol"),
    ("RFS or follow-up time (days)", "rfs_days"),
)
# Table 1 rows that are outcomes, not baseline characteristics: their SMDs are shown, but an imbalance
# in them is a result, not a confounder, so they are never named as one.
TABLE1_OUTCOMES = ("RFS or follow-up time (days)", "Recurrence or death")
TABLE1_CATEGORICAL = (
    ("Menopausal status", "menopausal_status"),
    ("Site", "site"),
    ("Stage", "stage"),
    ("Grade", "grade"),
    ("ER status", "er_status"),
    ("PR status", "pr_status"),
    ("HER2 status", "her2_status"),
    ("First-line regimen", "first_line_regimen"),
    ("Recurrence or death", "event"),
)


@dataclass(frozen=True, eq=False)
class GroupSurvival:
    """Kaplan-Meier estimate of one group.

    ``km``: day (days since diagnosis), s (survival), lo, hi (95 % pointwise,
    exponential Greenwood: the log(-log) interval, as lifelines), at_risk
    (patients at risk just before ``day``); one row at day 0 and one per day
    with at least one event. ``median_days`` is None when the curve never
    reaches one half.
    """

    name: str
    n: int
    events: int
    median_days: float | None
    km: pd.DataFrame


@dataclass(frozen=True, eq=False)
class CohortResult:
    """What a cohort is and how it fared.

    ``table1``: long format, one row per (variable, level, group): variable,
    level ('' for continuous), group (a group name or ``ALL``), n, percent
    (categorical), median, q1, q3 (continuous), text (as shown). ``at_risk``:
    group, years, at_risk. ``hazard_ratios``: group, hr, lo, hi, p against
    ``reference`` (Cox, Efron ties); empty with one group. ``logrank_p``: None
    with one group.
    """

    filters: tuple[Filter, ...]
    group_by: str | None
    n: int
    events: int
    groups: tuple[GroupSurvival, ...]
    table1: pd.DataFrame
    at_risk: pd.DataFrame
    logrank_p: float | None
    logrank_chi2: float | None
    reference: str | None
    hazard_ratios: pd.DataFrame
    notes: tuple[str, ...] = field(default=())
    definition: CohortDefinition = field(default_factory=CohortDefinition)
    smd: pd.DataFrame = field(default_factory=pd.DataFrame)

    def imbalanced(self, threshold: float = 0.1) -> pd.DataFrame:
        """Baseline variables (not outcomes) whose SMD exceeds ``threshold``: variable, smd, pair."""
        if self.smd.empty:
            return self.smd
        keep = (self.smd["smd"] > threshold) & ~self.smd["variable"].isin(TABLE1_OUTCOMES)
        return self.smd[keep]

    def km_frame(self) -> pd.DataFrame:
        """All groups' curves in the shape of ``plots.km_figure``: group, time_days, survival, ci_*."""
        parts = [g.km.assign(group=g.name) for g in self.groups]
        km = pd.concat(parts, ignore_index=True)
        return km.rename(
            columns={"day": "time_days", "s": "survival", "lo": "ci_lower", "hi": "ci_upper"}
        )

    def to_json(self) -> dict:
        """The ``oncolens cohort --json`` object (ARCHITECTURE.md), plus hazard ratios and notes."""
        return {
            "n": self.n,
            # one group: its filters (as before); OR groups: null, see "definition"
            "filters": [str(f) for f in self.filters] if self.definition.is_single_group else None,
            "definition": self.definition.to_json(),
            "group_by": self.group_by,
            "groups": [
                {
                    "name": g.name,
                    "n": g.n,
                    "events": g.events,
                    "median_days": g.median_days,
                    "km": [
                        {"day": int(d), "s": _r(s), "lo": _r(lo), "hi": _r(hi), "at_risk": int(r)}
                        for d, s, lo, hi, r in g.km[["day", "s", "lo", "hi", "at_risk"]].itertuples(
                            index=False
                        )
                    ],
                }
                for g in self.groups
            ],
            "logrank_p": self.logrank_p,
            "reference": self.reference,
            "hazard_ratios": [
                {k: (_r(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in self.hazard_ratios.to_dict("records")
            ],
            "smd": [
                {"variable": r["variable"], "smd": _r(r["smd"]), "pair": r["pair"]}
                for r in self.smd.to_dict("records")
            ],
            "notes": list(self.notes),
        }


def _r(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def cohort_sql(
    filters, group_by: str | None = None, source: str | None = None
) -> tuple[str, list[object]]:
    """The cohort as one parameterised SELECT over the base rows, with a ``grp`` column.

    ``filters``: a ``CohortDefinition`` or a list of filters (one group). ``source``: what to
    select FROM (``cohort_base.base_source``); default the live query.
    """

    definition = as_definition(filters, group_by)
    where, params = definition.compile()
    group_by = definition.group_by
    grp = group_field(group_by).sql if group_by else f"'{ALL}'"
    source = source or f"({BASE_SQL})"
    return f"SELECT *, {grp}::VARCHAR AS grp FROM {source} AS base WHERE {where}", params  # noqa: S608


def cohort_patients(
    con: duckdb.DuckDBPyConnection, filters=(), group_by: str | None = None
) -> pd.DataFrame:
    """The cohort, one row per patient, for export: person_id, the catalogue's fields, rfs_days, event.

    No direct identifiers (names, MRN, birth date): an export for research carries the
    store's person_id and the clinical fields only.
    """
    definition = as_definition(filters, group_by)
    sql, params = cohort_sql(definition, None, base_source(con))
    df = con.execute(f"{sql} ORDER BY person_id", params).df()  # noqa: S608 - constant SQL text
    if definition.group_by is None:
        df = df.drop(columns=["grp"])
    else:
        df = df.rename(columns={"grp": "group"})
    return df


_AT_RISK_DAYS = np.array([round(y * DAYS_PER_YEAR) for y in AT_RISK_YEARS])


def _km_frame(fit: KaplanMeier) -> pd.DataFrame:
    """``GroupSurvival.km``: day 0 and every event day, days and numbers at risk as integers."""
    steps = fit.steps()
    return pd.DataFrame(
        {
            "day": steps["time"].to_numpy(np.int64),
            "s": steps["survival"].to_numpy(),
            "lo": steps["lower"].to_numpy(),
            "hi": steps["upper"].to_numpy(),
            "at_risk": steps["at_risk"].to_numpy(np.int64),
        }
    )


def _group_slices(grp: np.ndarray) -> dict[str, slice]:
    """Each group's rows in counts sorted by group: one contiguous slice per name."""
    starts = (
        np.flatnonzero(np.concatenate([[True], grp[1:] != grp[:-1]]))
        if len(grp)
        else np.array([], int)
    )
    ends = np.append(starts[1:], len(grp))
    return {grp[a]: slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)}


def _count_matrices(
    counts: pd.DataFrame, names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (rows) and event day (columns): events and patients at risk; plus the days."""
    day_all, ev_all, rm_all = (counts[c].to_numpy() for c in ("day", "events", "removed"))
    slices = _group_slices(counts["grp"].to_numpy(dtype=object))
    return event_matrices(
        [(day_all[slices[g]], ev_all[slices[g]], rm_all[slices[g]]) for g in names]
    )


def _survival_tests(
    counts: pd.DataFrame, names: list[str], reference: str
) -> tuple[float, float, pd.DataFrame, list[str]]:
    """Log-rank test and Cox hazard ratios against ``reference``, both from the aggregated counts."""
    # lazy: scipy is imported only when this is used (start-up time)
    from scipy.special import ndtr

    notes: list[str] = []
    ordered = [reference] + [g for g in names if g != reference]
    _, events, at_risk = _count_matrices(counts, ordered)
    chi2, p = log_rank(events, at_risk)
    rows = []
    if (events.sum(1) == 0).any():
        notes.append("hazard ratios not estimable: a group has no events")
        fit = np.full((len(ordered) - 1, 2), np.nan)
    else:
        fit = cox_group_hazard_ratios(events, at_risk)
        lost = [g for g, (b, _) in zip(ordered[1:], fit, strict=True) if b != b]
        if lost:
            notes.append(
                f"hazard ratio not estimable for {', '.join(lost)} against {reference} "
                "(too few events where both are at risk)"
            )
    for g, (b, se) in zip(ordered[1:], fit, strict=True):
        rows.append(
            {
                "group": g,
                "hr": math.exp(b) if b == b else math.nan,
                "lo": math.exp(b - Z_95 * se) if b == b else math.nan,
                "hi": math.exp(b + Z_95 * se) if b == b else math.nan,
                "p": float(2 * ndtr(-abs(b / se))) if b == b else math.nan,
            }
        )
    return p, chi2, pd.DataFrame(rows, columns=["group", "hr", "lo", "hi", "p"]), notes


def _quantiles_from_counts(values: np.ndarray, counts: np.ndarray) -> tuple[float, float, float]:
    """Q1, median, Q3 from (value, count) pairs, exactly as DuckDB's ``quantile_cont``.

    Position h = (n - 1) q in the sorted values, linear interpolation between the order
    statistics floor(h) and ceil(h) (numpy's default 'linear' method too).
    """
    if len(values) == 0:
        return (math.nan,) * 3
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(counts[order])
    out = []
    for q in (0.25, 0.5, 0.75):
        h = (cum[-1] - 1) * q
        lo, hi = math.floor(h), math.ceil(h)
        v_lo, v_hi = v[np.searchsorted(cum, lo, "right")], v[np.searchsorted(cum, hi, "right")]
        out.append(float(v_lo + (h - lo) * (v_hi - v_lo)))
    return out[0], out[1], out[2]


MISSING = "missing"  # Table 1's level for patients without a value


def _cell(variable: str, level: str, group: str, n: int, size: int, **stats: float) -> dict:
    """One Table 1 cell: counts as "n (pct %)", continuous as "median [q1–q3]"."""
    if level == "":
        med, q1, q3 = stats["median"], stats["q1"], stats["q3"]
        text = f"{med:.0f} [{q1:.0f}–{q3:.0f}]" if med == med else "–"
        return {
            "variable": variable,
            "level": "",
            "group": group,
            "n": n,
            "percent": math.nan,
            "median": med,
            "q1": q1,
            "q3": q3,
            "text": text,
        }
    pct = 100.0 * n / max(size, 1)
    return {
        "variable": variable,
        "level": level,
        "group": group,
        "n": n,
        "percent": pct,
        "median": math.nan,
        "q1": math.nan,
        "q3": math.nan,
        "text": f"{n:,} ({pct:.1f} %)",
    }


def _table1(
    con: duckdb.DuckDBPyConnection, sql: str, params: list, groups: list[str], sizes: dict[str, int]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two aggregates of the cohort: value counts of the continuous fields, counts of the categories.

    Why counts and not ``quantile_cont``: the continuous fields take a few thousand distinct
    values at most (whole years, mm, days, fmol), so per group and value counts (one GROUPING
    SETS query) give the exact quantiles, and the overall column is the sum of the groups'
    counts, not another scan. Categories: one GROUP BY over every combination (~1,000 rows
    at a million patients), summed per field here. ~0.2 s instead of ~0.5 s at a million.
    The same counts give the missing-value rows (NULL values, per group) and the SMDs
    (``analytics.cohorts.balance``: means and variances from value counts, proportions from
    level counts). Returns (Table 1 long, SMD per variable).
    """
    cont_cols = [col for _, col in TABLE1_CONTINUOUS]
    sets = ", ".join(f"(grp, {c})" for c in cont_cols)
    cont = con.execute(
        f"SELECT grp, {', '.join(cont_cols)}, GROUPING({', '.join(cont_cols)}) AS which, count(*) AS n "  # noqa: S608
        f"FROM ({sql}) GROUP BY GROUPING SETS ({sets})",
        params,
    ).df()
    rows = []
    smd_continuous: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    smd_categorical: dict[str, dict[str, dict[str, int]]] = {}
    n_cont = len(cont_cols)
    for k, (label, col) in enumerate(TABLE1_CONTINUOUS):
        # GROUPING() sets a bit for every column *not* grouped: here all but column k
        this_set = cont[cont["which"] == (1 << n_cont) - 1 - (1 << (n_cont - 1 - k))]
        part = this_set[this_set[col].notna()]
        absent = this_set[this_set[col].isna()].groupby("grp")["n"].sum()
        grp, values, counts = (
            part["grp"].to_numpy(object),
            part[col].to_numpy(np.float64),
            part["n"].to_numpy(),
        )
        smd_continuous[label] = {g: (values[grp == g], counts[grp == g]) for g in groups}
        for g in [*groups, ALL]:
            keep = slice(None) if g == ALL else grp == g
            q1, med, q3 = _quantiles_from_counts(values[keep], counts[keep])
            rows.append(_cell(label, "", g, sizes[g], sizes[g], median=med, q1=q1, q3=q3))
        for g in [*groups, ALL]:
            n_missing = int(absent.sum()) if g == ALL else int(absent.get(g, 0))
            rows.append(_cell(label, MISSING, g, n_missing, sizes[g]))
    cat_cols = [col for _, col in TABLE1_CATEGORICAL]
    combos = con.execute(
        f"SELECT grp, {', '.join(f'{c}::VARCHAR AS {c}' for c in cat_cols)}, count(*) AS n "  # noqa: S608
        f"FROM ({sql}) GROUP BY ALL",
        params,
    ).df()
    for label, col in TABLE1_CATEGORICAL:
        per_group = combos.groupby(["grp", col], dropna=False, sort=False)["n"].sum()
        smd_categorical[label] = {g: {} for g in groups}
        missing = dict.fromkeys([*groups, ALL], 0)
        overall: dict[str, int] = {}
        cells = []
        for (g, level), n in per_group.items():
            if pd.isna(level):
                missing[g] += int(n)
                missing[ALL] += int(n)
                continue
            shown = {"true": "yes", "false": "no"}.get(level, level)
            smd_categorical[label][g][shown] = int(n)
            overall[shown] = overall.get(shown, 0) + int(n)
            cells.append((g, shown, int(n)))
        cells += [(ALL, lv, n) for lv, n in overall.items()]
        cells += [(g, MISSING, n) for g, n in missing.items()]
        rows.extend(_cell(label, level, g, n, sizes[g]) for g, level, n in cells)
    # without a group-by, the group is the whole cohort: the overall rows repeat it
    t1 = pd.DataFrame(rows).drop_duplicates(["variable", "level", "group"])
    variables = [v for v, _ in TABLE1_CONTINUOUS + TABLE1_CATEGORICAL]
    order = {v: i for i, v in enumerate(variables)}
    gorder = {g: i for i, g in enumerate([*groups, ALL])}
    t1 = t1.assign(
        _v=t1["variable"].map(order),
        _m=(t1["level"] == MISSING).astype(int),
        _g=t1["group"].map(gorder),
    )
    t1 = t1.sort_values(["_v", "_m", "level", "_g"]).drop(columns=["_v", "_m", "_g"])
    smd = table1_smd(groups, smd_continuous, smd_categorical, variables)
    return t1.reset_index(drop=True), smd


def table1_wide(table1: pd.DataFrame, smd: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 1 as displayed: one row per variable (and level), one column per group, texts in cells.

    With ``smd`` (``CohortResult.smd``, two or more groups) an "SMD" column holds each variable's
    standardised mean difference on its first row ("∞" where the groups do not overlap at all).
    """
    wide = table1.pivot_table(
        index=["variable", "level"], columns="group", values="text", aggfunc="first", sort=False
    )
    cols = [c for c in dict.fromkeys(table1["group"]) if c != ALL] + (
        [ALL] if ALL in set(table1["group"]) else []
    )
    wide = wide[cols].reset_index()
    # pivot_table keeps its own row order: back to Table 1's (variables in order, "missing" last)
    first_seen = {v: i for i, v in enumerate(dict.fromkeys(table1["variable"]))}
    wide = (
        wide.assign(_v=wide["variable"].map(first_seen), _m=wide["level"] == MISSING)
        .sort_values(["_v", "_m"], kind="stable")
        .drop(columns=["_v", "_m"])
        .reset_index(drop=True)
    )
    # a level absent from a group is a count of zero, not a missing value
    categorical = wide["level"] != ""
    wide.loc[categorical, cols] = wide.loc[categorical, cols].fillna("0 (0.0 %)")
    if smd is not None and not smd.empty:
        first = ~wide["variable"].duplicated()
        value = wide["variable"].map(dict(zip(smd["variable"], smd["smd"], strict=True)))
        wide["SMD"] = [
            ("∞" if v == math.inf else f"{v:.2f}") if is_first and v == v else ""
            for is_first, v in zip(first, value, strict=True)
        ]
    return wide


def build_cohort(
    con: duckdb.DuckDBPyConnection,
    filters=(),
    group_by: str | None = None,
    reference: str | None = None,
    with_table1: bool = True,
    with_tests: bool = True,
    live: bool = False,
) -> CohortResult:
    """Build the cohort and everything shown about it (see the module docstring).

    ``filters``: a ``CohortDefinition`` (AND/OR groups), or ``Filter`` s or strings
    "FIELD OP VALUE" (one group, all must hold); ``group_by`` overrides the definition's.
    ``reference``: the group hazard ratios are relative to (default: the largest group). Raises
    ``CohortError`` for a bad filter, a bad group-by field or an empty cohort.
    ``live``: ignore the stored ``cohort_base`` and build the rows from the source
    tables (what a stale base does; the benchmark compares the two).
    """
    definition = as_definition(filters, group_by)
    group_by = definition.group_by
    sql, params = cohort_sql(definition, None, None if live else base_source(con))
    counts = con.execute(
        f"""SELECT grp, rfs_days AS day, count(*) FILTER (event) AS events, count(*) AS removed
            FROM ({sql}) GROUP BY ALL ORDER BY grp, day""",  # noqa: S608 - constant text, values as parameters
        params,
    ).df()
    if counts.empty:
        described = definition.words(with_grouping=False) if definition.groups else "no filters"
        raise EmptyCohortError(f"no patient matches ({described})")
    # Arrays, not per-group DataFrame masks: at a million patients the counts are ~10,000 rows and
    # pandas indexing per group cost as much as the SQL (~35 ms of ~80).
    day, ev, rm = (counts[c].to_numpy(np.int64) for c in ("day", "events", "removed"))
    slices = _group_slices(counts["grp"].to_numpy(dtype=object))
    names = sorted(slices, key=lambda g: _group_order(group_by, g))
    size_of = {g: int(rm[slices[g]].sum()) for g in names}
    size_of[ALL] = sum(size_of.values())
    groups, at_risk = [], []
    for g in names:
        part = slices[g]
        fit = KaplanMeier.from_counts(day[part], ev[part], rm[part], size_of[g])
        groups.append(
            GroupSurvival(g, size_of[g], int(ev[part].sum()), fit.median(), _km_frame(fit))
        )
        at_risk.append((g, fit.at_risk_at(_AT_RISK_DAYS)))
    table1, smd = (
        _table1(con, sql, params, names, size_of)
        if with_table1
        else (pd.DataFrame(), pd.DataFrame(columns=["variable", "smd", "pair"]))
    )
    if group_by is not None and not smd.empty:  # the grouping variable differs by construction
        grouped = [label for label, col in TABLE1_CATEGORICAL if col == FIELDS[group_by].sql]
        smd.loc[smd["variable"].isin(grouped), ["smd", "pair"]] = (math.nan, "")
    logrank_p = chi2 = None
    ref = None
    hrs = pd.DataFrame(columns=["group", "hr", "lo", "hi", "p"])
    notes: list[str] = []
    if len(names) > 1 and with_tests:
        if reference is not None and reference not in names:
            raise CohortError(
                f"reference group {reference!r} is not in the cohort; groups: {', '.join(names)}"
            )
        ref = reference or max(names, key=lambda g: (size_of[g], g))
        logrank_p, chi2, hrs, notes = _survival_tests(counts, names, ref)
    small = [g.name for g in groups if g.n < 20]
    if small:
        notes.append(f"fewer than 20 patients in: {', '.join(small)} (curves are imprecise)")
    return CohortResult(
        definition.filters,
        group_by,
        size_of[ALL],
        int(counts["events"].sum()),
        tuple(groups),
        table1,
        _at_risk_frame(at_risk),
        logrank_p,
        chi2,
        ref,
        hrs,
        tuple(notes),
        definition,
        smd,
    )


def _at_risk_frame(per_group: list[tuple[str, np.ndarray]]) -> pd.DataFrame:
    """The number-at-risk table: group, years, at_risk (one row per group and whole year)."""
    return pd.DataFrame(
        {
            "group": np.repeat([g for g, _ in per_group], len(AT_RISK_YEARS)),
            "years": np.tile(AT_RISK_YEARS, len(per_group)),
            "at_risk": np.concatenate([a for _, a in per_group]).astype(np.int64),
        }
    )


def _group_order(group_by: str | None, name: str):
    """Catalogue order for enumerated fields (stage I before II), then alphabetical."""
    values = FIELDS[group_by].values if group_by else None
    if values and name in values:
        return (0, values.index(name), name)
    return (1, 0, name)
