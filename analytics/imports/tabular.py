"""``oncolens import``: a hospital's own records (CSV, Parquet, FHIR R4 bundles) into the store.

The rules, and why:

- **One transaction per file.** Rows are parsed and validated before the store is
  opened; the file is then held for one transaction that inserts every valid
  row, refreshes the derived cohort rows (``analytics.cohorts.base``) and the
  stored worklist of the patients it names (``analytics.worklist.stored``) and commits.
  A failure inside it rolls everything back: nothing is half-written.
- **Nothing dropped silently.** Every row ends in exactly one outcome: inserted,
  updated, unchanged (already in the store or repeated in the file), or rejected
  with its reason. Rejections and duplicates go to a report file (CSV) and a
  summary line.
- **Re-importing is harmless.** Rows are matched on natural keys (the MRN for a
  patient; patient + date + code for clinical rows, ``docs/imports.md``), so
  the same file twice inserts nothing the second time.
- **Patients are named by MRN.** A hospital does not know OncoLens's
  ``person_id``; every clinical row carries ``mrn``, resolved against the store
  and the patients of the same import.
- **A file must be what its name says.** ``.csv`` must be text, ``.parquet``
  must carry Parquet's magic bytes, ``.json`` must be a FHIR Bundle; otherwise
  the message says what the file looks like instead.

Column sets (``TABLES``) are documented in docs/imports.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics import episodes, store
from analytics.cohorts import base as cohort_base
from analytics.governance.chain import append_event, chained_transaction
from analytics.imports import episode_rows
from analytics.imports.errors import ImportFileError
from analytics.imports.fhir import bundle_frames


@dataclass(frozen=True)
class Column:
    """One importable column: ``kind`` in str, int, float, date, bool; ``values`` for enumerations."""

    name: str
    kind: str = "str"
    required: bool = True
    values: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False


@dataclass(frozen=True)
class Table:
    """An importable table: its columns and the natural key that makes a re-import a no-op."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def required(self) -> set[str]:
        return {c.name for c in self.columns if c.required}


_CLASSES = ("surgery", "chemotherapy", "endocrine", "radiotherapy", "anti_her2")
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "person",
            (
                Column("mrn"),
                Column("given_name"),
                Column("family_name"),
                Column("birth_date", "date"),
                Column("sex", values=("F", "M")),
                Column("site"),
                Column("menopausal_status", values=("pre", "post")),
            ),
            ("mrn",),
        ),
        Table(
            "observation_period",
            (
                Column("mrn"),
                Column("start_date", "date"),
                Column("end_date", "date"),
                Column("end_reason", values=("data_cutoff", "lost_to_follow_up", "death")),
            ),
            ("mrn",),
        ),
        Table(
            "condition_occurrence",
            (
                Column("mrn"),
                Column("condition"),
                Column("diagnosis_date", "date"),
                Column("laterality", values=("left", "right")),
                Column("stage", values=("I", "II", "III", "IV")),
                Column("grade", "int", minimum=1, maximum=3),
                Column("tumour_size_mm", "float", minimum=0, maximum=300, exclusive_minimum=True),
                Column("positive_nodes", "int", minimum=0),
                Column("er_fmol", "float", minimum=0),
                Column("pr_fmol", "float", minimum=0),
                Column("er_positive", "bool"),
                Column("pr_positive", "bool"),
                Column("her2_positive", "bool"),
            ),
            ("mrn", "condition", "diagnosis_date", "laterality"),
        ),
        Table(
            "treatment_exposure",
            (
                Column("mrn"),
                Column("exposure_type", values=("drug", "procedure")),
                Column("treatment_class", values=_CLASSES),
                Column("agent"),
                Column("line_of_therapy", "int", minimum=1),
                Column("regimen", required=False, values=store.TREATMENT_OPTIONS),
                Column("start_date", "date"),
                Column("end_date", "date", required=False),
            ),
            ("mrn", "treatment_class", "agent", "line_of_therapy", "start_date"),
        ),
        Table(
            "measurement",
            (
                Column("mrn"),
                Column("measurement_date", "date"),
                Column("concept"),
                Column("value", "float"),
                Column("unit"),
                Column("study_uid", required=False),
            ),
            ("mrn", "measurement_date", "concept", "value", "unit"),
        ),
        Table(
            "outcome_event",
            (
                Column("mrn"),
                Column("event_type", values=("recurrence", "death")),
                Column("event_date", "date"),
            ),
            ("mrn", "event_type"),
        ),
        Table(
            "imaging_study",
            (
                Column("study_uid"),
                Column("mrn"),
                Column("study_date", "date"),
                Column("modality", values=("MG", "MR", "CT", "US", "PT", "OT")),
                Column("description", required=False),
                Column("accession_number", required=False),
            ),
            ("study_uid",),
        ),
        # disease settings and lines of therapy (analytics.episodes); one episode of each kind per
        # setting, lines by number, so a corrected date updates the row instead of adding one
        Table(
            "episode",
            (
                Column("mrn"),
                Column("setting", values=episodes.SETTINGS),
                Column("kind", values=episodes.KINDS),
                Column("line_number", "int", required=False, minimum=1, maximum=99),
                Column("start_date", "date"),
                Column("end_date", "date", required=False),
                Column("end_reason", required=False, values=episodes.END_REASONS),
                Column("detail", required=False),
            ),
            ("mrn", "setting", "kind", "line_number"),
        ),
    )
}
# Persons first (the other tables name them), then deaths (every other date is checked against them).
ORDER = ("person", "outcome_event", *(t for t in TABLES if t not in ("person", "outcome_event")))
EARLIEST = pd.Timestamp("1900-01-01")  # no clinical record in this store is older
MAX_AGE_YEARS = 120  # oldest plausible patient at any recorded date
_TRUE = {"true", "t", "yes", "y", "1", "positive", "pos"}
_FALSE = {"false", "f", "no", "n", "0", "negative", "neg"}


