"""`report --include-names` prints names outside Latin-1 as written (issue 24: they were garbled)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from pypdf import PdfReader

from analytics import store
from dashboard.figures import static as static_figures
from dashboard.services.report import gather
from dashboard.services.report_pdf import _latin1, render_pdf


def test_non_latin_names_print_as_written_and_missing_glyphs_are_marked(
    demo_db, tmp_path, monkeypatch
) -> None:
    # the report's figures are not read here: drawn by its own fallback (as where kaleido failed),
    # not by a Chromium started for this one report (test_cli_hospital draws them with kaleido)
    monkeypatch.setitem(static_figures._KALEIDO_STATE, "ok", False)
    db = Path(shutil.copyfile(demo_db, tmp_path / "clinic.duckdb"))
    with store.open_store(db) as con:
        con.execute(
            "UPDATE person SET given_name = ?, family_name = ? WHERE person_id = 42",
            ["Αικατερίνη", "Сергеевна-Nguyễn"],
        )
    data = gather(db, 42, include_names=True, generated_by="tester")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(data))).pages)
    assert "Αικατερίνη" in text and "СЕРГЕЕВНА-NGUYỄN" in text  # family names are set in capitals
    assert _latin1("山田 – ≥") == "?? – ≥"  # no CJK glyphs in DejaVu Sans: marked, never dropped
