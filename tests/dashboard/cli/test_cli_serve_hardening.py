"""`oncolens serve` hardening (issue 24): never a traceback in the browser, a warning when the app is
reachable from other machines."""

from __future__ import annotations

import os

import pytest

from dashboard.cli import clinic
from dashboard.cli.main import main


class _Started(Exception):
    """Raised instead of replacing the test process with Streamlit."""


def test_the_served_config_shows_no_error_details(tmp_path) -> None:
    cmd = clinic.streamlit_command(tmp_path / "c.duckdb", 8501, "127.0.0.1")
    assert cmd[cmd.index("--client.showErrorDetails") + 1] == "none"
    config = (
        clinic.Path(clinic.__file__).resolve().parents[2] / ".streamlit" / "config.toml"
    ).read_text()
    assert 'showErrorDetails = "none"' in config


@pytest.mark.parametrize(
    ("address", "warned"), [("0.0.0.0", True), ("10.1.2.3", True), ("127.0.0.1", False)]
)
def test_serve_warns_when_other_machines_can_reach_it(
    demo_db, monkeypatch, capsys, address, warned
) -> None:
    def fake_execve(*_args):
        raise _Started

    cwd = os.getcwd()
    monkeypatch.setattr(clinic.os, "execve", fake_execve)
    try:
        with pytest.raises(_Started):
            main(["serve", "--db", str(demo_db), "--address", address])
    finally:
        os.chdir(cwd)  # serve changes into the project folder before it starts Streamlit
    err = capsys.readouterr().err
    assert ("lets other machines reach OncoLens" in err) is warned
