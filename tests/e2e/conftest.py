"""Real-browser fixtures: a demo store, the app served by `oncolens serve`, and Debian's Chromium.

Why a real browser: AppTest runs page scripts but renders nothing (no Plotly
canvas, no websocket, no navigation menu), so it cannot show that a signed-in
user actually sees a page without a Streamlit exception box. These fixtures run
the app exactly as `make run` does, on 127.0.0.1 and a free port, against a
small store built by the real `oncolens demo`, and drive it with Playwright.

The tests skip, with the reason, only where Playwright or a Chromium binary is
missing (`make browser-deps` installs Chromium where apt-get is at hand);
everything else that goes wrong is a failure.

Screenshots of every page go to ``$ONCOLENS_SCREENSHOTS`` (default
``tests/e2e/artifacts/``, git-ignored). With ``ONCOLENS_README_SCREENSHOTS=DIR``
(``make screenshots``) the pages the README shows are also written to ``DIR``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.serving import CHROMIUM_ARGS, chromium_path, demo_store, serve_command, serving

# the smallest screen the app is laid out for (issue 10); ONCOLENS_E2E_VIEWPORT=1920x1080 for a large one
VIEWPORT = dict(
    zip(
        ("width", "height"),
        map(int, os.environ.get("ONCOLENS_E2E_VIEWPORT", "1366x768").split("x")),
        strict=True,
    )
)
DEMO_PATIENTS = 200
DEMO_IMAGES = 6
# Streamlit pages build over a websocket; models load on first use. Generous, but on specific elements.
PAGE_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class DemoClinic:
    db: Path
    imaged_patients: list[int]


@dataclass(frozen=True)
class App:
    url: str
    clinic: DemoClinic
    pid: int  # the serving process (the page bench reads its CPU seconds)


@pytest.fixture(scope="session")
def browser_prerequisites() -> str:
    """The Chromium binary; skips (with why) when Playwright or the browser is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium browser found (make browser-deps, or set ONCOLENS_CHROMIUM)")
    return path


@pytest.fixture(scope="session")
def demo_clinic(browser_prerequisites: str, tmp_path_factory: pytest.TempPathFactory) -> DemoClinic:
    """A 200-patient demo store with DICOM images and the treatment model, from the real CLI."""
    db = tmp_path_factory.mktemp("e2e") / "clinic.duckdb"
    summary = _demo(db, DEMO_PATIENTS, DEMO_IMAGES)
    assert summary["imaged_patients"], "the demo wrote no images"
    return DemoClinic(db=db, imaged_patients=[int(p) for p in summary["imaged_patients"]])


@contextlib.contextmanager
def serve_process(db: Path, log: Path) -> Iterator[tuple[str, int]]:
    """`oncolens serve` of ``db`` on 127.0.0.1 and a free port; yields its URL and process id;
    stopped (and waited for) after."""
    try:
        server = serving(serve_command(db), log, {"ONCOLENS_IDLE_TIMEOUT_MIN": "30"}, timeout_s=60)
        url, proc, _seconds = server.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield url, proc.pid
    finally:
        server.__exit__(None, None, None)


@contextlib.contextmanager
def serve(db: Path, log: Path) -> Iterator[str]:
    """`oncolens serve` of ``db`` (``serve_process``); yields its URL."""
    with serve_process(db, log) as (url, _pid):
        yield url


