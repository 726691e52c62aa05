"""Shared fixtures: one small demo store per test session, built by the real generator; a way to
build an expensive input once per run, whichever xdist worker asks first (``build_once``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from filelock import FileLock

from sample_data.demo import write_demo

DEMO_PATIENTS = 300
DEMO_SEED = 7


BuildOnce = Callable[[str, Callable[[Path], Any]], Any]


@pytest.fixture(scope="session")
def build_once(tmp_path_factory: pytest.TempPathFactory) -> BuildOnce:
    """``build_once(name, build)``: run ``build(folder)`` once per test run, in a folder every xdist
    worker sees, and give each caller what it returned (JSON: it travels between processes).

    Why: a session fixture is per worker, so under ``pytest -n 2`` an input that takes minutes
    (a CLI demo with its model, a validation run) was built twice. The first worker to ask builds
    it under a file lock; the other waits for it, or finds it done. Callers that write into what
    was built copy it first (``folder`` is shared).
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is pytest-N/popen-gwK: share pytest-N
        root = root.parent
    shared = root / "built-once"
    shared.mkdir(exist_ok=True)

    def once(name: str, build: Callable[[Path], Any]) -> Any:
        folder, done = shared / name, shared / f"{name}.json"
        with FileLock(shared / f"{name}.lock"):
            if not done.exists():
                if folder.exists():
                    shutil.rmtree(folder)  # a build that failed half-way in this run: again
                folder.mkdir()
                done.write_text(json.dumps(build(folder)))
        return json.loads(done.read_text())

    return once


@pytest.fixture(scope="session", autouse=True)
def _streamlit_components_scanned_once() -> Iterator[None]:
    """Streamlit's scan of the installed packages for v2 components, made once per worker, not once
    per ``AppTest``.

    Why: each new ``AppTest`` (every page test makes one or more) builds a component manager that
    reads the metadata of every installed distribution (``manifest_scanner``: ~0.6 CPU-s, half of
    a small page test; 36 of test_auth's 77 profiled seconds). The app's own server scans once at
    start-up, so users never paid this. The packages installed do not change during a run: the
    first scan's result (the real one, components registered as before) is what each later scan
    would find. Only where streamlit was imported by the collected tests (page tests); a run
    without them does not import it.
    """
    if "streamlit" not in sys.modules:
        yield
        return
    # lazy: streamlit only where page tests were collected (see above)
    from streamlit.components.v2 import manifest_scanner

    found = manifest_scanner.scan_component_manifests()

    def scanned(max_workers: int | None = None) -> list:
        return list(found)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_scanner, "scan_component_manifests", scanned)
        yield


def _built_store(build_once: BuildOnce, name: str, **demo: Any) -> Path:
    """``write_demo(**demo)`` once per run (``build_once``): the path of that store, read only.

    Why: each xdist worker generated its own, identical, copy of the session stores; now the first
    worker to ask writes it and every worker copies it (a copy of a few MB instead of a generation).
    Copying also keeps every store file of a run the same bytes, so a model trained once on one
    copy (``trained_demo``) belongs to every other copy.
    """

    def build(folder: Path) -> str:
        return str(write_demo(folder / "store.duckdb", **demo).path)

    return Path(build_once(name, build))


def _own_copy(built: Path, folder: Path, name: str) -> Path:
    """A private copy of a once-built store for this worker (its tests write into it)."""
    return Path(shutil.copyfile(built, folder / name))


@pytest.fixture(scope="session")
def demo_built(build_once: BuildOnce) -> Path:
    """The run's one 300-patient demo store as it was written (``_built_store``): read only, never
    a test's working copy (``demo_db`` is that)."""
    return _built_store(build_once, "demo-300", patients=DEMO_PATIENTS, seed=DEMO_SEED)


