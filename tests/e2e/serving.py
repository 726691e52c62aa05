"""The app in a real browser, shared by the browser tests and the benchmarks that drive Chromium.

One place for what ``tests/e2e/conftest.py``, ``bench/bench_pages.py`` and ``bench/bench_viewer.py``
each used to spell out: Debian's Chromium and the flags it runs with here, a free port, a
Streamlit server started and waited for until healthy (``oncolens serve`` of a store, or
``streamlit run`` of a script), and a demo store from the real ``oncolens demo``. Why here and not
in a package: only tests and benchmarks drive a browser; the app's packages never import this
module (the import contract covers ``dashboard``, ``analytics``, ``models`` and ``sample_data``).
It imports neither pytest nor Playwright, so a benchmark runs without either at import time;
errors are ``RuntimeError``s that the test fixtures turn into failures.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# never `playwright install` (no CDN here): Debian's Chromium, without a sandbox (containers), GPU
# (none) or anything that phones home
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """``$ONCOLENS_CHROMIUM``, else Debian's Chromium, else one on PATH; None when there is none."""
    wanted = os.environ.get("ONCOLENS_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).exists() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            said = log.read_text(errors="replace") if log is not None else ""
            raise RuntimeError(f"the app exited ({proc.returncode}):\n{said}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            said = log.read_text(errors="replace") if log is not None else ""
            raise RuntimeError(f"the app did not answer in {timeout_s:.0f} s:\n{said}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@contextmanager
def serving(
    command: list[str], log: Path | None, env: dict[str, str] | None = None, timeout_s: float = 120
) -> Iterator[tuple[str, subprocess.Popen, float]]:
    """Run a Streamlit server (``command`` + its port flags) until healthy; yields (URL, process,
    seconds from the start to healthy); stopped and waited for afterwards.

    ``command`` ends where the port goes: ``oncolens serve --db X`` gets ``--port P --address
    127.0.0.1``, ``streamlit run X`` gets Streamlit's own flags (``serve_command``/``run_command``).
    """
    port = free_port()
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    t0 = time.perf_counter()
    sink = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
        )
    finally:
        if log is not None:
            sink.close()  # type: ignore[union-attr]  # the child holds its own descriptor
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, log, timeout_s)
        yield url, proc, time.perf_counter() - t0
    finally:
        _stop(proc)


def serve_command(db: Path) -> list[str]:
    """``oncolens serve`` of ``db`` as ``make run`` serves it, on 127.0.0.1 (``serving`` fills the port)."""
    return [sys.executable, "-m", "dashboard.cli.main", "serve", "--db", str(db)] + [
        "--port",
        "{port}",
        "--address",
        "127.0.0.1",
    ]


def run_command(script: Path) -> list[str]:
    """``streamlit run script``, headless, on 127.0.0.1 (``serving`` fills the port)."""
    return [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true"] + [
        "--server.address",
        "127.0.0.1",
        "--server.port",
        "{port}",
        "--browser.gatherUsageStats",
        "false",
    ]


def demo_store(
    db: Path, patients: int, images: int, timeout_s: float = 1800, volumes: int = 0
) -> dict:
    """``oncolens demo --json`` into ``db`` (images, ``volumes`` series read in 3D and the
    treatment model included); its summary."""
    out = subprocess.run(
        [sys.executable, "-m", "dashboard.cli.main", "demo", "--patients", str(patients)]
        + ["--db", str(db), "--images", str(images), "--volumes", str(volumes), "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    if out.returncode:
        raise RuntimeError(f"oncolens demo failed:\n{out.stderr}")
    return json.loads(out.stdout)