@pytest.fixture(scope="session")
def app(demo_clinic: DemoClinic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The demo clinic served as `make run` serves it, for the whole session."""
    log = tmp_path_factory.mktemp("e2e-log") / "streamlit.log"
    with serve_process(demo_clinic.db, log) as (url, pid):
        yield App(url=url, clinic=demo_clinic, pid=pid)


@pytest.fixture(scope="session")
def browser(browser_prerequisites: str):
    """One headless Debian Chromium for the session (never `playwright install`: no CDN here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser_prerequisites, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, app: App):
    """A fresh browser context per test (its own Streamlit session), at 1366 x 768."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


@dataclass(frozen=True)
class EdgeClinic:
    """A small demo store edited into the cases charts get wrong: who is who, by person_id."""

    db: Path
    no_forecast: int  # recurred, and no lesion reading left: nothing can be forecast
    single_reading: int  # one lesion reading only
    recurred: int  # recurrence on record, readings kept


EDGE_PATIENTS = 40
LESION = "lesion_longest_diameter"


def _demo(db: Path, patients: int, images: int) -> dict:
    try:
        return demo_store(db, patients, images, timeout_s=300)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def edge_clinic(browser_prerequisites: str, tmp_path_factory: pytest.TempPathFactory) -> EdgeClinic:
    """A 40-patient demo store, then edited with SQL: one patient loses every lesion reading (and has
    recurred, so no forecast at all), one keeps a single reading; one recurred patient stays as she is.

    Why edit a real store rather than build one by hand: every other table (treatments, labs, the
    model, the derived cohort rows) stays what the generator writes, so only the edge differs.
    """
    from analytics import (
        store,  # here, not at the top: conftest loads even where the browser tests skip
    )
    from analytics.cohorts import base  # (the same)

    db = tmp_path_factory.mktemp("e2e-edge") / "edge.duckdb"
    _demo(db, EDGE_PATIENTS, 0)
    with store.open_store(db) as con:
        recurred = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT person_id FROM outcome_event WHERE event_type = 'recurrence' "
                "AND person_id IN (SELECT person_id FROM measurement WHERE concept = ?) ORDER BY 1",
                [LESION],
            ).fetchall()
        ]
        assert len(recurred) >= 3, "the edge store needs three recurred patients with readings"
        no_forecast, kept = recurred[0], recurred[1]
        # since issue 17 only metastatic (recurred) patients have a followed lesion
        single = con.execute(
            "SELECT person_id FROM measurement WHERE concept = ? AND person_id NOT IN (?, ?) "
            "GROUP BY person_id HAVING count(*) >= 3 ORDER BY person_id LIMIT 1",
            [LESION, no_forecast, kept],
        ).fetchone()[0]
        con.execute(
            "DELETE FROM measurement WHERE person_id = ? AND concept = ?", [no_forecast, LESION]
        )
        con.execute(
            "DELETE FROM measurement WHERE person_id = ? AND concept = ? AND measurement_date > "
            "(SELECT min(measurement_date) FROM measurement WHERE person_id = ? AND concept = ?)",
            [single, LESION, single, LESION],
        )
        base.refresh_base(con)
    return EdgeClinic(db=db, no_forecast=no_forecast, single_reading=single, recurred=kept)


@pytest.fixture(scope="session")
def edge_app(edge_clinic: EdgeClinic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The edge-case store served like the demo clinic; yields its URL."""
    log = tmp_path_factory.mktemp("e2e-edge-log") / "streamlit.log"
    with serve(edge_clinic.db, log) as url:
        yield url


def plant_reads(db: Path) -> None:
    """Mammography reads in five months, the last two brighter (as in the drift tests)."""
    # here, not at the top: conftest loads even where the browser tests skip
    from analytics import store
    from analytics.governance.lifecycle.tables import STAT_COLUMNS  # (the same)
    from tests.analytics.governance.lifecycle.test_drift import _imaging_reference, _reads  # (same)

    reference = _imaging_reference()
    early = _reads(reference, ["2026-01", "2026-02", "2026-03"], 120, seed=1)
    late = _reads(reference, ["2026-04", "2026-05"], 120, seed=2, brighter=0.08)
    rows = [*early.itertuples(index=False), *late.itertuples(index=False)]
    with store.open_store(db) as con:
        for i, row in enumerate(rows):
            con.execute(
                "INSERT INTO ai_read_input (sop_instance_uid, person_id, model_name, model_version, "
                "study_date, read_at, refused, score, feature_distance, statistics_distance, "
                + ", ".join(STAT_COLUMNS)
                + ") VALUES (?, NULL, 'mammography', '1.0.0', ?, now(), false, ?, 0.5, 0.5, "
                + ", ".join("?" * len(STAT_COLUMNS))
                + ")",
                [
                    f"2.25.{i}",
                    row.date,
                    row.score,
                    *[getattr(row, c.removeprefix("stat_")) for c in STAT_COLUMNS],
                ],
            )


@dataclass(frozen=True)
class BoardApp:
    """The governance store served: ``url``, and ``patient``, a demo patient with images."""

    url: str
    patient: int


@pytest.fixture(scope="session")
def board_app(
    demo_clinic: DemoClinic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BoardApp]:
    """A copy of the demo clinic (store, model and images) with planted AI reads (later months
    brighter: the Drift tab has a figure and alerts) and the data-quality tests' planted problems
    (the Data quality tab has failing rows), served for the Governance tabs' browser tests.

    Why one store for both: the admin's tabs (test_governance_tabs) and the ethics board's tabs
    and banners (test_signoff_browser) each served a copy of their own; one server instead of two
    saves a server start and every page's first open. Neither test reads what the other planted,
    and neither writes anything the other reads.
    """
    from tests.analytics.governance.test_data_quality import plant_problems  # (as plant_reads)

    folder = tmp_path_factory.mktemp("e2e-board")
    db = folder / "clinic.duckdb"
    shutil.copyfile(demo_clinic.db, db)
    for part in ("models", "images"):
        source = demo_clinic.db.with_name(f"clinic_{part}")
        if source.exists():
            shutil.copytree(source, folder / source.name)
    plant_reads(db)
    plant_problems(db)
    with serve(db, folder / "streamlit.log") as url:
        yield BoardApp(url=url, patient=demo_clinic.imaged_patients[0])


@dataclass(frozen=True)
class SeriesApp:
    """A small demo store with one brain MR series read in 3D at ingest, served: ``url``, and
    ``volume_patients`` (the patients the demo wrote volumes for, as ``oncolens demo`` lists them)."""

    url: str
    volume_patients: list[int]


@pytest.fixture(scope="session")
def series_app(
    browser_prerequisites: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeriesApp]:
    """A 30-patient demo store (2 images, 1 patient's volumes read in 3D), served for the session.

    Why one for both: the 3D viewer's test (test_viewer_browser) and the zipped-series upload
    (test_upload_browser) each built a 30-patient store of their own and served it (a demo build,
    a server start and a cold Imaging page each: about a minute of two busy cores). The upload
    test needs a store the 3D model reads uploads for, which this one is; what it uploads is
    shown and audited, never filed, so the viewer test's series and patients stay as they were.
    """
    folder = tmp_path_factory.mktemp("e2e-series")
    summary = _demo_volumes(folder / "volumes.duckdb")
    assert summary["volume_reads"]["series_read"] >= 1, summary["volume_reads"]
    with serve(folder / "volumes.duckdb", folder / "streamlit.log") as url:
        yield SeriesApp(url=url, volume_patients=[int(p) for p in summary["volume_patients"]])


def _demo_volumes(db: Path) -> dict:
    try:
        return demo_store(db, 30, 2, timeout_s=600, volumes=1)
    except RuntimeError as exc:
        pytest.fail(str(exc))
