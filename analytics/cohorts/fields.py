"""The cohort builder's field catalogue and filter parsing: what a researcher may filter on.

Why a catalogue: a cohort filter arrives as text from a command line or a
widget. Only names in ``FIELDS`` ever reach SQL text, and each maps to a
constant SQL expression written here; the user's *value* is always a query
parameter. An unknown field, an operator the field does not support, or a
value of the wrong type is a ``CohortError`` with a message that says what is
allowed, raised before any SQL runs.

Every field is a property of one patient, taken at the index (earliest)
diagnosis, so a cohort is a set of patients and Kaplan-Meier has one time
origin per patient.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from analytics.cohorts.base import NO_REGIMEN
from analytics.store import TREATMENT_OPTIONS

TREATMENT_CLASSES = ("surgery", "chemotherapy", "endocrine", "radiotherapy", "anti_her2")
AGE_GROUPS = ("<40", "40-49", "50-59", "60-69", "70+")


class CohortError(ValueError):
    """A cohort that cannot be built (bad filter, empty cohort); the message is meant for the user."""


class EmptyCohortError(CohortError):
    """No patient matches the filters: not a mistake in them, so the app shows it as a notice, not an error."""


@dataclass(frozen=True)
class Field:
    """One filterable property of a patient.

    ``kind``: 'number', 'date', 'category' (a column of the patient row) or
    'has' (the patient has at least one row with this value in a related table:
    a treatment received, an AI finding). ``sql``: the constant expression over
    the cohort base row (``kind`` != 'has') or a constant ``SELECT person_id``
    subquery with one ``?`` for the value ('has'). ``values``: allowed values of
    a category (None: any text). ``groupable``: may be a group-by field.
    """

    name: str
    label: str
    kind: str
    sql: str
    values: tuple[str, ...] | None = None
    groupable: bool = False
    unit: str = ""


_STATUS = ("positive", "negative")

FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("age", "Age at diagnosis", "number", "age_years", unit="years"),
        Field("age_group", "Age group", "category", "age_group", AGE_GROUPS, groupable=True),
        Field(
            "menopausal_status",
            "Menopausal status",
            "category",
            "menopausal_status",
            ("pre", "post"),
            groupable=True,
        ),
        Field("site", "Site", "category", "site", None, groupable=True),
        Field("diagnosis_date", "Diagnosis date", "date", "diagnosis_date"),
        Field("stage", "Stage", "category", "stage", ("I", "II", "III", "IV"), groupable=True),
        Field("grade", "Grade", "category", "grade", ("1", "2", "3"), groupable=True),
        Field("tumour_size", "Tumour size", "number", "tumour_size_mm", unit="mm"),
        Field("nodes", "Positive nodes", "number", "positive_nodes"),
        Field("er_fmol", "Oestrogen receptor", "number", "er_fmol", unit="fmol/mg"),
        Field("pr_fmol", "Progesterone receptor", "number", "pr_fmol", unit="fmol/mg"),
        Field("er_status", "ER status", "category", "er_status", _STATUS, groupable=True),
        Field("pr_status", "PR status", "category", "pr_status", _STATUS, groupable=True),
        Field("her2_status", "HER2 status", "category", "her2_status", _STATUS, groupable=True),
        Field(
            "first_line_regimen",
            "First-line regimen",
            "category",
            "first_line_regimen",
            (*TREATMENT_OPTIONS, NO_REGIMEN),
            groupable=True,
        ),
        Field(
            "treatment",
            "Treatment received (any line)",
            "has",
            "SELECT person_id FROM treatment_exposure WHERE treatment_class = ?",
            TREATMENT_CLASSES,
        ),
        Field(
            "agent",
            "Agent received (any line)",
            "has",
            "SELECT person_id FROM treatment_exposure WHERE agent = ?",
        ),
        Field(
            "ai_finding",
            "AI finding (predicted class)",
            "has",
            "SELECT person_id FROM ai_finding WHERE predicted_class = ?",
        ),
        Field(
            "ai_lesion",
            "AI-measured lesion, largest",
            "has",
            "SELECT person_id FROM ai_finding GROUP BY person_id HAVING max(longest_diameter_mm) {op} ?",
            unit="mm",
        ),
    )
}

# Operators per kind of field. 'in' takes a comma-separated list; 'between' takes "low,high" (inclusive).
OPERATORS: dict[str, tuple[str, ...]] = {
    "number": ("=", "!=", "<", "<=", ">", ">=", "between"),
    "date": ("=", "!=", "<", "<=", ">", ">=", "between"),
    "category": ("=", "!=", "in"),
    "has": ("=", "!=", "in"),
}
OPERATORS_BY_FIELD = {"ai_lesion": ("<", "<=", ">", ">=")}
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

_FILTER_RE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|!=|=|<|>|\bin\b|\bbetween\b)\s*(.*?)\s*$"
)


@dataclass(frozen=True)
class Filter:
    """One condition on a catalogue field; ``value`` is the text as typed (parsed by ``compile``)."""

    field: str
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.value}"


def operators_for(field: Field) -> tuple[str, ...]:
    return OPERATORS_BY_FIELD.get(field.name, OPERATORS[field.kind])


def parse_filter(text: str) -> Filter:
    """``"age >= 50"``, ``"stage in II,III"``, ``"diagnosis_date between 2020-01-01,2022-12-31"``."""
    m = _FILTER_RE.match(text or "")
    if not m:
        raise CohortError(
            f'cannot read the filter {text!r}: write FIELD OP VALUE, e.g. "age >= 50" '
            f"(operators: = != < <= > >= in between)"
        )
    field, op, value = m.group(1).lower(), m.group(2).lower(), m.group(3)
    if not value:
        raise CohortError(f"the filter {text!r} has no value")
    return Filter(field, op, value)


def field(name: str) -> Field:
    try:
        return FIELDS[name]
    except KeyError:
        raise CohortError(f"unknown field {name!r}; fields: {', '.join(FIELDS)}") from None


def group_field(name: str) -> Field:
    f = field(name)
    if not f.groupable:
        allowed = ", ".join(n for n, g in FIELDS.items() if g.groupable)
        raise CohortError(f"cannot group by {name!r}; group-by fields: {allowed}")
    return f


def _scalar(f: Field, text: str) -> object:
    text = text.strip()
    if f.kind == "number" or f.name == "ai_lesion":
        try:
            value = float(text)
        except ValueError:
            raise CohortError(f"{f.name} takes a number, not {text!r}") from None
        if not math.isfinite(value):
            raise CohortError(f"{f.name} takes a finite number, not {text!r}")
        return value
    if f.kind == "date":
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise CohortError(f"{f.name} takes a date as YYYY-MM-DD, not {text!r}") from None
    if f.values is not None:
        match = {v.lower(): v for v in f.values}.get(text.lower())
        if match is None:
            raise CohortError(f"{f.name} is one of {', '.join(f.values)}, not {text!r}")
        return match
    if not text:
        raise CohortError(f"{f.name} needs a value")
    return text


def _values(text: str) -> list[str]:
    parts = [p for p in re.split(r"\s*(?:,|\.\.)\s*", text.strip()) if p != ""]
    return parts


def compile_filter(flt: Filter) -> tuple[str, list[object]]:
    """One filter as a SQL condition over the cohort base row (constant text) and its parameters."""
    f = field(flt.field)
    if flt.op not in operators_for(f):
        raise CohortError(
            f"{f.name} takes the operators {' '.join(operators_for(f))}, not {flt.op!r}"
        )
    if f.kind == "has":
        if f.name == "ai_lesion":
            return f"person_id IN ({f.sql.format(op=_SQL_OPS[flt.op])})", [_scalar(f, flt.value)]
        items = (
            [_scalar(f, v) for v in _values(flt.value)]
            if flt.op == "in"
            else [_scalar(f, flt.value)]
        )
        if not items:
            raise CohortError(f"the filter {flt} lists no values")
        sub = f.sql.replace("= ?", "IN (" + ", ".join("?" * len(items)) + ")")
        return f"person_id {'NOT IN' if flt.op == '!=' else 'IN'} ({sub})", items
    column = f.sql
    if flt.op == "in":
        items = [_scalar(f, v) for v in _values(flt.value)]
        if not items:
            raise CohortError(f"the filter {flt} lists no values")
        return f"{column} IN ({', '.join('?' * len(items))})", items
    if flt.op == "between":
        bounds = _values(flt.value)
        if len(bounds) != 2:
            raise CohortError(f'{f.name} between takes two values, "LOW,HIGH", not {flt.value!r}')
        low, high = (_scalar(f, v) for v in bounds)
        if low > high:  # type: ignore[operator]  # _scalar is object; both are the field's kind
            raise CohortError(
                f"{f.name} between {low} and {high}: the first value must be the lower"
            )
        return f"{column} BETWEEN ? AND ?", [low, high]
    return f"{column} {_SQL_OPS[flt.op]} ?", [_scalar(f, flt.value)]


def compile_where(filters: list[Filter] | tuple[Filter, ...]) -> tuple[str, list[object]]:
    """All filters ANDed: ``(WHERE text, parameters)``; ``TRUE`` when there are none."""
    clauses, params = [], []
    for flt in filters:
        clause, p = compile_filter(flt)
        clauses.append(f"({clause})")
        params.extend(p)
    return (" AND ".join(clauses) if clauses else "TRUE"), params
