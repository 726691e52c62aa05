"""The Patient page's tumour-board report (issue 23): built in its own fragment, its key images read
through the app's caches with the same result as the CLI's own reads, its figures drawn by the kept
browser while the key images are read, and a figure drawn once not drawn again."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import plotly.graph_objects as go
import pytest
from pypdf import PdfReader

from analytics import store
from dashboard.figures import static as static_figures
from dashboard.panels import report as report_panel
from dashboard.services import report
from models.inference.loader import ModelLoader
from sample_data.demo_imaging import write_demo_images
from tests.dashboard.app_pages.test_pages import open_page


@pytest.fixture(scope="module")
def imaged(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[Path]]:
    """(store, a patient with images, her files newest first): a copy of the demo with mammograms."""
    folder = tmp_path_factory.mktemp("report_panel")
    db = Path(shutil.copyfile(demo_db, folder / "clinic.duckdb"))
    write_demo_images(db, folder / "dicom", patients=2, brain_patients=0, seed=3)
    with store.open_store(db, read_only=True) as con:
        pid = con.execute(
            "SELECT s.person_id FROM imaging_study s JOIN imaging_series se USING (study_uid) "
            "JOIN imaging_instance i USING (series_uid) ORDER BY s.person_id LIMIT 1"
        ).fetchone()[0]
        files = report._image_files(con, pid)
    return db, int(pid), [Path(f) for f in files]


def test_cached_reads_give_the_key_images_the_cli_gives(imaged) -> None:
    _db, _pid, files = imaged
    load = ModelLoader()
    for path in files[: report.KEY_IMAGES]:
        own = report._key_image(path, load)
        app = report._key_image(path, load, report_panel._reads)
        assert own[0] is not None and app[0] is not None
        assert app[0].caption == own[0].caption
        assert app[0].png == own[0].png  # the same overlay, pixel for pixel
        assert app[1] == own[1] and app[2] is None


def test_a_file_gone_is_a_note_through_the_cached_reads_too(tmp_path) -> None:
    image, row, note = report._key_image(tmp_path / "gone.dcm", ModelLoader(), report_panel._reads)
    assert image is None and row is None and note is not None and note.startswith("gone.dcm: ")


def test_prepare_the_pdf_on_the_page_builds_it_with_her_key_images(
    imaged, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, pid, _files = imaged
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    at = open_page("patient", patient=str(pid))
    assert not at.exception
    headers_before = [h.value for h in at.subheader]
    at.button(key="oncolens.report.build").click().run()
    assert not at.exception and not at.error
    held_pid, named, pdf = at.session_state[report_panel.KEY]
    assert held_pid == pid and named is False and pdf.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert "Grad-CAM saliency" in text and "Timeline" in text
    assert [h.value for h in at.subheader] == headers_before  # the page around it as it was


def test_figures_drawn_later_are_the_figures_drawn_now() -> None:
    """Without a kept browser (the CLI) the call draws, as ``figures_png`` does."""
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2]))
    later = static_figures.figures_png_later([(fig, 400, 300)])
    (png,) = later()
    assert png.startswith(b"\x89PNG") and png == static_figures.figures_png([(fig, 400, 300)])[0]


@pytest.mark.skipif(
    static_figures.renderer() != "kaleido", reason="no Chromium here: nothing is kept warm"
)
def test_the_kept_browser_draws_a_figure_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert static_figures.keep_warm()
    try:
        fig = go.Figure(go.Bar(x=["a", "b"], y=[2, 5]))
        (first,) = static_figures.figures_png_later([(fig, 500, 300)])()
        assert first.startswith(b"\x89PNG")

        def no_second_drawing(*_args, **_kwargs) -> bytes:
            raise AssertionError("drawn again")

        monkeypatch.setattr(static_figures._WARM, "png", no_second_drawing)
        again = go.Figure(go.Bar(x=["a", "b"], y=[2, 5]))  # an equal figure, a new object
        assert static_figures.figure_png(again, 500, 300) == first
        other = go.Figure(go.Bar(x=["a", "b"], y=[2, 6]))
        monkeypatch.undo()
        assert static_figures.figure_png(other, 500, 300) != first
    finally:
        static_figures._WARM.stop()
        static_figures._WARM._thread = None
        static_figures._DRAWN.clear()
