"""MONAI bundles: the built-in one verifies; `register` takes bundles whose contract OncoLens
meets and refuses the others with the reason, copying nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from models.volumes import bundle as bundles

pytestmark = pytest.mark.filterwarnings("ignore")


def _copy_builtin(tmp_path: Path, name: str = "my_model", *, card: bool = True) -> Path:
    root = tmp_path / "src" / name
    shutil.copytree(bundles.BUILTIN_DIR, root)
    if not card:
        (root / "docs" / "card.json").unlink()
    return root


def _edit_metadata(root: Path, edit) -> None:
    path = root / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_the_builtin_bundle_verifies_and_states_its_contract() -> None:
    b = bundles.load_bundle()
    assert b.builtin and b.sha256 == b.card["weights"]["sha256"] == bundles.sha256_of(
        bundles.BUILTIN_DIR / "models" / "model.ts"
    )
    c = b.contract
    assert (c.modality, c.channels, c.spacing_mm, c.axcodes) == ("MR", 1, (2.0, 2.0, 2.0), "SPL")
    assert c.labels == ("background", "metastasis")
    size = sum(p.stat().st_size for p in bundles.BUILTIN_DIR.rglob("*") if p.is_file())
    assert size < 4 << 20  # shipped in the package: keep it small


def test_a_good_bundle_is_registered_pinned_and_listed(tmp_path) -> None:
    # a re-exported network: the built-in weights scripted again under another name, no card
    src = _copy_builtin(tmp_path, "hospital_brain", card=False)
    net = torch.jit.load(str(src / "models" / "model.ts"))
    torch.jit.save(net, str(src / "models" / "model.ts"))
    dest = tmp_path / "models"
    b = bundles.register(src, dest=dest)
    assert b.name == "hospital_brain" and not b.builtin and b.root == dest / "hospital_brain"
    pinned = json.loads((dest / "hospital_brain" / "oncolens.json").read_text())
    assert pinned["sha256"] == b.sha256 and pinned["contract"]["modality"] == "MR"
    assert bundles.available_bundles(dest=dest) == [bundles.BUILTIN, "hospital_brain"]
    assert bundles.bundle_for("MR", "hospital_brain", dest=dest).sha256 == b.sha256

    # the installed copy tampered with after registration: refused at load, with both digests
    with open(dest / "hospital_brain" / "models" / "model.ts", "ab") as fh:
        fh.write(b"\0")
    bundles._cached.cache_clear()
    with pytest.raises(bundles.BundleError, match="does not match its registration"):
        bundles.load_bundle("hospital_brain", dest=dest)


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("no_metadata", "configs/metadata.json is missing"),
        ("four_channels", "needs 4 input channels; OncoLens gives one image per series"),
        ("tampered", "does not match its card"),
        ("no_spacing", "input spacing is not stated"),
        ("pet", "input modality PT"),
        ("three_outputs", "the model's output is (1, 2,"),
        ("ct_without_guard", "no input guard for CT volumes"),
        ("not_torchscript", "not loadable TorchScript"),
    ],
)
def test_a_bundle_whose_contract_cannot_be_met_is_refused_with_the_reason(
    tmp_path, breakage, reason
) -> None:
    src = _copy_builtin(tmp_path)
    image = lambda m: m["network_data_format"]["inputs"]["image"]  # noqa: E731
    if breakage == "no_metadata":
        (src / "configs" / "metadata.json").unlink()
    elif breakage == "four_channels":
        _edit_metadata(src, lambda m: image(m).update(num_channels=4))
    elif breakage == "tampered":
        card = json.loads((src / "docs" / "card.json").read_text())
        card["weights"]["sha256"] = "0" * 64
        (src / "docs" / "card.json").write_text(json.dumps(card))
    elif breakage == "no_spacing":
        _edit_metadata(src, lambda m: image(m).pop("pixdim"))
        (src / "configs" / "inference.json").unlink()
    elif breakage == "pet":
        _edit_metadata(src, lambda m: image(m).update(modality="PT"))
    elif breakage == "three_outputs":
        _edit_metadata(
            src, lambda m: m["network_data_format"]["outputs"]["pred"].update(num_channels=3)
        )
    elif breakage == "ct_without_guard":
        _edit_metadata(src, lambda m: image(m).update(modality="CT"))
        (src / "configs" / "input_guard.json").unlink()
    elif breakage == "not_torchscript":
        (src / "models" / "model.ts").write_bytes(b"not a model")
        (src / "docs" / "card.json").unlink()
    dest = tmp_path / "models"
    with pytest.raises(bundles.BundleError) as err:
        bundles.register(src, dest=dest)
    assert reason in str(err.value) and "\n" not in str(err.value)
    assert not dest.exists() or not any(dest.iterdir())  # nothing copied


def test_spacing_and_orientation_can_come_from_the_bundles_inference_config(tmp_path) -> None:
    src = _copy_builtin(tmp_path)
    _edit_metadata(src, lambda m: m["network_data_format"]["inputs"]["image"].pop("pixdim"))
    assert bundles.contract_of(src).spacing_mm == (2.0, 2.0, 2.0)  # from Spacingd
    with pytest.raises(bundles.BundleError, match="built-in model's name"):
        bundles.register(_copy_builtin(tmp_path / "b", bundles.BUILTIN), dest=tmp_path / "m")


@pytest.mark.parametrize("name", ["mammography", "brain_mri", "treatment", "forecast"])
def test_a_bundle_named_after_another_model_is_refused(tmp_path, name) -> None:
    """Model versions are known by (name, version): a bundle sharing a 2D model's or the clinic
    model's name would share its sign-off and its place in the worklist."""
    with pytest.raises(bundles.BundleError, match=f"'{name}' is the name of OncoLens"):
        bundles.register(_copy_builtin(tmp_path / "b", name), dest=tmp_path / "m")
    assert not (tmp_path / "m" / name).exists()


def test_the_saliency_figures_live_in_their_own_file_and_join_the_card(tmp_path) -> None:
    """docs/card.json is what training writes (byte for byte); docs/saliency.json, written by
    the saliency command, is shown as the card's ``saliency`` section."""
    committed = json.loads((bundles.BUILTIN_DIR / "docs" / "card.json").read_text())
    assert "saliency" not in committed
    card = bundles.read_card(bundles.BUILTIN_DIR)
    assert card["saliency"]["weights_sha256"] == committed["weights"]["sha256"]
    assert bundles.load_bundle().card["saliency"] == card["saliency"]

    src = _copy_builtin(tmp_path)
    (src / bundles.SALIENCY_FILE).unlink()
    assert "saliency" not in bundles.read_card(src)
    (src / bundles.SALIENCY_FILE).write_text("{not json")
    with pytest.raises(bundles.BundleError, match="docs/saliency.json"):
        bundles.read_card(src)
    # a bundle without a card still shows its saliency file; the built-in one needs its card
    (src / bundles.SALIENCY_FILE).write_text(json.dumps({"weights_sha256": "x"}))
    (src / "docs" / "card.json").unlink()
    assert bundles.read_card(src) == {"saliency": {"weights_sha256": "x"}}