@pytest.fixture(scope="session")
def demo_db(demo_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 300-patient demo store, this worker's own copy of the run's one (``demo_built``)."""
    return _own_copy(demo_built, tmp_path_factory.mktemp("store"), "demo.duckdb")


TrainDemo = Callable[..., dict]


def _clinic_of(db: Path) -> tuple[str, list, str]:
    """What a treatment model is trained on, in short: the source tables' fingerprint, the clinic's
    metadata (seed, cut-off, generator) and the hash of the training table as read (before the
    training's own checks drop rows or columns: the card's lineage hashes what is left)."""
    # lazy: conftest loads for every test; the store and the model's data only for those that train
    from analytics import store
    from analytics.cohorts import base  # (the same)
    from analytics.governance.lifecycle.provenance import training_lineage  # (the same)
    from analytics.treatment.clinic_data import clinic_training_table  # (the same)

    with store.open_store(db, read_only=True) as con:
        meta = sorted(con.execute("SELECT key, value FROM clinic_metadata").fetchall())
        fingerprint = base.source_fingerprint(con)
        table, _ = clinic_training_table(con)
    return fingerprint, meta, training_lineage(table, fingerprint, {}, None)["dataset_sha256"]


@pytest.fixture(scope="session")
def trained_demo(build_once: BuildOnce, demo_built: Path) -> TrainDemo:
    """``trained_demo(db, bootstrap=B, folds=F, command=C)``: what ``train_clinic_model(db, ...)``
    writes for ``db``, a copy of ``demo_db``: the model folder beside it; returns the card.

    Why: eight test modules each trained the same clinic model (same store, settings and seed) for
    their own copy of the demo store. Training only reads the store and writes the model folder,
    and every demo store of a run holds the same clinic (``_built_store``), so the folder trained
    once per run and setting (``build_once``: under a file lock, whichever xdist worker asks first)
    and copied is what each would have trained (its card's ``training.store`` names the copy it was
    trained on; nothing reads that path). Checked per call: ``db`` holds the clinic the model was
    trained on (the source tables' fingerprint and the training table's hash).

    Trained on a copy of the store as it was *built* (``demo_built``), never on the asking worker's
    ``demo_db``: that copy is the worker's to write into (``test_demo_volumes`` adds volumes, the
    dossier tests audit), so the model depended on which worker asked first and on what had run
    there before (review item). Now every worker and run gets the same model, whatever ran first.
    """
    clinic = _clinic_of(demo_built)

    def train(db: Path, *, bootstrap: int, folds: int | None = None, command: str | None = None):
        # lazy: the treatment model (xgboost, scikit-learn) only for the tests that ask for it
        from analytics.treatment.clinic import train_clinic_model
        from analytics.treatment.model.files import model_dir_for, model_paths  # (the same)

        assert _clinic_of(db) == clinic, f"{db} holds another clinic than the demo store"
        settings: dict[str, Any] = {"bootstrap": bootstrap, "command": command}
        if folds is not None:
            settings["folds"] = folds

        def build(folder: Path) -> str:
            copy = Path(shutil.copyfile(demo_built, folder / "demo.duckdb"))
            return str(train_clinic_model(copy, **settings).folder)

        key = "-".join(f"{k}-{v}" for k, v in sorted(settings.items()) if v is not None)
        target = model_dir_for(db)
        shutil.copytree(build_once(f"demo-model-{key}", build), target)
        return json.loads(model_paths(target)[1].read_text())

    return train


# --- a real PACS: Orthanc with its DICOMweb plugin (docs/hospital.md) -------------------------

ORTHANC_BINARY = "Orthanc"
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_USER, ORTHANC_PASSWORD = "oncolens-test", "orthanc-test-password"


@dataclass(frozen=True)
class OrthancServer:
    """A running test Orthanc: ``url`` is its REST root, ``dicomweb`` its DICOMweb root."""

    url: str
    dicomweb: str
    username: str
    password: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """Start Orthanc on 127.0.0.1 (free ports, temporary storage, authentication on, no remote access),
    wait for ``/system``, stop it after the session. Skips, saying why, where Orthanc is not installed
    (``make pacs-deps`` installs it where apt-get can)."""
    binary = shutil.which(ORTHANC_BINARY) or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
    )
    if binary is None:
        pytest.skip(
            "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; `make pacs-deps`)"
        )
    if not ORTHANC_DICOMWEB_PLUGIN.exists():
        pytest.skip(
            f"the Orthanc DICOMweb plugin is not installed ({ORTHANC_DICOMWEB_PLUGIN}; "
            "apt-get install orthanc-dicomweb)"
        )
    folder = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port = _free_port(), _free_port()
    config = {
        "Name": "ONCOLENS-TEST",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {ORTHANC_USER: ORTHANC_PASSWORD},
        "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    proc = subprocess.Popen(
        [binary, str(folder / "config.json")], stdout=log, stderr=subprocess.STDOUT, cwd=folder
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"Orthanc exited with {proc.returncode}: {(folder / 'orthanc.log').read_text()[-2000:]}"
                )
            try:
                if requests.get(
                    f"{url}/system", auth=(ORTHANC_USER, ORTHANC_PASSWORD), timeout=1
                ).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("Orthanc did not answer /system within 30 s")
            time.sleep(0.1)
        yield OrthancServer(url, f"{url}/dicom-web", ORTHANC_USER, ORTHANC_PASSWORD)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


CLINIC_PATIENTS = 4_000  # a few thousand: the fast paths are compared with their references on it


@pytest.fixture(scope="session")
def clinic_db(build_once: BuildOnce, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4,000-patient demo store (no stored worklist): thousands of lesion series of every length
    (this worker's copy of the run's one, as ``demo_db``)."""
    built = _built_store(
        build_once, "clinic-4000", patients=CLINIC_PATIENTS, seed=DEMO_SEED, rank_worklist=False
    )
    return _own_copy(built, tmp_path_factory.mktemp("clinic"), "clinic.duckdb")


