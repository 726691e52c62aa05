"""models.inference.registry: committed weights match their cards; altered or missing weights are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from models.inference import registry
from models.inference.tasks import TASKS


@pytest.mark.parametrize("name", sorted(TASKS))
def test_committed_weights_match_their_card(name: str) -> None:
    weights, card_path = registry.find_model_files(name)
    card = json.loads(card_path.read_text())
    assert card["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert weights.stat().st_size < 5 * 2**20  # "a few MB at most"
    for key in (
        "intended_use",
        "training_data",
        "evaluation_data",
        "metrics",
        "caveats",
        "calibration",
    ):
        assert card[key]
    auc = card["metrics"][f"auc_{card['positive_label']}_vs_rest"]
    assert 0.5 < auc["ci_low"] <= auc["value"] <= auc["ci_high"] <= 1.0
    assert auc["value"] < 1.0  # honest: phantoms are made hard enough not to be solved perfectly
    assert card["metrics"]["ece_after_calibration"] < 0.1
    model = registry.load_model(name, device="cpu")
    # temperature scaling only where it lowered held-out ECE (issue 18); otherwise raw softmax
    calibration = card["calibration"]
    applied = calibration["applied"]
    assert applied == all(
        e["after"] < e["before"] for e in (calibration["ece_held_out"], calibration["ece_test"])
    )
    assert model.calibrated is applied
    assert model.network.temperature.item() == pytest.approx(
        calibration["temperature"] if applied else 1.0, rel=1e-3
    )
    assert not model.network.training


def _copy_model(name: str, folder: Path) -> tuple[Path, Path]:
    weights, card = registry.find_model_files(name)
    return Path(shutil.copy(weights, folder)), Path(shutil.copy(card, folder))


def test_altered_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights, _ = _copy_model("brain_mri", tmp_path)
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path))
    with pytest.raises(registry.ModelUnavailableError, match="do not match their model card"):
        registry.load_model("brain_mri")


def test_weights_of_another_architecture_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, card_path = _copy_model("brain_mri", tmp_path)
    torch.save({"not": torch.zeros(3)}, weights)
    card = json.loads(card_path.read_text())
    card["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path))
    with pytest.raises(registry.ModelUnavailableError, match="cannot be loaded"):
        registry.load_model("brain_mri")


def test_pickled_code_in_weights_is_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, card_path = _copy_model("brain_mri", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, weights)
    card = json.loads(card_path.read_text())
    card["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(card))
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path))
    with pytest.raises(registry.ModelUnavailableError):
        registry.load_model("brain_mri")


def test_missing_and_unknown_models_say_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(registry.ModelUnavailableError, match="unknown model"):
        registry.load_model("knee_ct")
    monkeypatch.setattr(registry, "BUNDLED_WEIGHTS", tmp_path)
    with pytest.raises(
        registry.ModelUnavailableError, match="python -m models.training.train --task mammography"
    ):
        registry.load_model("mammography")
    assert registry.available_models() == []
