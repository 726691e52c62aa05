"""A cohort definition: groups of conditions, ANDed within a group and ORed between groups.

Why this shape (disjunctive normal form): the questions researchers bring read that way, "women
of 50 or over with a grade 3 tumour, or anyone HER2-positive" is ``(age >= 50 AND grade = 3) OR
(her2_status = positive)``, and any AND/OR combination can be written as such groups. One level
of grouping keeps the words on the page, the JSON file and the SQL the same shape: no operator
precedence to explain.

One typed object for the page, ``oncolens cohort --definition FILE.json``, saved cohorts and the
exports: ``CohortDefinition`` compiles to one parameterised condition over the cohort base row
(field names reach SQL only through the catalogue's constant expressions, values only as
parameters: ``analytics.cohorts.fields``), says itself in words, and round-trips through JSON::

    {"groups": [["age >= 50", "grade = 3"], ["her2_status = positive"]], "group_by": null}

A definition without conditions is every patient.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analytics.cohorts.fields import (
    FIELDS,
    CohortError,
    Filter,
    compile_filter,
    group_field,
    parse_filter,
)

# Bounds on what one definition may hold: a query a person could read, never an unbounded SQL text.
MAX_GROUPS = 10
MAX_CONDITIONS = 20  # per group
FORMAT_VERSION = 1

_OPS_IN_WORDS = {
    "=": "is",
    "!=": "is not",
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
    "in": "is one of",
    "between": "between",
}


def filter_words(flt: Filter | str) -> str:
    """``"age >= 50"`` -> "Age at diagnosis ≥ 50 years" (the field's label and unit, the operator in words)."""
    f = flt if isinstance(flt, Filter) else parse_filter(flt)
    catalogue = FIELDS[f.field] if f.field in FIELDS else None
    label = catalogue.label if catalogue else f.field
    parts = [p.strip() for p in f.value.split(",")]
    shown = " and ".join(parts) if f.op == "between" else ", ".join(parts)
    unit = f" {catalogue.unit}" if catalogue and catalogue.unit else ""
    return f"{label} {_OPS_IN_WORDS.get(f.op, f.op)} {shown}{unit}"


@dataclass(frozen=True)
class CohortDefinition:
    """Who is in a cohort: ``groups`` of ``Filter`` s (AND inside a group, OR between groups).

    ``group_by``: the catalogue field the cohort's curves and Table 1 compare (None: one group).
    Build with ``of`` / ``from_json`` (both check every condition before any SQL exists).
    """

    groups: tuple[tuple[Filter, ...], ...] = ()
    group_by: str | None = None

    # --- building ------------------------------------------------------------------------
    @classmethod
    def of(
        cls,
        groups: Iterable[Iterable[Filter | str]] = (),
        group_by: str | None = None,
    ) -> CohortDefinition:
        """From texts or filters; empty groups are dropped. Raises ``CohortError`` naming the problem."""
        parsed = tuple(
            tuple(f if isinstance(f, Filter) else parse_filter(str(f)) for f in group)
            for group in groups
        )
        definition = cls(tuple(g for g in parsed if g), group_by or None)
        definition.check()
        return definition

    @classmethod
    def from_filters(
        cls, filters: Iterable[Filter | str] = (), group_by: str | None = None
    ) -> CohortDefinition:
        """One group: every filter must hold (what ``oncolens cohort --filter ...`` means)."""
        return cls.of([list(filters)], group_by)

    @classmethod
    def from_json(cls, value: object) -> CohortDefinition:
        """From the JSON object (or its text): ``{"groups": [[...], ...], "group_by": ...}``.

        ``{"filters": [...]}`` is read as one group, so an export's header can be fed back.
        """
        if isinstance(value, str | bytes):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CohortError(f"the cohort definition is not valid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise CohortError(
                'a cohort definition is a JSON object: {"groups": [["age >= 50"]], "group_by": null}'
            )
        unknown = set(value) - {"groups", "filters", "group_by", "version", "words"}
        if unknown:
            raise CohortError(
                f"unknown key(s) in the cohort definition: {', '.join(sorted(unknown))}"
            )
        groups = value.get("groups")
        if groups is None:
            groups = [value.get("filters") or []]
        if not isinstance(groups, list) or not all(
            isinstance(g, list) and all(isinstance(t, str) for t in g) for g in groups
        ):
            raise CohortError(
                'the cohort definition\'s "groups" is a list of lists of "FIELD OP VALUE" texts'
            )
        group_by = value.get("group_by")
        if group_by is not None and not isinstance(group_by, str):
            raise CohortError('"group_by" is a field name or null')
        return cls.of(groups, group_by)

    def check(self) -> None:
        """Every condition compiles and the group-by field may group; sizes within bounds."""
        if len(self.groups) > MAX_GROUPS:
            raise CohortError(
                f"a cohort has at most {MAX_GROUPS} OR groups, not {len(self.groups)}"
            )
        for i, group in enumerate(self.groups, start=1):
            if len(group) > MAX_CONDITIONS:
                raise CohortError(
                    f"group {i} has {len(group)} conditions; at most {MAX_CONDITIONS}"
                )
            for flt in group:
                compile_filter(flt)
        if self.group_by is not None:
            group_field(self.group_by)

    # --- reading -------------------------------------------------------------------------
    @property
    def filters(self) -> tuple[Filter, ...]:
        """Every condition, in order (a one-group definition's filters)."""
        return tuple(f for group in self.groups for f in group)

    @property
    def is_single_group(self) -> bool:
        return len(self.groups) <= 1

    def compile(self) -> tuple[str, list[object]]:
        """``(condition, parameters)`` over the base row: ``(a AND b) OR (c)``; ``TRUE`` when empty."""
        ors, params = [], []
        for group in self.groups:
            ands = []
            for flt in group:
                clause, p = compile_filter(flt)
                ands.append(f"({clause})")
                params.extend(p)
            ors.append("(" + " AND ".join(ands) + ")")
        return (" OR ".join(ors) if ors else "TRUE"), params

    def words(self, with_grouping: bool = True) -> str:
        """The cohort in one sentence: "(Age ≥ 50 years AND Grade is 3) OR (HER2 status is positive)"."""
        if not self.groups:
            text = "every patient"
        elif len(self.groups) == 1:
            text = " AND ".join(filter_words(f) for f in self.groups[0])
        else:
            text = " OR ".join(
                "(" + " AND ".join(filter_words(f) for f in group) + ")" for group in self.groups
            )
        if with_grouping and self.group_by:
            label = FIELDS[self.group_by].label
            text += (
                f", compared by {label if label[:2].isupper() else label[0].lower() + label[1:]}"
            )
        return text

    def texts(self) -> list[list[str]]:
        """The groups as "FIELD OP VALUE" texts (what the page edits and the JSON holds)."""
        return [[str(f) for f in group] for group in self.groups]

    def to_json(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "groups": self.texts(),
            "group_by": self.group_by,
            "words": self.words(),
        }

    def canonical(self) -> str:
        """Stable JSON text (cache keys, audit details, the saved row)."""
        body = {"version": FORMAT_VERSION, "groups": self.texts(), "group_by": self.group_by}
        return json.dumps(body, sort_keys=True, ensure_ascii=False)

    def cli_arguments(self) -> str:
        """The ``oncolens cohort`` arguments that reproduce a one-group definition ("" for none)."""
        parts = [f'--filter "{f}"' for f in self.filters]
        if self.group_by:
            parts.append(f"--group-by {self.group_by}")
        return " ".join(parts)


def as_definition(
    value: CohortDefinition | Sequence[Filter | str] | None, group_by: str | None = None
) -> CohortDefinition:
    """A definition from a definition (``group_by`` overrides when given) or a list of filters (one group)."""
    if isinstance(value, CohortDefinition):
        if group_by is not None and group_by != value.group_by:
            return CohortDefinition.of(value.groups, group_by)
        return value
    return CohortDefinition.from_filters(value or (), group_by)
