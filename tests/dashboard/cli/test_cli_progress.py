"""The CLI's progress bars: drawn on a terminal's stderr, never on captured output, never on stdout."""

from __future__ import annotations

import io
import json

from dashboard.cli import progress as cli_progress
from dashboard.cli.main import main


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_and_every_item_still_comes_through(monkeypatch):
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    assert list(cli_progress.track(range(5), "counting", 5)) == [0, 1, 2, 3, 4]
    assert (
        "oncolens: counting" in err.getvalue() and "/5 " in err.getvalue()
    )  # cleared when done (leave=False)


def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert list(cli_progress.track(iter("abc"), "letters")) == ["a", "b", "c"]
    assert err.getvalue() == ""


def test_predict_on_a_terminal_keeps_stdout_pure_json_lines(monkeypatch, tmp_path, capsys):
    """A bar on stderr must never leak into the JSON Lines a script reads from stdout."""
    import numpy as np
    from pydicom.uid import generate_uid

    from models.training import synthetic as phantoms
    from models.training.synthetic_dicom import write_phantom_dicom

    for i in range(2):
        write_phantom_dicom(
            phantoms.mammogram(np.random.default_rng(i), "benign"),
            tmp_path / f"m{i}.dcm",
            patient_id=f"P{i}",
            study_uid=generate_uid(),
            series_uid=generate_uid(),
            sop_instance_uid=generate_uid(),
            study_date="20240105",
        )
    monkeypatch.setattr("sys.stderr", Terminal())
    assert main(["predict", str(tmp_path), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("label" in json.loads(line) for line in lines)
