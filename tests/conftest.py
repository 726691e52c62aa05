"""Shared fixtures: one small demo store per test session, built by the real generator; a way to
build an expensive input once per run, whichever xdist worker asks first (``build_once``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
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


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "demo.duckdb"
    write_demo(path, patients=DEMO_PATIENTS, seed=DEMO_SEED)
    return path


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
def clinic_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4,000-patient demo store (no stored worklist): thousands of lesion series of every length."""
    path = tmp_path_factory.mktemp("clinic") / "clinic.duckdb"
    write_demo(path, patients=CLINIC_PATIENTS, seed=DEMO_SEED, rank_worklist=False)
    return path


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
