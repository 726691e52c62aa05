"""Lay out a ``dossier.DossierData`` as an A4 PDF, on the tumour-board report's path.

Same library, fonts and helpers as ``report_pdf`` (fpdf2 with DejaVu Sans embedded, so any text
the card holds prints as written; headings a test reads back with pypdf); tables with fpdf2's
``table()``, which wraps long cells and repeats the header row on a new page.
"""

from __future__ import annotations

import io

import pandas as pd
from fpdf.enums import XPos, YPos

from dashboard.services.dossier import DossierData
from dashboard.services.report_pdf import FONT, _Doc, _heading, _latin1, _para, _rows

_MAX_ROWS = 400  # a table longer than this is cut, saying so (the CSV export has every row)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return _latin1(value)


def _widths(frame: pd.DataFrame) -> tuple[float, ...]:
    """Relative column widths from the text they hold (a short status column stays narrow, an answer
    column gets room): the header's length or the longest of the typical cells, within 15 to 60."""
    widths = []
    for column in frame.columns:
        lengths = frame[column].map(lambda v: len(_cell(v))).to_numpy()
        typical = float(lengths.max()) if len(lengths) else 0.0
        widths.append(min(60.0, max(15.0, len(str(column)) * 0.8, typical)))
    return tuple(widths)


def _table(pdf: _Doc, caption: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    pdf.set_font(FONT, "I", 8)
    pdf.multi_cell(0, 4.2, _latin1(caption), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 7)
    shown = frame.head(_MAX_ROWS)
    with pdf.table(
        col_widths=_widths(shown),
        line_height=3.6,
        text_align="LEFT",
        first_row_as_headings=True,
        padding=0.8,
    ) as table:
        table.row([_latin1(c) for c in shown.columns])
        for row in shown.itertuples(index=False):
            table.row([_cell(v) for v in row])
    if len(frame) > _MAX_ROWS:
        _para(pdf, f"(first {_MAX_ROWS} of {len(frame)} rows)")
    pdf.set_font(FONT, "", 9)
    pdf.ln(1.5)


def render_dossier(data: DossierData) -> bytes:
    pdf = _Doc(orientation="P", unit="mm", format="A4")
    pdf.footer_text = (
        f"OncoLens model dossier: {data.model} {data.version or ''} - generated "
        f"{data.generated_at:%Y-%m-%d %H:%M} by {data.generated_by} - research use, not a medical device"
    )
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title(f"OncoLens model dossier: {data.model}")
    pdf.set_creator("OncoLens")
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.cell(0, 9, _latin1(f"Model dossier: {data.model}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 9)
    _para(
        pdf,
        f"Version {data.version or 'not recorded'}. Generated {data.generated_at:%Y-%m-%d %H:%M} by "
        f"{data.generated_by}; figures drawn by {data.renderer}. For the ethics board: what the model is, "
        "on what data, how well and for whom it works, and how it has been used.",
    )
    for section in data.sections:
        if pdf.get_y() > (150 if section.images else 250):  # a heading stays with its figure
            pdf.add_page()
        _heading(pdf, section.title)
        if section.rows:
            _rows(pdf, section.rows)
        for text in section.paragraphs:
            _para(pdf, text)
        for caption, frame in section.tables:
            _table(pdf, caption, frame)
        for png, caption in section.images:
            if pdf.get_y() > 160:
                pdf.add_page()
            pdf.image(io.BytesIO(png), w=150)
            _para(pdf, caption)
    return bytes(pdf.output())
