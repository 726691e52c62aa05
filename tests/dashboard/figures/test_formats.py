"""dashboard.figures.formats: one way to write each kind of number, never "None", never "-0"."""

from __future__ import annotations

import datetime as dt
import html
import math
import re
import string

import markdown_it
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard.figures import formats


def test_missing_values_read_as_a_dash_or_the_callers_words():
    for missing in (None, math.nan, pd.NA, pd.NaT):
        assert formats.pct(missing) == formats.MISSING == "—"
        assert formats.mm(missing) == "—" and formats.date(missing) == "—"
        assert formats.interval(missing, 3) == "—"
    assert formats.pct(None, missing="n/a") == "n/a"
    assert formats.version(None) == "version not recorded" and formats.version("v3") == "v3"


def test_rounding_is_the_same_everywhere_and_never_negative_zero():
    assert formats.pct(0.714) == "71 %" and formats.pct(0.7149, 1) == "71.5 %"
    assert formats.interval(-0.3, 7.2) == "0 to 7"  # "plausible range -0 to 7" never
    assert formats.interval(-2.4, 7.2) == "-2 to 7"
    assert formats.interval(-1.0, 4.0, 1, "mm", floor=0) == "0.0 to 4.0 mm"
    assert formats.mm(-0.01) == "0.0 mm" and formats.mm(30.94) == "30.9 mm"
    assert formats.signed(-0.2) == "0" and formats.signed(3.4) == "+3"
    assert formats.pct_interval(0.62, 0.81) == "62–81 %"


def test_dates_are_iso_whatever_they_arrive_as():
    assert formats.date(dt.date(2026, 5, 18)) == "2026-05-18"
    assert formats.date(pd.Timestamp("2026-05-18 13:00")) == "2026-05-18"
    assert formats.date("2026-05-18") == "2026-05-18"


def test_fill_missing_replaces_missing_text_cells_only():
    frame = pd.DataFrame({"recommended": ["a", None], "n": [1.0, math.nan]})
    shown = formats.fill_missing(frame)
    assert shown["recommended"].tolist() == ["a", "—"]
    assert math.isnan(shown["n"].iloc[1])  # numbers keep their type (the grid leaves them blank)
    assert frame["recommended"].iloc[1] is None  # the input is not changed


def test_fill_missing_shows_dates_as_dates_and_times_to_the_minute():
    """A treatment table's start dates arrive as midnight timestamps: shown as dates, an open end as the
    missing mark, never "2026-03-02 00:00:00" or "None"; real times keep their minute."""
    frame = pd.DataFrame(
        {
            "start_date": pd.to_datetime(["2026-03-02", "2026-04-01"]),
            "end_date": pd.to_datetime(["2026-05-02", None]),
            "read_at": pd.to_datetime(["2026-03-02 14:05:09", None]),
            "day": [dt.date(2026, 3, 2), None],
        }
    )
    shown = formats.fill_missing(frame)
    assert shown["start_date"].tolist() == ["2026-03-02", "2026-04-01"]
    assert shown["end_date"].tolist() == ["2026-05-02", formats.MISSING]
    assert shown["read_at"].tolist() == ["2026-03-02 14:05", formats.MISSING]
    assert shown["day"].tolist() == ["2026-03-02", formats.MISSING]


# --- markdown_plain: text from outside the code, shown as written -----------------------------------


def _rendered_text(markdown: str) -> tuple[str, str]:
    """(the HTML CommonMark makes of ``markdown``, the text a reader sees in it): Streamlit's
    Markdown is CommonMark (react-markdown); markdown-it-py is an independent CommonMark."""
    out = markdown_it.MarkdownIt("commonmark").render(markdown)
    return out, html.unescape(re.sub(r"<[^>]+>", "", out)).strip()


@pytest.mark.parametrize(
    "text",
    [
        "[click](http://evil.example) ![x](http://evil.example/p.png)",
        "**bold** _it_ `code` ~~gone~~ <b>tag</b> # heading",
        "1. not a list",
        "- not a list either",
        "+ nor this",
        "a \\ backslash and a trailing one \\",
        "CT:material/warning: :smile: :red[colour] $x^2$ a|b",
        "MRN00000042 · 0.38 mL · 2023-09-01",
        "&copy; &amp; &#42; www.example.com http://example.com <http://example.com>",
        "one line\n\n    four spaces: a code block\n# a heading\r\n- a list",
    ],
)
def test_markdown_plain_reads_exactly_as_written_and_renders_nothing(text):
    html_out, seen = _rendered_text(formats.markdown_plain(text))
    assert seen == " ".join(text.split(" ")).replace("\r\n", " ").replace("\n", " ")
    assert not any(
        tag in html_out for tag in ("<a ", "<img", "<strong", "<em", "<code", "<h1", "<ol", "<ul")
    )
    # Streamlit's own directives (icons, emoji, colours) need a bare ':' before a name
    assert ":" not in formats.markdown_plain(text).replace("\\:", "")


@given(
    st.text(alphabet=st.sampled_from(string.punctuation + " aZ09·é\\"), max_size=60)
    | st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40)
)
def test_markdown_plain_round_trips_any_text(text):
    """Whatever the input, CommonMark shows its characters back (line breaks aside; control
    characters are not text: CommonMark replaces a NUL, and the store never holds one)."""
    one_line = " ".join(text.split())
    _, seen = _rendered_text(formats.markdown_plain(one_line))
    assert seen == one_line.strip()
