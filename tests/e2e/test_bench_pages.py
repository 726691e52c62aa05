"""The page benchmark's smoke run (``bench_pages --quick``): every step of the oncologist's pass is timed.

Why a test: the bench waits on named elements (headings, widget keys, the PDF's Download button,
the saliency overlay); a page change that renames one stops the bench, and that used to be seen
only at the next ``make bench``. The times themselves are not asserted (speed is measured in
bench/, not in tests); that each step ran and ended on its outcome is.

It also checks, from the same run, that the Imaging page's saliency controls rerun only the image's
fragment (issue 23; docs/imaging.md). Only the real server shows which runs it makes (AppTest runs
every interaction as a full script run): the bench reads how each run ended off the websocket
(Streamlit's ``script_finished``: the whole page, or a fragment alone). A method change, the opacity
slider and an on-request method's Compute button must end on fragment runs only; an upload must run
the whole page (the sidebar, the lookups, the de-identification), which shows the check can fail.
This was a browser test of its own (``test_imaging_fragment``) that drove the same clicks again.

The bench drives the browser tests' own server of the demo clinic (``--url``) rather than starting
and warming up one of its own on a copy (a minute of two busy cores): this file comes first among
the browser tests, so its landing is still the server's first. Its views and its tumour-board PDF
are audited into the session's store, beside the other tests' events; those tests count only
their own actions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import App
from tests.e2e.serving import ROOT

# every kind of step the oncologist's pass times (bench.bench_pages: oncologist, imaging_flow)
STEPS = {
    "landing (cold server)",
    "sign in -> Home",
    "Patient (first open, a patient with images)",
    "Patient (another patient)",
    "Imaging (first open)",
    "Cohorts (first open)",
    "Tumour-board PDF (Prepare -> Download button)",
    "Worklist: next/previous page",
    "Cohorts: compare groups by",
    "Upload -> AI read + Grad-CAM overlay",
    "Integrated gradients on screen",
    "Imaging: saliency opacity (one step)",
    "Imaging: method back to Grad-CAM (cached map)",
    "SmoothGrad on screen (Compute -> map)",  # against what the page announces
    "Occlusion on screen (Compute -> map)",
}


def test_the_quick_page_benchmark_times_every_step(app: App, tmp_path: Path):
    out = tmp_path / "rows.json"
    served = ["--db", str(app.clinic.db), "--url", app.url, "--server-pid", str(app.pid)]
    # a process of its own: Playwright's sync API runs one instance per thread, and the session's
    # browser fixture may hold this one
    run = subprocess.run(
        [sys.executable, "-m", "bench.bench_pages", "--quick", *served, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,  # a loaded two-core machine: minutes
        check=False,
        cwd=ROOT,
    )
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert not report["facts"].get("stopped")
    rows = {r["what"]: r for r in report["rows"] if r["role"] in ("oncologist", "(signed out)")}
    assert STEPS <= set(rows), sorted(STEPS - set(rows))
    for name, row in rows.items():
        assert row["n"] >= 1 and row["median_s"] > 0, name
    # the server's share is read off the websocket for every step that reruns the script
    assert rows["Integrated gradients on screen"]["server_median_s"] is not None
    # and the server's CPU seconds (its process tree, the PDF's kept Chromium included) for each step
    # (not for a mark inside one, such as the treatment section: it is timed within its page's step)
    assert rows["Tumour-board PDF (Prepare -> Download button)"]["server_cpu_median_s"] > 0
    assert all(rows[step]["server_cpu_median_s"] is not None for step in STEPS)
    assert "Pages in Chromium" in run.stdout and "targets met" in run.stdout

    # the image's panel reruns alone; a cut-short run ("early") may sit between (a request that came
    # while the previous run still drew), a page run may not
    for step in FRAGMENT_ONLY:
        assert set(rows[step]["runs"]) <= {"fragment", "early"}, (step, rows[step]["runs"])
        assert "fragment" in rows[step]["runs"], (step, rows[step]["runs"])
    for step in WHOLE_PAGE:
        assert "page" in rows[step]["runs"], (step, rows[step]["runs"])


# the saliency panel's controls: its fragment alone reruns (dashboard/app_pages/imaging.py)
FRAGMENT_ONLY = (
    "Integrated gradients on screen",
    "Imaging: saliency opacity (one step)",
    "Imaging: method back to Grad-CAM (cached map)",
    "SmoothGrad on screen (Compute -> map)",
    "Occlusion on screen (Compute -> map)",
    # and the cohort builder's fragment (dashboard/app_pages/cohorts.py)
    "Cohorts: compare groups by",
)
# a new file or another patient is a new page: the whole script runs
WHOLE_PAGE = ("Upload -> AI read + Grad-CAM overlay", "Patient (another patient)")
