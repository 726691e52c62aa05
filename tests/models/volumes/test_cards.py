"""3D bundle cards read as JSON only (``models.volumes.cards``): no torch, broken ones listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from models.volumes import bundle as bundles
from models.volumes.cards import BUILTIN, bundle_cards


def test_the_built_in_card_comes_first_and_matches_its_weights(tmp_path: Path) -> None:
    entries = bundle_cards(dest=tmp_path)
    assert [e["name"] for e in entries] == [BUILTIN]
    card = entries[0]["card"]
    assert entries[0]["builtin"] and entries[0]["error"] is None
    assert card["weights"]["sha256"] == bundles.sha256_of(
        bundles.BUILTIN_DIR / card["weights"]["file"]
    )
    assert entries[0]["saliency"]["methods"], "the 3D saliency figures are found"


def test_registered_bundles_follow_by_name_and_a_broken_one_is_listed_with_its_reason(
    tmp_path: Path,
) -> None:
    for name, meta in (("zeta", '{"name": "Z"}'), ("alpha", "[1, 2]")):
        (tmp_path / name / "configs").mkdir(parents=True)
        (tmp_path / name / "configs" / "metadata.json").write_text(meta)
        (tmp_path / name / "oncolens.json").write_text(json.dumps({"sha256": "00"}))
    (tmp_path / "not_registered" / "configs").mkdir(parents=True)  # no oncolens.json: not a bundle
    entries = bundle_cards(dest=tmp_path)
    assert [e["name"] for e in entries] == [BUILTIN, "alpha", "zeta"]
    alpha, zeta = entries[1], entries[2]
    assert alpha["error"] and "not a JSON object" in alpha["error"]
    assert zeta["error"] is None and zeta["card"] == {} and zeta["registration"] == {"sha256": "00"}


def test_reading_cards_never_imports_torch() -> None:
    """The Governance page lists the cards without paying for torch (seconds of a first open)."""
    code = (
        "import sys; from models.volumes.cards import bundle_cards; bundle_cards(); "
        "print('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_saliency_figures_of_other_weights_are_not_shown(tmp_path: Path) -> None:
    """A registered copy whose pinned weights differ from those the saliency file measured."""
    root = tmp_path / "copy"
    (root / "docs").mkdir(parents=True)
    (root / "configs").mkdir()
    for part in ("configs/metadata.json", "docs/saliency.json"):
        (root / part).write_bytes((bundles.BUILTIN_DIR / part).read_bytes())
    (root / "oncolens.json").write_text(json.dumps({"sha256": "f" * 64}))
    entry = bundle_cards(dest=tmp_path)[1]
    assert entry["name"] == "copy" and entry["error"] is None
    assert entry["saliency"] is None, "figures measured on other weights are not this bundle's"
    assert bundle_cards(dest=tmp_path)[0]["saliency"] is not None  # the built-in: its own weights