@dataclass
class ImportReport:
    """What happened to one file: per table counts and every row that was not inserted or updated."""

    file: str
    kind: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> outcome -> rows
    problems: list[dict] = field(default_factory=list)  # origin, table, outcome, reason
    error: str | None = None
    report_path: str | None = None

    def add(self, table: str, outcome: str, n: int = 1) -> None:
        if n:
            per = self.counts.setdefault(table, {})
            per[outcome] = per.get(outcome, 0) + int(n)

    def note(self, origin: str, table: str, outcome: str, reason: str) -> None:
        self.problems.append(
            {"origin": origin, "table": table, "outcome": outcome, "reason": reason}
        )
        self.add(table, outcome)

    def total(self, outcome: str) -> int:
        return sum(per.get(outcome, 0) for per in self.counts.values())

    def summary(self) -> str:
        if self.error:
            return f"{self.file}: not imported: {self.error}"
        parts = [f"{self.total(o):,} {o}" for o in ("inserted", "updated", "unchanged", "rejected")]
        tables = ", ".join(sorted(self.counts)) or "no rows"
        line = f"{self.file} ({self.kind}: {tables}): " + ", ".join(parts)
        return line + (f"; report: {self.report_path}" if self.report_path else "")

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "kind": self.kind,
            "counts": self.counts,
            "error": self.error,
            "rejected": self.total("rejected"),
            "report": self.report_path,
        }


# --- reading files ------------------------------------------------------------------------------


def sniff(path: Path) -> str:
    """'csv', 'parquet' or 'fhir' from the extension, checked against the first bytes."""
    suffix = path.suffix.lower()
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    looks = (
        "Parquet"
        if head[:4] == b"PAR1"
        else "binary data"
        if b"\0" in head
        else "JSON"
        if head.lstrip()[:1] in (b"{", b"[")
        else "text"
    )
    if suffix in (".csv", ".tsv", ".txt"):
        if looks in ("Parquet", "binary data"):
            raise ImportFileError(f"{path.name} is named like a CSV file but holds {looks}")
        return "csv"
    if suffix in (".parquet", ".pq"):
        if looks != "Parquet":
            raise ImportFileError(
                f"{path.name} is named like a Parquet file but holds {looks} (no PAR1 magic)"
            )
        return "parquet"
    if suffix in (".json", ".ndjson"):
        if looks != "JSON":
            raise ImportFileError(f"{path.name} is named like a FHIR JSON bundle but holds {looks}")
        return "fhir"
    raise ImportFileError(
        f"{path.name}: unsupported file type {suffix or '(none)'}; use .csv, .parquet or .json"
    )


