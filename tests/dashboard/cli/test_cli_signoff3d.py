"""The 3D models in the ethics board's sign-off from the command line (issue 21): `oncolens lineage`
lists the built-in 3D model and a registered bundle with the sha256 their weights are pinned to, and
`oncolens predict SERIES_DIR` carries the sign-off of that version and is withheld (an error, exit 1)
where approval is required and not given, exactly as for a 2D read."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from analytics import store
from analytics.governance import audit, users
from analytics.governance.lifecycle import approvals
from dashboard.cli.main import main
from models.volumes import phantoms
from models.volumes.cards import BUILTIN, BUILTIN_DIR
from tests.models.volumes.conftest import write_phantom_series

pytestmark = pytest.mark.filterwarnings("ignore")
BUILTIN_SHA = hashlib.sha256((BUILTIN_DIR / "models" / "model.ts").read_bytes()).hexdigest()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """An empty store with a board member and an admin, a registered copy of the built-in bundle
    under another name (``oncolens models add``), and a brain MR series with a 26 mm lesion."""
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path / "models"))
    db = tmp_path / "clinic.duckdb"
    with store.open_store(db, create=True) as con:
        users.add_user(con, "board-test", "ethics_board", password="board-test-password-1")
        users.add_user(con, "admin-test", "admin", password="admin-test-password-1")
    ours = tmp_path / "ours"
    shutil.copytree(BUILTIN_DIR, ours)
    assert main(["models", "add", str(ours)]) == 0
    rng = np.random.default_rng([4242, 3])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 26.0), 26.0)
    series = write_phantom_series(vol, tmp_path / "brain", "MR")
    return {"db": db, "series": series}


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _decide(db: Path, name: str, version_id: str, decision: str = "approved") -> None:
    with store.open_store(db) as con:
        approvals.decide(
            con,
            model_name=name,
            model_version="1.2.0",
            version_id=version_id,
            decision=decision,
            comment="3D card, guard and saliency reviewed",
            actor="board-test",
        )


def test_lineage_lists_the_3d_models_with_their_pinned_weights(env, capsys) -> None:
    capsys.readouterr()
    assert main(["lineage", "--db", str(env["db"]), "--json"]) == 0
    rows = {r["model"]: r for r in _lines(capsys.readouterr().out)}
    builtin, ours = rows[BUILTIN], rows["ours"]
    assert builtin["kind"] == ours["kind"] == "volume"
    assert builtin["version"] == ours["version"] == "1.2.0"  # the bundle's metadata version
    assert builtin["version_id"] == BUILTIN_SHA  # the card's sha256, which every load verifies
    pinned = json.loads((Path(env["db"]).parent / "models/bundles/ours/oncolens.json").read_text())
    assert ours["version_id"] == pinned["sha256"]  # the registration's pin
    assert builtin["approval"]["status"] == "not reviewed"
    assert builtin["data"]["rows"] == {"train": 44, "guard": 22, "test": 24}
    # a decision on the built-in weights is that model's alone: a registered copy of the same
    # weights under another name is its own model for the board
    _decide(env["db"], BUILTIN, BUILTIN_SHA)
    assert main(["lineage", "--db", str(env["db"]), "--json"]) == 0
    rows = {r["model"]: r for r in _lines(capsys.readouterr().out)}
    assert rows[BUILTIN]["approval"]["status"] == "approved"
    assert rows["ours"]["approval"]["status"] == "not reviewed"


def test_predict_a_series_carries_its_sign_off_and_is_withheld_when_required(env, capsys) -> None:
    db, series = str(env["db"]), str(env["series"])
    capsys.readouterr()
    assert main(["predict", series, "--db", db, "--json"]) == 0
    (read,) = _lines(capsys.readouterr().out)
    assert read["kind"] == "volume" and read["label"] == "lesion"
    approval = read["approval"]
    assert approval["model"] == BUILTIN and approval["version_id"] == BUILTIN_SHA
    assert approval["status"] == "not reviewed" and not approval["withheld"]
    assert "brain_mets_3d model (version 1.2.0) has not been approved" in approval["message"]
    assert main(["predict", series, "--db", db]) == 0  # the text says so under the read
    assert "NOTE: The brain_mets_3d model (version 1.2.0) has not been" in capsys.readouterr().out

    with store.open_store(env["db"]) as con:
        approvals.set_require_approval(con, True, actor="admin-test")
    assert main(["predict", series, "--db", db, "--json"]) == 1
    captured = capsys.readouterr()
    (withheld,) = _lines(captured.out)
    assert withheld["error"].startswith("Output withheld: the brain_mets_3d model")
    assert withheld["approval"]["withheld"] is True
    assert not {"label", "lesion", "lesions", "probability"} & set(withheld)  # nothing of the read
    assert "1 of 1" in captured.err and "Traceback" not in captured.err

    _decide(env["db"], BUILTIN, "0" * 64)  # approved for other weights: does not apply
    assert main(["predict", series, "--db", db, "--json"]) == 1
    (other,) = _lines(capsys.readouterr().out)
    assert "approved for different weights" in other["approval"]["status_text"]

    _decide(env["db"], BUILTIN, BUILTIN_SHA)
    assert main(["predict", series, "--db", db, "--json"]) == 0
    (approved,) = _lines(capsys.readouterr().out)
    assert approved["approval"]["status"] == "approved" and approved["label"] == "lesion"
    assert approved["approval"]["message"] is None

    # a registered bundle named with --model is signed off on its own
    assert main(["predict", series, "--db", db, "--json", "--model", "ours"]) == 1
    (ours,) = _lines(capsys.readouterr().out)
    assert ours["approval"]["model"] == "ours" and ours["approval"]["withheld"] is True
    with store.open_store(env["db"], read_only=True) as con:
        assert audit.verify(con).ok
