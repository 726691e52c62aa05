"""Lay out a ``report.ReportData`` as an A4 PDF with fpdf2 (pure Python, LGPL-3.0, no system libraries).

Why fpdf2: text, tables and PNG images are all a tumour-board summary needs,
it installs from PyPI on every platform, and its output is plain PDF text that
``pypdf`` can read back (the tests check every section heading that way).
Text is set in DejaVu Sans, embedded from the copy matplotlib ships (a dependency already), so
names in Greek, Cyrillic, Vietnamese, Turkish and the like print as written (issue 24: the core
fonts covered Latin-1 only and garbled ``--include-names``). A character the font lacks (e.g. CJK)
is printed as ``?`` rather than silently dropped; docs/security.md says so.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from pathlib import Path

import matplotlib
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from dashboard.services.report_data import DISCLAIMER, SECTIONS, ReportData

FONT = "DejaVu"
_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf"}


@functools.cache
def _glyphs() -> frozenset[int]:
    """Code points the regular face can draw (the bold and oblique faces cover the same set)."""
    return frozenset(TTFont(_FONT_DIR / _FONT_FILES[""]).getBestCmap())


def _latin1(text: object) -> str:
    """The text as the embedded font can print it: composed (NFC), unknown characters as '?'.
    (The name is historical: it once folded everything to Latin-1.)"""
    s = unicodedata.normalize("NFC", str(text))
    glyphs = _glyphs()
    return "".join(c if ord(c) in glyphs or c in "\n\t" else "?" for c in s)


class _Doc(FPDF):
    footer_text = ""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for style, name in _FONT_FILES.items():
            self.add_font(FONT, style, str(_FONT_DIR / name))

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "I", 7)
        self.cell(0, 5, _latin1(f"{self.footer_text} - page {self.page_no()}"), align="C")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font(FONT, "B", 12)
    pdf.cell(0, 7, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 9)


def _para(pdf: FPDF, text: str) -> None:
    pdf.multi_cell(0, 4.5, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _rows(pdf: FPDF, rows: list[tuple[str, str]]) -> None:
    for key, value in rows:
        pdf.set_font(FONT, "B", 9)
        pdf.cell(48, 4.8, _latin1(key))
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(0, 4.8, _latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _image(pdf: FPDF, png: bytes, width_mm: float) -> None:
    pdf.image(io.BytesIO(png), w=width_mm)


def render_pdf(data: ReportData) -> bytes:
    pdf = _Doc(orientation="P", unit="mm", format="A4")
    pdf.footer_text = (
        f"OncoLens tumour-board report - generated {data.generated_at:%Y-%m-%d %H:%M} by "
        f"{data.generated_by} - research use, not a medical device"
    )
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_title("OncoLens tumour-board report")
    pdf.set_creator("OncoLens")
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.cell(0, 9, "Tumour-board report", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 9)
    _para(
        pdf,
        f"Generated {data.generated_at:%Y-%m-%d %H:%M} by {data.generated_by}. "
        "Decision support for research use, not a medical device.",
    )
    if data.signoff_lines:  # models not approved by the ethics board, or output withheld (issue 22)
        pdf.set_font(FONT, "B", 9)
        _para(pdf, "Ethics-board sign-off: " + " ".join(data.signoff_lines))
        pdf.set_font(FONT, "", 9)

    _heading(pdf, SECTIONS[0])
    _rows(pdf, data.header + data.summary_rows)

    _heading(pdf, SECTIONS[1])
    if not data.key_images:
        _para(
            pdf,
            "No image with an AI read is on record for this patient (ingest studies with `oncolens ingest`).",
        )
    for image in data.key_images:
        if pdf.get_y() > 180:
            pdf.add_page()
        _image(pdf, image.png, 85)
        _para(pdf, image.caption)

    _heading(pdf, SECTIONS[2])
    if data.findings.empty:
        _para(pdf, "No AI findings recorded.")
    else:
        cols = [
            ("study_date", "Study date", 24),
            ("modality", "Mod.", 12),
            ("model_name", "Model", 30),
            ("model_version", "Version", 18),
            ("predicted_class", "Finding", 26),
            ("probability", "Prob.", 14),
            ("longest_diameter_mm", "Longest (mm)", 22),
            ("source", "Source", 34),
        ]
        pdf.set_font(FONT, "B", 8)
        for _, title, w in cols:
            pdf.cell(w, 5, title, border=1)
        pdf.ln()
        pdf.set_font(FONT, "", 8)
        for row in data.findings.itertuples(index=False):
            r = row._asdict()
            for key, _, w in cols:
                v = r[key]
                text = (
                    ""
                    if v is None or v != v
                    else f"{v:.2f}"
                    if isinstance(v, float)
                    else f"{v:%Y-%m-%d}"
                    if hasattr(v, "strftime")
                    else str(v)
                )
                pdf.cell(w, 5, _latin1(text), border=1)
            pdf.ln()

    pdf.add_page()
    _heading(pdf, SECTIONS[3])
    if data.timeline_png:
        _image(pdf, data.timeline_png, 180)
    for line in data.forecast_lines:
        _para(pdf, line)

    # Headed by what it holds: no "recommendation" heading over "the model does not pick an option".
    recommended = data.recommendation is not None and data.recommendation.recommended is not None
    _heading(pdf, SECTIONS[4] if recommended else "Treatment options")
    for line in data.recommendation_lines:
        _para(pdf, line)
    if data.decision_lines:
        _para(pdf, "Decisions recorded (newest first): " + " | ".join(data.decision_lines))
    if data.waterfall_png:
        if pdf.get_y() > 170:
            pdf.add_page()
        _image(pdf, data.waterfall_png, 170)
        _para(
            pdf,
            "SHAP waterfall: how each of the patient's features moves the predicted benefit away from the "
            "reference patients' average (exact TreeSHAP, percentage points of RFS at the model's "
            "horizon, as in the options above).",
        )

    _heading(pdf, SECTIONS[5])
    _rows(pdf, data.model_rows + [("Figures drawn by", data.renderer)])
    if data.notes:
        _para(pdf, "Notes: " + " | ".join(data.notes))

    _heading(pdf, SECTIONS[6])
    _para(pdf, DISCLAIMER)
    return bytes(pdf.output())