def table_for(path: Path, columns: list[str]) -> Table:
    """The table a CSV/Parquet file is for: its name (``person.csv``) or else its header."""
    stem = path.name.split(".")[0].lower()
    if stem in TABLES:
        return TABLES[stem]
    cols = set(columns)
    matches = [t for t in TABLES.values() if t.required <= cols]
    if len(matches) > 1:  # an episode file also has observation_period's columns: all must fit
        matches = [t for t in matches if cols <= {c.name for c in t.columns}] or matches
    if len(matches) == 1:
        return matches[0]
    best = max(TABLES.values(), key=lambda t: len(t.required & cols))
    missing = sorted(best.required - cols)
    raise ImportFileError(
        f"{path.name}: cannot tell which table this is for; name the file after the table "
        f"({', '.join(TABLES)}) or give its columns (closest: {best.name}, missing {', '.join(missing)})"
    )


def _refuse_nested(path: Path) -> None:
    """Parquet columns of lists, structs or maps are refused, not stored as Python reprs: every
    import column is one value per row (docs/imports.md); flatten such a column before importing."""
    # lazy: only Parquet files need pyarrow's schema reader (pandas loads pyarrow lazily too)
    import pyarrow.parquet as pq

    # lazy: as above
    import pyarrow.types as patypes

    nested = [f.name for f in pq.read_schema(path) if patypes.is_nested(f.type)]
    if nested:
        raise ImportFileError(
            f"{path.name}: nested columns (lists, structs or maps) are not imported: "
            f"{', '.join(sorted(nested))}; flatten them to one value per row first"
        )


def read_table_file(path: Path, kind: str) -> tuple[Table, pd.DataFrame]:
    try:
        if kind == "csv":
            df = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                sep=None
                if path.suffix == ".txt"
                else ("\t" if path.suffix.lower() == ".tsv" else ","),
                engine="python",
            )
        else:
            _refuse_nested(path)
            df = pd.read_parquet(path)
    except ImportFileError:
        raise
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path.name} is not UTF-8 text ({exc.reason})") from exc
    except Exception as exc:  # pandas/pyarrow parser errors: one message
        raise ImportFileError(f"{path.name} cannot be read as {kind.upper()}: {exc}") from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    table = table_for(path, list(df.columns))
    unknown = sorted(set(df.columns) - {c.name for c in table.columns})
    if unknown:
        raise ImportFileError(
            f"{path.name}: columns not in the {table.name} column set: {', '.join(unknown)} "
            f"(see docs/imports.md)"
        )
    missing = sorted(table.required - set(df.columns))
    if missing:
        raise ImportFileError(
            f"{path.name}: the {table.name} table needs the columns {', '.join(missing)}"
        )
    # origins: the CSV line (header is line 1) or the Parquet row number
    df = df.assign(
        _origin=[
            f"{'line' if kind == 'csv' else 'row'} {i + (2 if kind == 'csv' else 1)}"
            for i in range(len(df))
        ]
    )
    return table, df


# --- validation ---------------------------------------------------------------------------------


def _today() -> pd.Timestamp:
    """Today (UTC date): no record of what happened can be dated later."""
    return pd.Timestamp(dt.datetime.now(dt.timezone.utc).date())


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype(str).str.strip() == "")


