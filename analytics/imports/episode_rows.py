"""The rules an imported episode file must meet, and how its rows take over from derived ones.

Why a module of its own: an episode row is checked against its neighbours, not only its own
columns. A line of therapy needs its number; each kind belongs to one setting (neoadjuvant and
adjuvant therapy to early disease, lines and best supportive care to metastatic disease); two lines
of one patient cannot run at the same time, nor be numbered against their dates. The file cannot
say which of two contradicting rows is right, so both are refused, each naming the other
(docs/imports.md, "Disease settings and lines of therapy").

Precedence: episodes a hospital records are the truth about her course; the ones
``analytics.episodes`` derives from treatments and events are only a fallback for patients who
have none. So once an episode file names a patient, her episodes from any other source (derived,
or the demo generator's) and the notes on what could not be derived are removed in the same
transaction, and later imports of her treatments no longer derive any.

Rows are pandas frames already typed by ``tabular.validate``; every query takes parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pandas as pd

# which kinds of episode belong to which setting (analytics.episodes.KINDS)
KINDS_OF_SETTING = {
    "early": ("disease", "neoadjuvant", "adjuvant", "surveillance"),
    "metastatic": ("disease", "line", "best_supportive_care"),
}
METASTATIC_ORIGINS = ("de novo", "after recurrence")

Flag = Callable[[pd.Series, str], None]
Note = Callable[[str, str, str, str], None]  # origin, table, outcome, reason


def _span(start, end) -> str:
    return f"{start:%Y-%m-%d} to {'ongoing' if pd.isna(end) else f'{end:%Y-%m-%d}'}"


def check_rows(out: pd.DataFrame, flag: Flag) -> None:
    """Row-by-row rules of an episode row (typed columns of ``out``); ``flag(mask, reason)`` refuses."""
    line = out["kind"] == "line"
    number = out["line_number"].notna()
    flag(line & ~number, "a line of therapy needs its line_number")
    flag(
        out["kind"].notna() & ~line & number,
        "line_number is only for kind line (a line of therapy)",
    )
    for setting, kinds in KINDS_OF_SETTING.items():
        wrong = (out["setting"] == setting) & out["kind"].notna() & ~out["kind"].isin(kinds)
        flag(
            wrong,
            f"a {setting} episode is one of {', '.join(kinds)}",
        )
    flag(
        out["end_reason"].notna() & out["end_date"].isna(),
        "end_reason is given without end_date",
    )
    metastatic_disease = (out["setting"] == "metastatic") & (out["kind"] == "disease")
    flag(
        metastatic_disease & out["detail"].notna() & ~out["detail"].isin(METASTATIC_ORIGINS),
        "the detail of metastatic disease says how it began: 'de novo' or 'after recurrence'",
    )


def _clashes(lines: pd.DataFrame, others: pd.DataFrame) -> pd.DataFrame:
    """Pairs (a line, another line of the same patient with another number) that overlap in time or
    are numbered against their dates. Columns ``_x`` are ``lines``', ``_y`` the others'."""
    pairs = lines.merge(others, on="person", suffixes=("_x", "_y"))
    pairs = pairs[pairs["line_number_x"] != pairs["line_number_y"]]
    if pairs.empty:
        return pairs.assign(why=pd.Series(dtype=str))
    sx, sy = pd.to_datetime(pairs["start_date_x"]), pd.to_datetime(pairs["start_date_y"])
    ex, ey = pd.to_datetime(pairs["end_date_x"]), pd.to_datetime(pairs["end_date_y"])
    # spans touch at most on one day: a line may end the day the next one starts
    overlap = (ey.isna() | (sx < ey)) & (ex.isna() | (sy < ex))
    disorder = (pairs["line_number_x"] < pairs["line_number_y"]) & (sx > sy)
    disorder |= (pairs["line_number_x"] > pairs["line_number_y"]) & (sx < sy)
    why = pd.Series("", index=pairs.index)
    why = why.where(~overlap, "overlaps")
    why = why.where(overlap | ~disorder, "is numbered against the dates of")
    return pairs.assign(why=why)[why != ""]


def _describe(row, suffix: str) -> str:
    return (
        f"line {int(row[f'line_number{suffix}'])} "
        f"({_span(row[f'start_date{suffix}'], row[f'end_date{suffix}'])})"
    )


def check_lines_in_file(out: pd.DataFrame, ok: pd.Series, flag_row: Callable) -> None:
    """Lines of one patient in one file that overlap or are numbered against their dates: all are
    refused (``flag_row(index, reason)``), each naming the other, since the file cannot say which is right."""
    cols = ["mrn", "line_number", "start_date", "end_date", "_origin"]
    lines = out.loc[ok & (out["kind"] == "line"), cols].rename(columns={"mrn": "person"})
    lines = lines.assign(_index=lines.index)
    for _, pair in _clashes(lines, lines).iterrows():
        flag_row(
            pair["_index_x"],
            f"{_describe(pair, '_x')} {pair['why']} {_describe(pair, '_y')} at "
            f"{pair['_origin_y']} of this file; neither was imported",
        )


def check_lines_in_store(
    con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, note: Note
) -> pd.DataFrame:
    """Refuse the file's lines that clash with lines imported earlier for the same patient (those the
    file does not restate by number); the rows that remain."""
    lines = rows[rows["kind"] == "line"]
    if lines.empty:
        return rows
    ids = lines["person_id"].astype("int64").unique().tolist()
    stored = con.execute(
        """SELECT person_id AS person, line_number, start_date, end_date FROM episode
           WHERE source = 'import' AND kind = 'line' AND person_id IN (SELECT unnest(?::BIGINT[]))""",
        [ids],
    ).df()
    restated = set(zip(lines["person_id"], lines["line_number"], strict=True))
    kept = pd.Series(
        [
            (p, n) not in restated
            for p, n in zip(stored["person"], stored["line_number"], strict=True)
        ],
        index=stored.index,
        dtype=bool,
    )
    stored = stored[kept]
    mine = lines.rename(columns={"person_id": "person"})[
        ["person", "line_number", "start_date", "end_date", "_origin"]
    ].assign(_index=lines.index)
    refused = set()
    for _, pair in _clashes(mine, stored).iterrows():
        if pair["_index"] in refused:
            continue
        refused.add(pair["_index"])
        note(
            pair["_origin"],
            "episode",
            "rejected",
            f"{_describe(pair, '_x')} {pair['why']} {_describe(pair, '_y')} imported earlier",
        )
    return rows.drop(index=list(refused))


def without_diagnosis(
    con: duckdb.DuckDBPyConnection, rows: pd.DataFrame, note: Note
) -> pd.DataFrame:
    """Refuse the episodes of patients with no diagnosis in the store (or earlier in this import): a
    course without the cancer it is the course of would be read as no setting at all
    (``analytics.episodes.care_setting``); the rows that remain."""
    if rows.empty:
        return rows
    ids = rows["person_id"].astype("int64").unique().tolist()
    diagnosed = {
        int(r[0])
        for r in con.execute(
            "SELECT DISTINCT person_id FROM condition_occurrence "
            "WHERE person_id IN (SELECT unnest(?::BIGINT[]))",
            [ids],
        ).fetchall()
    }
    missing = ~rows["person_id"].isin(diagnosed)
    for origin, mrn in zip(rows.loc[missing, "_origin"], rows.loc[missing, "mrn"], strict=True):
        note(
            origin,
            "episode",
            "rejected",
            f"no diagnosis of the patient with MRN {mrn} in the store or this import: "
            "import her condition_occurrence first",
        )
    return rows[~missing]


def replace_other_sources(con: duckdb.DuckDBPyConnection, person_ids: list[int]) -> int:
    """Remove the derived (and demo) episodes and the derivation notes of patients whose episodes an
    import now carries; the number of episode rows removed."""
    if not person_ids:
        return 0
    ids = [int(p) for p in person_ids]
    removed = con.execute(
        "DELETE FROM episode WHERE source <> 'import' AND person_id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    ).fetchall()[0][0]
    con.execute(
        "DELETE FROM episode_note WHERE person_id IN (SELECT unnest(?::BIGINT[]))",
        [ids],
    )
    return int(removed)