# --- how `make test` (pytest -n 2 --dist loadfile) hands out the files -------------------------------

E2E = "tests/e2e/"
# Files whose tests take minutes on two busy cores (the slowest of `--durations`; docs/architecture.md),
# slowest first: handed out right after the browser tests, so that no worker ends the run alone on one.
# A file missing here only runs later; nothing is skipped.
SLOW_FILES = (
    "tests/dashboard/cli/test_cli_volumes.py",
    "tests/dashboard/cli/test_cli_demo_model.py",
    "tests/dashboard/cli/test_cli_treatment.py",
    "tests/dashboard/app_pages/test_treatment_page.py",
    "tests/dashboard/cli/test_cli_hospital.py",
    "tests/dashboard/cli/test_cli.py",
    "tests/dashboard/cli/test_cli_imaging.py",
    "tests/models/training/test_train3d.py",
    "tests/analytics/worklist/test_ranking_threads.py",
    "tests/dashboard/cli/test_cli_worklist.py",
    "tests/dashboard/cli/test_cli_treatment_trials.py",
    "tests/dashboard/services/test_ray_jobs.py",
    "tests/models/saliency/test_quality.py",
)


def _loadfile(config: pytest.Config) -> bool:
    """``--dist loadfile``, asked in the controller or (as ``pytest_configure_node`` passed it on) in a
    worker, where xdist's own ``dist`` option reads "no"."""
    worker = getattr(config, "workerinput", None)
    dist = worker.get("oncolens_dist") if worker is not None else config.getoption("dist", "no")
    return dist == "loadfile"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput["oncolens_dist"] = node.config.getoption("dist")


def _unit_rank(path: str) -> tuple[int, int]:
    if path.startswith(E2E):
        return (0, 0)  # inside the unit, the order of a plain `pytest tests/e2e`
    return (1, SLOW_FILES.index(path)) if path in SLOW_FILES else (2, 0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadfile``: the browser tests first, then ``SLOW_FILES``, then the rest in
    their usual order (each file's own order kept: the sort is stable and by file)."""
    if _loadfile(config):
        items.sort(key=lambda item: _unit_rank(item.nodeid.split("::", 1)[0]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with every file under tests/e2e as one unit, handed out in collection order.

    Why: a worker that runs any browser test builds the demo clinic with images and its model, serves
    it and starts Chromium (a minute or more); one unit makes that once per run instead of once per
    worker. And xdist's default order (files with the most tests first) left the one-test files,
    the slowest of the suite, to the end, where one worker ran them while the other had finished.
    """
    if not _loadfile(config):
        return None
    from xdist.scheduler import LoadFileScheduling  # here: this hook runs only under xdist

    class BrowserTestsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return E2E if path.startswith(E2E) else path

    config.option.loadscopereorder = False  # the collection's order (pytest_collection_modifyitems)
    return BrowserTestsTogether(config, log)
