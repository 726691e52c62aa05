"""A 3D model bundle's version in the registry (issue 21): its version is the bundle's metadata
version, its id the sha256 its weights are pinned to (the built-in card's, a registered bundle's
registration), and a bundle whose JSON cannot be read has no id."""

from __future__ import annotations

import hashlib

from analytics.governance.lifecycle import lineage
from models.volumes.cards import BUILTIN, BUILTIN_DIR, bundle_cards


def test_the_builtin_bundle_is_pinned_to_its_cards_weights() -> None:
    entry = next(e for e in bundle_cards() if e["name"] == BUILTIN)
    v = lineage.volume_version(entry)
    weights = (BUILTIN_DIR / "models" / "model.ts").read_bytes()
    assert v.kind == "volume" and v.model_name == BUILTIN
    assert v.version == entry["metadata"]["version"] == entry["card"]["version"]
    assert v.version_id == hashlib.sha256(weights).hexdigest()  # independent of the card's claim
    assert v.data["rows"] == {"train": 44, "guard": 22, "test": 24}
    assert v.command == "python -m models.training.train3d"


def test_a_registered_bundle_is_pinned_to_its_registration() -> None:
    sha = "ab" * 32
    entry = {
        "name": "ours",
        "builtin": False,
        "error": None,
        "metadata": {"version": "0.3.1", "name": "Hospital brain mets"},
        "card": {"weights": {"sha256": "cd" * 32}},  # a card's claim is not the pin
        "registration": {"sha256": sha, "registered_at": "2026-12-03T10:00:00+00:00",
                         "source": "/srv/bundles/ours"},
    }  # fmt: skip
    v = lineage.volume_version(entry)
    assert (v.version, v.version_id, v.title) == ("0.3.1", sha, "Hospital brain mets")
    assert v.trained_at == "2026-12-03T10:00:00+00:00"
    assert v.data["source"] == "registered bundle from /srv/bundles/ours"
    assert "data fingerprint" in v.missing  # no card data: said missing, not guessed


def test_a_broken_bundle_is_listed_without_an_id() -> None:
    entry = {"name": "broken", "builtin": False, "error": "configs/metadata.json is missing",
             "metadata": {}, "card": {}, "registration": {}}  # fmt: skip
    v = lineage.volume_version(entry)
    assert v.version_id is None and v.version == "0"
    assert v.data["error"] == "configs/metadata.json is missing"
    # a malformed pin is no id either
    entry = {**entry, "error": None, "registration": {"sha256": "not-a-sha"}}
    assert lineage.volume_version(entry).version_id is None