def validate(table: Table, df: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Typed, valid rows of ``df`` and (origin, reason) for every row that is not."""
    reasons = pd.Series([[] for _ in range(len(df))], index=df.index, dtype=object)

    def flag(mask: pd.Series, text: str) -> None:
        for i in mask[mask].index:
            reasons[i].append(text)

    out = pd.DataFrame({"_origin": df["_origin"]}, index=df.index)
    for col in table.columns:
        raw = df[col.name] if col.name in df else pd.Series([None] * len(df), index=df.index)
        blank = _blank(raw)
        if col.required:
            flag(blank, f"{col.name} is missing")
        text = raw.astype(str).str.strip()
        if col.kind == "str":
            value = text.where(~blank, None)
            if col.values is not None:
                bad = ~blank & ~value.isin(col.values)
                flag(bad, f"{col.name} must be one of {', '.join(col.values)}")
        elif col.kind in ("int", "float"):
            value = pd.to_numeric(text.where(~blank), errors="coerce")
            flag(~blank & value.isna(), f"{col.name} is not a number")
            if col.kind == "int":
                flag(
                    ~blank & value.notna() & (value != np.round(value)),
                    f"{col.name} is not a whole number",
                )
            if col.minimum is not None:
                low = (value <= col.minimum) if col.exclusive_minimum else (value < col.minimum)
                flag(
                    value.notna() & low,
                    f"{col.name} must be {'>' if col.exclusive_minimum else '>='} {col.minimum:g}",
                )
            if col.maximum is not None:
                flag(
                    value.notna() & (value > col.maximum), f"{col.name} must be <= {col.maximum:g}"
                )
        elif col.kind == "date":
            value = pd.to_datetime(text.where(~blank), errors="coerce", format="%Y-%m-%d")
            flag(~blank & value.isna(), f"{col.name} is not a date (YYYY-MM-DD)")
            value = value.dt.date
        elif col.kind == "bool":
            low = text.str.lower()
            value = low.map(lambda v: True if v in _TRUE else False if v in _FALSE else None)
            flag(~blank & value.isna(), f"{col.name} is not true/false")
        out[col.name] = value
    for col in table.columns:  # no clinical date before 1900 or after today; no patient over 120
        if col.kind != "date":
            continue
        when = pd.to_datetime(out[col.name])
        flag(when.notna() & (when < EARLIEST), f"{col.name} is before {EARLIEST:%Y-%m-%d}")
        flag(when.notna() & (when > _today()), f"{col.name} is in the future")
    if table.name == "person":
        born = pd.to_datetime(out["birth_date"])
        oldest = _today() - pd.DateOffset(years=MAX_AGE_YEARS)
        flag(born.notna() & (born < oldest), f"birth_date makes her older than {MAX_AGE_YEARS}")
    if table.name in ("observation_period", "treatment_exposure", "episode"):
        start = "start_date"
        end = "end_date"
        both = out[start].notna() & out[end].notna()
        flag(
            both & (pd.to_datetime(out[end]) < pd.to_datetime(out[start])),
            f"{end} is before {start}",
        )
    if table.name == "measurement":
        lesion = out["concept"] == "lesion_longest_diameter"
        flag(
            lesion & ((out["unit"] != "mm") | (out["value"] < 0)),
            "a lesion diameter must be >= 0 mm",
        )
    if table.name == "episode":
        episode_rows.check_rows(out, flag)
        episode_rows.check_lines_in_file(
            out,
            ~reasons.map(bool),
            lambda i, text: reasons[i].append(text),
        )
    bad = reasons.map(bool)
    rejected = [(df.at[i, "_origin"], "; ".join(reasons[i])) for i in reasons[bad].index]
    return out[~bad].reset_index(drop=True), rejected


# --- loading ------------------------------------------------------------------------------------


def _resolve_people(
    con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, table: str, report: ImportReport
) -> pd.DataFrame:
    """Attach person_id by MRN; rows of unknown patients are rejected."""
    mrns = rows["mrn"].dropna().unique().tolist()
    known = (
        dict(
            con.execute(
                "SELECT mrn, person_id FROM person WHERE mrn IN (SELECT unnest(?))", [mrns]
            ).fetchall()
        )
        if mrns
        else {}
    )
    rows = rows.assign(person_id=rows["mrn"].map(known))
    unknown = rows[rows["person_id"].isna()]
    for origin, mrn in zip(unknown["_origin"], unknown["mrn"], strict=True):
        report.note(
            origin, table, "rejected", f"no patient with MRN {mrn} in the store or this import"
        )
    return rows[rows["person_id"].notna()].astype({"person_id": "int64"})


def _dedupe_in_file(
    rows: pd.DataFrame, key: list[str], table: str, report: ImportReport
) -> pd.DataFrame:
    """Exact repeats of a row: the first is kept, the others are unchanged. Rows with the same key but
    different values (the same MRN with another name or birth date) conflict: all of them are
    rejected, each naming the others, because the file cannot say which one is right."""
    values = [c for c in rows.columns if not c.startswith("_")]
    same_key = rows.duplicated(key, keep=False)
    conflicted = pd.Series(False, index=rows.index)
    if same_key.any():
        groups = rows[same_key].groupby(key, dropna=False, sort=False)
        for _, group in groups:
            if len(group.drop_duplicates(values)) > 1:
                conflicted.loc[group.index] = True
                origins = group["_origin"].tolist()
                for origin in origins:
                    others = ", ".join(o for o in origins if o != origin)
                    report.note(
                        origin,
                        table,
                        "rejected",
                        f"conflicts with {others} of this file (same {', '.join(key)}, other values); "
                        "none of them was imported",
                    )
    rows = rows[~conflicted]
    dup = rows.duplicated(key, keep="first")
    for origin in rows.loc[dup, "_origin"]:
        report.note(origin, table, "unchanged", "repeats an earlier row of this file")
    return rows[~dup]


def _load_person(con, rows: pd.DataFrame, report: ImportReport) -> None:
    rows = _dedupe_in_file(rows, ["mrn"], "person", report)
    cols = ["given_name", "family_name", "birth_date", "sex", "site", "menopausal_status"]
    con.register("staged", rows)
    existing = con.execute(
        f"SELECT s._origin, p.person_id, ({' OR '.join(f'p.{c} IS DISTINCT FROM s.{c}' for c in cols)}) AS changed "  # noqa: S608
        "FROM staged AS s JOIN person AS p USING (mrn)"
    ).df()
    changed = existing[existing["changed"]]
    con.execute(
        f"UPDATE person AS p SET {', '.join(f'{c} = s.{c}' for c in cols)} FROM staged AS s "  # noqa: S608
        "WHERE p.mrn = s.mrn AND s._origin IN (SELECT unnest(?))",
        [changed["_origin"].tolist()],
    )
    report.add("person", "updated", len(changed))
    for origin in existing.loc[~existing["changed"], "_origin"]:
        report.note(origin, "person", "unchanged", "already in the store")
    inserted = con.execute(
        """INSERT INTO person
           SELECT (SELECT coalesce(max(person_id), 0) FROM person) + row_number() OVER (ORDER BY s._origin_n),
                  s.mrn, s.given_name, s.family_name, s.birth_date, s.sex, s.site, s.menopausal_status
           FROM (SELECT *, row_number() OVER () AS _origin_n FROM staged) AS s
           WHERE s.mrn NOT IN (SELECT mrn FROM person)"""
    ).fetchone()[0]
    report.add("person", "inserted", inserted)
    con.unregister("staged")


def _within_life(con, table: Table, rows: pd.DataFrame, report: ImportReport) -> pd.DataFrame:
    """Reject rows dated before the patient's birth, or after her recorded death (a death event
    itself is exempt); the store's person and death rows are the truth."""
    dates = [c.name for c in table.columns if c.kind == "date"]
    if rows.empty or not dates:
        return rows
    ids = rows["person_id"].astype("int64").unique().tolist()
    births = dict(
        con.execute(
            "SELECT person_id, birth_date FROM person WHERE person_id IN (SELECT unnest(?))", [ids]
        ).fetchall()
    )
    deaths = dict(
        con.execute(
            "SELECT person_id, min(event_date) FROM outcome_event WHERE event_type = 'death' "
            "AND person_id IN (SELECT unnest(?)) GROUP BY person_id",
            [ids],
        ).fetchall()
    )
    born = pd.to_datetime(rows["person_id"].map(births))
    died = pd.to_datetime(rows["person_id"].map(deaths))
    bad = pd.Series("", index=rows.index)
    for name in dates:
        when = pd.to_datetime(rows[name])
        before = when.notna() & born.notna() & (when < born)
        bad = bad.where(~before, bad + f"{name} is before the patient's birth date; ")
        if table.name == "outcome_event":
            after = when.notna() & died.notna() & (when > died) & (rows["event_type"] != "death")
        else:
            after = when.notna() & died.notna() & (when > died + pd.Timedelta(days=1))
        bad = bad.where(~after, bad + f"{name} is after the patient's recorded death; ")
    for origin, reason in zip(rows.loc[bad != "", "_origin"], bad[bad != ""], strict=True):
        report.note(origin, table.name, "rejected", reason.rstrip("; "))
    return rows[bad == ""]


