"""A cohort a researcher can reuse: its definition in words, and exports that carry it.

Why: a CSV named "cohort.csv" with no definition cannot be traced back to the question it answers once it
leaves the app; an ethics-board export with exact dates identifies patients more than the board needs.
Every export therefore starts with its name, its filters in words and as the "FIELD OP VALUE" texts
``oncolens cohort --filter`` takes, the data cut-off, who exported it, and how ids and dates were
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

from analytics.cohorts.fields import FIELDS, parse_filter

_OPS = {
    "=": "is",
    "!=": "is not",
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
    "in": "is one of",
    "between": "between",
}
# A file name is built from the name a user typed: only these characters survive, never a path.
_SLUG = re.compile(r"[^a-z0-9]+")
METADATA_KEY = b"oncolens.cohort"


def filter_words(text: str) -> str:
    """``"age >= 50"`` -> "Age at diagnosis ≥ 50 years" (the field's label and unit, the operator in words)."""
    f = parse_filter(text)
    field = FIELDS[f.field]
    parts = [p.strip() for p in f.value.split(",")]
    shown = " and ".join(parts) if f.op == "between" else ", ".join(parts)
    unit = f" {field.unit}" if field.unit else ""
    return f"{field.label} {_OPS.get(f.op, f.op)} {shown}{unit}"


def definition_words(filters: tuple[str, ...] | list[str], group_by: str | None = None) -> str:
    """The whole cohort in one sentence: its filters joined by AND, and its grouping."""
    words = " AND ".join(filter_words(t) for t in filters) if filters else "every patient"
    if group_by:
        words += f", compared by {FIELDS[group_by].label.lower()}"
    return words


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
    filters: tuple[str, ...] | list[str],
    group_by: str | None,
    data_cutoff: str | None,
    exported_by: str,
    exported_at: str,
    ids: str,
    dates: str,
    rows: int,
) -> dict[str, object]:
    """What the export says about itself (first lines of the CSV, metadata of the Parquet file)."""
    return {
        "cohort": name,
        "definition": definition_words(filters, group_by),
        "filters": list(filters),
        "group_by": group_by,
        "data_cutoff": data_cutoff or "not recorded in this store",
        "exported_by": exported_by,
        "exported_at": exported_at,
        "patients": rows,
        "person_id": ids,
        "dates": dates,
        "reproduce": "oncolens cohort "
        + " ".join(f'--filter "{t}"' for t in filters)
        + (f" --group-by {group_by}" if group_by else ""),
    }


def csv_bytes(frame: pd.DataFrame, about: dict[str, object]) -> bytes:
    """The CSV with ``about`` as "# key: value" lines first (``pd.read_csv(..., comment="#")`` skips them)."""
    lines = [f"# {k}: {json.dumps(v) if isinstance(v, list) else v}" for k, v in about.items()]
    return ("\n".join(lines) + "\n" + frame.to_csv(index=False)).encode()


def parquet_bytes(frame: pd.DataFrame, about: dict[str, object]) -> bytes:
    """The Parquet file with ``about`` (JSON) in its schema metadata under ``oncolens.cohort``."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(about).encode()
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    return buffer.getvalue()
