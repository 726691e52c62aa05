"""The tumour-board report on an image the input guard refuses: no key image, no AI finding, a note that
says why, and the rest of the report intact (issue 18: a refused read must never turn into a figure)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from pypdf import PdfReader

from analytics import store
from dashboard.figures import static as static_figures
from dashboard.services.report import gather
from dashboard.services.report_pdf import render_pdf
from models.training import ood

PATIENT = 42


def test_a_refused_image_gets_a_note_not_a_key_image(demo_db, tmp_path, monkeypatch) -> None:
    # the report's figures are not read here: drawn by its own fallback (as where kaleido failed),
    # not by a Chromium started for this one report (test_cli_hospital draws them with kaleido)
    monkeypatch.setitem(static_figures._KALEIDO_STATE, "ok", False)
    db = Path(shutil.copyfile(demo_db, tmp_path / "clinic.duckdb"))
    camera = next(i for i in ood.ood_images("mammography") if i.name == "camera")
    path = ood.write_ood_dicom(camera, "mammography", tmp_path / "camera.dcm")  # valid MG tags
    with store.open_store(db) as con:
        con.execute(
            "INSERT INTO imaging_study VALUES ('2.25.1', ?, DATE '2026-06-01', 'MG', 'screening', 'A1')",
            [PATIENT],
        )
        con.execute("INSERT INTO imaging_series VALUES ('2.25.2', '2.25.1', 'MG', 'BREAST', NULL)")
        con.execute(
            "INSERT INTO imaging_instance VALUES ('2.25.3', '2.25.2', ?, 256, 256, 0.8)",
            [str(path)],
        )
    data = gather(db, PATIENT, include_names=False, generated_by="tester")
    assert data.key_images == []
    (note,) = [n for n in data.notes if n.startswith("camera.dcm")]
    assert "no read is given for an image outside what the model knows" in note
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(render_pdf(data))).pages)
    assert "camera.dcm" in text and "Timeline" in text