def _load_rows(con, table: Table, rows: pd.DataFrame, report: ImportReport) -> None:
    """Insert rows whose natural key is new; same key and same values: unchanged; otherwise updated."""
    rows = _resolve_people(con, rows, table.name, report) if "mrn" in rows else rows
    rows = _within_life(con, table, rows, report) if "person_id" in rows else rows
    key = ["person_id" if k == "mrn" else k for k in table.key]
    rows = _dedupe_in_file(rows, key, table.name, report)
    value_cols = [c.name for c in table.columns if c.name != "mrn" and c.name not in key]
    con.register("staged", rows)
    on = " AND ".join(f"t.{k} IS NOT DISTINCT FROM s.{k}" for k in key)
    changed_sql = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in value_cols) or "false"
    matched = con.execute(
        f"SELECT s._origin, ({changed_sql}) AS changed FROM staged AS s JOIN {table.name} AS t ON {on}"  # noqa: S608
    ).df()
    if value_cols and matched["changed"].any():
        sets = ", ".join(f"{c} = s.{c}" for c in value_cols)
        con.execute(
            f"UPDATE {table.name} AS t SET {sets} FROM staged AS s WHERE {on} "  # noqa: S608
            "AND s._origin IN (SELECT unnest(?))",
            [matched.loc[matched["changed"], "_origin"].tolist()],
        )
    report.add(table.name, "updated", int(matched["changed"].sum()))
    for origin in matched.loc[~matched["changed"], "_origin"]:
        report.note(origin, table.name, "unchanged", "already in the store")
    new = f"NOT EXISTS (SELECT 1 FROM {table.name} AS t WHERE {on})"  # noqa: S608 - catalogue names
    cols = [c.name for c in table.columns if c.name != "mrn"]
    person = ["person_id"] if "mrn" in {c.name for c in table.columns} else []
    id_col = {
        "condition_occurrence": "condition_id",
        "treatment_exposure": "exposure_id",
        "measurement": "measurement_id",
        "outcome_event": "event_id",
        "episode": "episode_id",
    }.get(table.name)
    ident = (
        f"(SELECT coalesce(max({id_col}), 0) FROM {table.name}) + row_number() OVER ()"  # noqa: S608
        if id_col
        else None
    )
    extra = {"measurement": {"source": "'import'"}, "episode": {"source": "'import'"}}.get(
        table.name, {}
    )
    target = ([id_col] if id_col else []) + person + cols + list(extra)
    select = ([ident] if ident else []) + [f"s.{c}" for c in person + cols] + list(extra.values())
    inserted = con.execute(
        f"INSERT INTO {table.name} ({', '.join(target)}) SELECT {', '.join(select)} "  # noqa: S608
        f"FROM staged AS s WHERE {new}"
    ).fetchone()[0]
    report.add(table.name, "inserted", inserted)
    con.unregister("staged")


