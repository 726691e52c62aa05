"""A cohort a researcher can reuse: its definition in words, and exports that carry it.

Why: a CSV named "cohort.csv" with no definition cannot be traced back to the question it answers once it
leaves the app; an ethics-board export with exact dates identifies patients more than the board needs.
Every export therefore starts with its name, its definition in words (AND/OR groups,
``analytics.cohorts.definition``), as the "FIELD OP VALUE" texts and as the JSON ``oncolens cohort
--definition`` takes, the data cut-off, who exported it, and how ids and dates were
protected; the same header is the Parquet file's metadata. Pure functions (no Streamlit): the page and
tests call them alike.
"""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analytics.cohorts import definition
from analytics.cohorts.definition import CohortDefinition, as_definition

# A file name is built from the name a user typed: only these characters survive, never a path.
_SLUG = re.compile(r"[^a-z0-9]+")
METADATA_KEY = b"oncolens.cohort"


def filter_words(text: str) -> str:
    """``"age >= 50"`` -> "Age at diagnosis ≥ 50 years" (the field's label and unit, the operator in words)."""
    return definition.filter_words(text)


def definition_words(
    filters: CohortDefinition | tuple[str, ...] | list[str], group_by: str | None = None
) -> str:
    """The whole cohort in one sentence: "(A AND B) OR (C)", and its grouping.

    ``filters``: a ``CohortDefinition`` or a list of filters (one group, all must hold).
    """
    return as_definition(filters, group_by).words()


def file_stem(name: str) -> str:
    """A file name from a cohort's name: lower-case letters, digits and hyphens only ("cohort" if none)."""
    return _SLUG.sub("-", (name or "").lower()).strip("-")[:60] or "cohort"


def month_only(frame: pd.DataFrame) -> pd.DataFrame:
    """Every date column as its month ("2025-01"): for exports to readers who may not see exact dates."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = out[column].dt.strftime("%Y-%m")
    return out


def header(
    *,
    name: str,
    filters: CohortDefinition | tuple[str, ...] | list[str],
    group_by: str | None = None,
    data_cutoff: str | None,
    exported_by: str,
    exported_at: str,
    ids: str,
    dates: str,
    rows: int,
    saved_cohort: int | None = None,
) -> dict[str, object]:
    """What the export says about itself (first lines of the CSV, metadata of the Parquet file).

    ``filters``: the ``CohortDefinition`` (or a one-group list of filters). "groups" holds its
    "FIELD OP VALUE" texts; "reproduce" is the command that rebuilds it: ``--filter`` s for one
    group, ``--definition FILE.json`` (the "definition_json" line saved as a file) for OR groups.
    """
    cohort = as_definition(filters, group_by)
    about: dict[str, object] = {
        "cohort": name,
        "definition": cohort.words(),
        "groups": cohort.texts(),
        "group_by": cohort.group_by,
        "definition_json": cohort.canonical(),
        "data_cutoff": data_cutoff or "not recorded in this store",
        "exported_by": exported_by,
        "exported_at": exported_at,
        "patients": rows,
        "person_id": ids,
        "dates": dates,
        "reproduce": (
            f"oncolens cohort {cohort.cli_arguments()}".rstrip()
            if cohort.is_single_group
            else "oncolens cohort --definition FILE.json (FILE.json: the definition_json line)"
        ),
    }
    if cohort.is_single_group:  # the one-group form older readers of these files know
        about["filters"] = [str(f) for f in cohort.filters]
    if saved_cohort is not None:
        about["saved_cohort"] = f"{saved_cohort} (open with ?cohort={saved_cohort})"
    return about


def csv_bytes(frame: pd.DataFrame, about: dict[str, object]) -> bytes:
    """The CSV with ``about`` as "# key: value" lines first (``pd.read_csv(..., comment="#")`` skips them)."""
    lines = [
        f"# {k}: {json.dumps(v, ensure_ascii=False) if isinstance(v, list) else ('none' if v is None else v)}"
        for k, v in about.items()
    ]
    return ("\n".join(lines) + "\n" + frame.to_csv(index=False)).encode()


def parquet_bytes(frame: pd.DataFrame, about: dict[str, object]) -> bytes:
    """The Parquet file with ``about`` (JSON) in its schema metadata under ``oncolens.cohort``."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(about).encode()
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()
