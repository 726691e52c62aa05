"""The 3D model's training is deterministic on CPU and writes a bundle OncoLens can load."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.training import train3d
from models.volumes import bundle as bundles

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(autouse=True)
def _restore_torch_settings():
    """Training switches torch to deterministic algorithms and two threads; other tests keep theirs."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def _short_run(cases) -> str:
    """sha256 over every tensor's bytes: the last bit of any weight counts."""
    torch.set_num_threads(train3d.THREADS)
    torch.use_deterministic_algorithms(True)
    net = train3d.train(cases, iterations=2)
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_two_short_trainings_from_the_same_seeds_give_the_same_weights(tmp_path) -> None:
    cases = train3d.cases(1, 1)
    first, second = _short_run(cases), _short_run(cases)
    assert first == second
    assert _short_run(train3d.cases(5, 1)) != first  # other volumes: other weights


def test_the_written_bundle_loads_with_its_contract_and_card(tmp_path) -> None:
    cases = train3d.cases(1, 3)
    net = train3d.train(cases, iterations=1)
    guard = train3d.fit_guard(cases, cases[:1])
    out = tmp_path / "bundles" / "retrained"
    digest = train3d.write_bundle(net, out, {"metrics": {}}, guard)
    card = json.loads((out / "docs" / "card.json").read_text())
    assert card["weights"]["sha256"] == digest == bundles.sha256_of(out / "models" / "model.ts")
    contract = bundles.contract_of(out)
    assert contract.spatial_shape == train3d.WINDOW and contract.axcodes == train3d.AXCODES
    registered = bundles.register(out, dest=tmp_path / "models")
    assert registered.sha256 == digest and registered.guard.threshold == train3d.GUARD_MARGIN


def test_the_committed_card_pins_the_committed_weights() -> None:
    card = json.loads((bundles.BUILTIN_DIR / "docs" / "card.json").read_text())
    weights = bundles.BUILTIN_DIR / card["weights"]["file"]
    assert card["weights"]["sha256"] == bundles.sha256_of(weights)


def _keys(data: object) -> list[str]:
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in (str(key), *_keys(v))]
    if isinstance(data, list):
        return [k for v in data for k in _keys(v)]
    return []


def test_the_committed_card_holds_nothing_a_rerun_would_change() -> None:
    """Times, dates and the machine's load go to docs/run.json, outside the byte-for-byte check."""
    card = json.loads((bundles.BUILTIN_DIR / "docs" / "card.json").read_text())
    # the saliency figures are not the training's: `models.saliency.volume_quality --write-card`
    # writes them, with their own run's timings, to docs/saliency.json, outside the check
    assert "saliency" not in card and bundles.SALIENCY_FILE not in train3d.REPRODUCIBLE
    timed = [k for k in _keys(card) if any(w in k for w in ("date", "second", "load", "_ms"))]
    assert timed == []
    assert "docs/run.json" not in train3d.REPRODUCIBLE
    run = json.loads((bundles.BUILTIN_DIR / "docs" / "run.json").read_text())
    assert run["seconds_train"] > 0 and run["threads"] == train3d.THREADS


_EXPORT_IN_CHILD = """
import sys, torch
from pathlib import Path
from models.training import train3d
torch.manual_seed(7)
train3d.export_torchscript(train3d.network().eval(), Path(sys.argv[1]))
"""


def test_the_torchscript_file_is_byte_identical_whatever_the_process_hash_seed(tmp_path) -> None:
    """torch.jit.script orders constants by a Python set, whose order follows the process's hash
    seed: exported in-process, the same weights gave another sha256 in another process."""
    torch.manual_seed(7)
    here = tmp_path / "here" / "model.ts"
    train3d.export_torchscript(train3d.network().eval(), here)
    there = tmp_path / "there" / "model.ts"
    root = str(Path(train3d.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", _EXPORT_IN_CHILD, str(there)], env=env, check=True)
    assert bundles.sha256_of(here) == bundles.sha256_of(there)
    loaded = torch.jit.load(str(here))
    torch.manual_seed(7)
    reference = train3d.network().eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), reference(x))