def _load_episodes(con, rows: pd.DataFrame, report: ImportReport) -> None:
    """Episode rows: checked against the lines imported earlier, then her episodes from other
    sources (derived, demo) are replaced by the file's (``analytics.imports.episode_rows``)."""
    table = TABLES["episode"]
    rows = _resolve_people(con, rows, table.name, report)
    rows = episode_rows.without_diagnosis(con, rows, report.note)
    rows = _within_life(con, table, rows, report)
    key = ["person_id" if k == "mrn" else k for k in table.key]
    rows = _dedupe_in_file(rows, key, table.name, report)
    rows = episode_rows.check_lines_in_store(con, rows, report.note)
    episode_rows.replace_other_sources(con, rows["person_id"].unique().tolist())
    _load_rows(con, table, rows, report)


def _touched_people(con: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> list[int]:
    """Ids of the patients an import's rows name (by MRN), for the worklist's incremental refresh."""
    mrns = sorted(
        {
            m
            for rows in frames.values()
            if rows is not None and "mrn" in rows
            for m in rows["mrn"].dropna().astype(str)
        }
    )
    if not mrns:
        return []
    rows = con.execute(
        "SELECT person_id FROM person WHERE mrn IN (SELECT unnest(?))", [mrns]
    ).fetchall()
    return [int(r[0]) for r in rows]


def load(
    db: Path,
    frames: dict[str, pd.DataFrame],
    report: ImportReport,
    *,
    actor: str = "system",
    sha256: str | None = None,
) -> None:
    """Write validated frames in one transaction (persons first), refreshing the derived tables,
    with an ``import`` audit event (who, the file's sha256, the counts; never a value) in the same
    transaction.

    The cohort base is rebuilt; the stored worklist is refreshed for the patients the file
    names (``analytics.worklist.stored``: incremental unless they are many).
    """
    from analytics.worklist.stored import (  # lazy: at the top, importing analytics.imports.tabular took 1345 ms instead of 23 ms
        refresh_for_writer,
        source_fingerprint,
    )

    with (
        store.open_store(db) as con,
        chained_transaction(con),
    ):  # the rows, derived tables and audit event commit together
        sources_before = source_fingerprint(con)
        for name in ORDER:
            rows = frames.get(name)
            if rows is None or rows.empty:
                continue
            if name == "person":
                _load_person(con, rows, report)
            elif name == "episode":
                _load_episodes(con, rows, report)
            else:
                _load_rows(con, TABLES[name], rows, report)
        cohort_base.refresh_base(con)
        touched = _touched_people(con, frames)
        # disease settings and lines of therapy of the patients the file touched, derived from
        # their diagnoses, treatments and events (analytics.episodes; docs/imports.md)
        episodes.rederive_episodes(con, touched)
        if touched:
            refresh_for_writer(con, db, touched, sources_before)
        append_event(
            con,
            actor=actor,
            action="import",
            details={
                "kind": report.kind,
                "sha256": sha256,
                "counts": report.counts,
                "rejected": report.total("rejected"),
                "patients": len(touched),
            },
        )


def _write_report(report: ImportReport, report_dir: Path) -> None:
    if not report.problems:
        return
    report_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = report_dir / f"{Path(report.file).name}.{stamp}.report.csv"
    pd.DataFrame(report.problems, columns=["origin", "table", "outcome", "reason"]).to_csv(
        path, index=False
    )
    report.report_path = str(path)


def _file_sha256(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


def _read_bundle(path: Path) -> dict:
    """The JSON of a FHIR bundle, or one ``ImportFileError`` for anything structurally wrong
    (not JSON, nested past Python's limit, a number with thousands of digits, not a Bundle,
    ``entry`` not a list of objects with a ``resource`` object)."""
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and int() digit limits
        raise ImportFileError(f"{path.name} is not valid JSON ({str(exc)[:120]})") from exc
    except RecursionError:
        raise ImportFileError(f"{path.name} is nested too deeply to be a FHIR bundle") from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ImportFileError(f"{path.name} is not a FHIR Bundle (resourceType must be Bundle)")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise ImportFileError(f"{path.name}: the bundle's entry must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise ImportFileError(
                f"{path.name}: entry {i} of the bundle is not an object with a resource object"
            )
    return bundle


def import_file(
    db: Path, path: Path, report_dir: Path | None = None, *, actor: str = "system"
) -> ImportReport:
    """Import one file; the report says what happened to every row (``ImportReport``)."""
    path = Path(path)
    report = ImportReport(file=str(path), kind="?")
    try:
        report.kind = sniff(path)
        if report.kind == "fhir":
            bundle = _read_bundle(path)
            try:
                raw, rejected = bundle_frames(bundle)
            except RecursionError:
                raise ImportFileError(f"{path.name} is nested too deeply to be read") from None
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                raise ImportFileError(
                    f"{path.name} has a structure OncoLens cannot read as FHIR R4 ({type(exc).__name__})"
                ) from exc
            for origin, table_name, reason in rejected:
                report.note(origin, table_name, "rejected", reason)
        else:
            table, df = read_table_file(path, report.kind)
            raw = {table.name: df}
        frames = {}
        for name, df in raw.items():
            good, bad = validate(TABLES[name], df)
            for origin, reason in bad:
                report.note(origin, name, "rejected", reason)
            frames[name] = good
    except ImportFileError as exc:
        report.error = str(exc)
        return report
    try:
        load(Path(db), frames, report, actor=actor, sha256=_file_sha256(path))
    except duckdb.Error as exc:  # a constraint the validators missed: rolled back, said plainly
        report.error = f"nothing imported (the transaction was rolled back): {exc}"
        report.counts.clear()
    _write_report(report, report_dir or default_report_dir(Path(db)))
    return report


def default_report_dir(db: Path) -> Path:
    """``<store>_imports/`` beside the store, like ``<store>_models/``."""
    return db.with_name(f"{db.stem}_imports")


def import_files(
    db: Path, paths: list[Path], report_dir: Path | None = None, *, actor: str = "system"
) -> list[ImportReport]:
    """Import files one transaction each, tables that name patients after those that define them."""

    def rank(p: Path) -> int:
        stem = Path(p).name.split(".")[0].lower()
        return ORDER.index(stem) if stem in ORDER else len(ORDER)

    return [import_file(db, p, report_dir, actor=actor) for p in sorted(paths, key=rank)]
