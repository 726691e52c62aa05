"""The 3D model's training is deterministic on CPU and writes a bundle OncoLens can load."""

from __future__ import annotations

import json

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
    torch.set_num_threads(train3d.THREADS)
    torch.use_deterministic_algorithms(True)
    net = train3d.train(cases, iterations=2)
    return json.dumps({k: v.sum().item() for k, v in net.state_dict().items()}, sort_keys=True)


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
