"""The one set of formatters: percentages, numbers, intervals, millimetres, dates, versions, missing values.

Why one module: a metric, the sentence beside it, a table, the PDF and the CLI's human output must
show the same number the same way (issue 20 found a metric at 71 % beside a sentence at 72 %, "plausible
range -0 to 7" and "Forecast model None"). Every function here takes a value that may be missing and
returns text, never "None" or "nan". It lives beside the figure builders, the lowest layer of
``dashboard``, so pages, panels, services (PDF) and the CLI can all import it (pyproject's import contract).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import string

import pandas as pd

# What an empty cell or an unknown value reads as (a table's cell; sentences say what is missing in words).
MISSING = "—"


def is_missing(value: object) -> bool:
    """None, NaN, NaT and pandas' NA: a value that is not there."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and arrays: present
        return False


def number(value: float | None, digits: int = 0, missing: str = MISSING) -> str:
    """``value`` rounded to ``digits`` decimals; a rounded zero never reads "-0"."""
    if is_missing(value):
        return missing
    x = round(float(value), digits)  # type: ignore[arg-type]
    if x == 0:
        x = 0.0  # -0.0 -> 0.0
    return f"{x:,.{digits}f}" if abs(x) >= 10_000 else f"{x:.{digits}f}"


def pct(p: float | None, digits: int = 0, missing: str = MISSING) -> str:
    """A probability in [0, 1] as a percentage: 0.714 -> "71 %" (the space as in the plain-language sentences)."""
    if is_missing(p):
        return missing
    return f"{number(100 * float(p), digits)} %"  # type: ignore[arg-type]


def pct_interval(
    lo: float | None, hi: float | None, digits: int = 0, missing: str = MISSING
) -> str:
    """A probability interval: (0.62, 0.81) -> "62–81 %"."""
    if is_missing(lo) or is_missing(hi):
        return missing
    return f"{number(100 * float(lo), digits)}–{number(100 * float(hi), digits)} %"  # type: ignore[arg-type]


def interval(
    lo: float | None,
    hi: float | None,
    digits: int = 0,
    unit: str = "",
    *,
    floor: float | None = None,
    missing: str = MISSING,
) -> str:
    """ "lo to hi unit", both ends rounded alike; ``floor`` clips ends that cannot be below it (mm >= 0)."""
    if is_missing(lo) or is_missing(hi):
        return missing
    a, b = float(lo), float(hi)  # type: ignore[arg-type]
    if floor is not None:
        a, b = max(a, floor), max(b, floor)
    text = f"{number(a, digits)} to {number(b, digits)}"
    return f"{text} {unit}" if unit else text


def signed(value: float | None, digits: int = 0, missing: str = MISSING) -> str:
    """A difference with its sign: +3, −2 (a rounded zero reads 0)."""
    if is_missing(value):
        return missing
    text = number(value, digits)
    return text if float(text.replace(",", "")) == 0 else f"{float(value):+.{digits}f}"  # type: ignore[arg-type]


def mm(value: float | None, digits: int = 1, missing: str = MISSING) -> str:
    """A length in millimetres: 30.94 -> "30.9 mm"; never negative."""
    if is_missing(value):
        return missing
    return f"{number(max(float(value), 0.0), digits)} mm"  # type: ignore[arg-type]


def date(value: object, missing: str = MISSING) -> str:
    """A date (or anything pandas reads as one) as ISO 8601, 2026-05-18."""
    if is_missing(value):
        return missing
    if isinstance(value, dt.datetime | pd.Timestamp):
        return f"{value:%Y-%m-%d}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return f"{pd.Timestamp(value):%Y-%m-%d}"  # type: ignore[arg-type]


def version(value: object, missing: str = "version not recorded") -> str:
    """A model version, or a sentence when the model carries none (never "None")."""
    return missing if is_missing(value) or str(value).strip() in ("", "None") else str(value)


# How the store's option codes read on screen; any other arm (a trial's own coding) reads with
# spaces for underscores
_OPTION_NAMES = {"chemo_endocrine": "chemotherapy + endocrine"}


def option(code: object) -> str:
    """A treatment option for people ("chemotherapy + endocrine"), never its code ("chemo_endocrine")."""
    if is_missing(code):
        return MISSING
    return _OPTION_NAMES.get(str(code), str(code).replace("_", " "))


def text(value: object, missing: str = MISSING) -> str:
    """Any value for a sentence or a cell: missing ones read ``missing``; floats without noise digits."""
    if is_missing(value):
        return missing
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else missing
    return str(value)


def fill_missing(frame: pd.DataFrame, missing: str = MISSING) -> pd.DataFrame:
    """A copy of ``frame`` for display: missing cells of text columns read ``missing`` (a grid shows None as
    "None"); date-time columns read as dates when every time is midnight (a grid shows "2026-03-02
    00:00:00" for a date DuckDB hands over as a timestamp), else to the minute; numeric columns keep
    their type (the grid leaves their missing cells blank)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            stamps = pd.to_datetime(values)
            whole_days = bool((stamps.dropna() == stamps.dropna().dt.normalize()).all())
            pattern = "%Y-%m-%d" if whole_days else "%Y-%m-%d %H:%M"
            out[column] = [missing if is_missing(v) else f"{v:{pattern}}" for v in stamps]
        elif values.dtype == object:
            out[column] = [
                missing
                if is_missing(v)
                else date(v)
                if isinstance(v, dt.date) and not isinstance(v, dt.datetime)
                else v
                for v in values
            ]
    return out


# Every ASCII punctuation character (CommonMark lets a backslash escape each): Markdown's own, the
# entities' "&", and the ":" and "." of Streamlit's icons, emoji, colours and autolinked URLs.
_MARKDOWN_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]")


def markdown_plain(text: object) -> str:
    """Text from outside the code (the store, a file's tags or name, a bundle's JSON, an error's
    words) for Streamlit's Markdown-rendering calls: every special character escaped, so no link,
    image, icon or formatting is rendered from it and it reads exactly as written.

    Why one function: four hand-written copies had four different character sets; three left
    ``:``, so an input's ``:material/...:`` or emoji shortcode was drawn as an icon, and none
    escaped ``&`` (``&copy;`` showed as a sign). One rule, all ASCII punctuation, tested once
    against an independent CommonMark renderer.
    """
    one_line = _LINE_BREAKS.sub(" ", str(text))  # a blank line or an indent would start a block
    return _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)
