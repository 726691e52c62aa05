"""Where 3D model bundles live, and their cards read without loading a network.

The Governance page lists every model's card for the ethics board. Loading a bundle
(``models.volumes.bundle.load_bundle``) imports torch and deserialises TorchScript, seconds of
a page's first open, and verifies weights that a card does not need. This module reads only
the JSON a bundle carries (``configs/metadata.json``, ``docs/card.json``, the registration's
``oncolens.json``), so the cards show in a page that never imports torch; the weights' sha256
stays what the card and the registration claim, and every read still goes through the
verifying ``load_bundle``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["BUILTIN", "BUILTIN_DIR", "bundle_cards", "bundle_root"]

BUILTIN = "brain_mets_3d"
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "weights" / BUILTIN


def bundle_root() -> Path:
    """Where registered bundles live: ``$ONCOLENS_MODELS/bundles`` or ``~/.oncolens/models/bundles``."""
    extra = os.environ.get("ONCOLENS_MODELS")
    base = Path(extra) if extra else Path.home() / ".oncolens" / "models"
    return base.expanduser() / "bundles"


def _read(path: Path) -> dict:
    """A bundle file as a JSON object; ``{}`` when it is absent (a bundle need not have a card)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def bundle_cards(*, dest: Path | None = None) -> list[dict]:
    """One entry per 3D bundle, the built-in one first, then the registered ones by name.

    Each entry: ``name``, ``builtin``, ``metadata`` (MONAI's ``metadata.json``), ``card`` (the
    training's ``docs/card.json``, ``{}`` for a bundle that ships none), ``registration``
    (``oncolens.json``: the pinned sha256, when and from where), ``saliency`` (the figures of
    ``docs/saliency.json``, or the card's ``saliency`` section; None when unmeasured) and ``error``: why the JSON
    could not be read (the entry is still listed, so a broken bundle is visible, not hidden).
    """
    base = (dest or bundle_root()).expanduser().absolute()
    roots = [(BUILTIN, BUILTIN_DIR, True)] if (BUILTIN_DIR / "configs").is_dir() else []
    if base.is_dir():
        roots += [
            (p.name, p, False) for p in sorted(base.iterdir()) if (p / "oncolens.json").is_file()
        ]
    entries = []
    for name, root, builtin in roots:
        entry: dict = {"name": name, "builtin": builtin, "error": None}
        try:
            entry["metadata"] = _read(root / "configs" / "metadata.json")
            entry["card"] = _read(root / "docs" / "card.json")
            entry["registration"] = {} if builtin else _read(root / "oncolens.json")
            # the saliency figures: their own file (measured after training), else the card's
            entry["saliency"] = _read(root / "docs" / "saliency.json") or entry["card"].get(
                "saliency"
            )
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            entry.update(metadata={}, card={}, registration={}, saliency=None, error=str(exc))
        entries.append(entry)
    return entries
