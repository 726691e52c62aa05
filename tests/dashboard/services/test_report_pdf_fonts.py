"""The tumour-board PDF's fonts are parsed once per process and copied into each document (issue 23):
the PDF is byte for byte the one written with the faces parsed afresh, every time."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
from fpdf import FPDF

from dashboard.services import report_pdf
from dashboard.services.report import gather


class _FreshlyParsed(report_pdf._Doc):
    """The document as it was built before the faces were kept: each face parsed from its file."""

    def __init__(self, *args, **kwargs) -> None:
        FPDF.__init__(self, *args, **kwargs)
        for style, name in report_pdf._FONT_FILES.items():
            self.add_font(report_pdf.FONT, style, str(report_pdf._FONT_DIR / name))


def _stable(pdf: bytes) -> bytes:
    """The PDF without its creation time and the file identifier fpdf derives from it."""
    pdf = re.sub(rb"/CreationDate \(D:[^)]*\)", b"", pdf)
    return re.sub(rb"/ID \[<[0-9A-F]+><[0-9A-F]+>\]", b"", pdf)


@pytest.fixture(scope="module")
def data(demo_db, tmp_path_factory):
    db = Path(shutil.copyfile(demo_db, tmp_path_factory.mktemp("pdf") / "clinic.duckdb"))
    return gather(
        db, 42, include_names=True, generated_by="tester", now=dt.datetime(2026, 12, 3, 12, 0)
    )


def test_documents_from_the_kept_faces_equal_freshly_parsed_ones(data, monkeypatch) -> None:
    kept = [report_pdf.render_pdf(data) for _ in range(3)]  # each copy is subset on its own
    monkeypatch.setattr(report_pdf, "_Doc", _FreshlyParsed)
    fresh = report_pdf.render_pdf(data)
    assert all(_stable(pdf) == _stable(fresh) for pdf in kept)
    assert len(fresh) > 10_000


def test_the_kept_faces_are_never_written_into(data) -> None:
    before = {key: len(face.subset.dict()) for key, face in report_pdf._parsed_faces().items()}
    report_pdf.render_pdf(data)
    after = {key: len(face.subset.dict()) for key, face in report_pdf._parsed_faces().items()}
    assert before == after
