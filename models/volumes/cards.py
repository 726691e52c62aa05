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

__all__ = [
    "BUILTIN",
    "BUILTIN_DIR",
    "SALIENCY_FILE",
    "BundleError",
    "available_bundles",
    "bundle_cards",
    "bundle_root",
    "find_bundle",
    "read_card",
    "read_json",
    "saliency_measured_on",
]

BUILTIN = "brain_mets_3d"
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "weights" / BUILTIN
SALIENCY_FILE = "docs/saliency.json"


class BundleError(ValueError):
    """A bundle OncoLens cannot use; the message is the one-line reason."""


def bundle_root() -> Path:
    """Where registered bundles live: ``$ONCOLENS_MODELS/bundles`` or ``~/.oncolens/models/bundles``."""
    extra = os.environ.get("ONCOLENS_MODELS")
    base = Path(extra) if extra else Path.home() / ".oncolens" / "models"
    return base.expanduser() / "bundles"


def find_bundle(name: str, *, dest: Path | None = None) -> Path:
    """The folder of the bundle ``name``: the built-in one, or a registered one (a name of letters,
    digits, ``-`` and ``_`` only: never a path built from input); ``BundleError`` when none."""
    if name == BUILTIN:
        return BUILTIN_DIR
    base = (dest or bundle_root()).expanduser().absolute()
    if not name or any(ch not in "-_" and not ch.isalnum() for ch in name):
        raise BundleError(f"no 3D model named {name!r}")
    path = base / name
    if not (path / "oncolens.json").is_file():
        raise BundleError(f"no 3D model named {name!r} (registered ones live in {base})")
    return path


def available_bundles(*, dest: Path | None = None) -> list[str]:
    """The built-in bundle's name, then the registered ones (sorted)."""
    base = (dest or bundle_root()).expanduser().absolute()
    found = [BUILTIN] if (BUILTIN_DIR / "models" / "model.ts").is_file() else []
    if base.is_dir():
        found += sorted(p.name for p in base.iterdir() if (p / "oncolens.json").is_file())
    return found


def read_json(path: Path, what: str) -> dict:
    """A bundle file as a JSON object; ``BundleError`` naming ``what`` when it is missing or bad."""
    if not path.is_file():
        raise BundleError(f"{what} is missing ({path.name})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{what} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{what} is not a JSON object")
    return data


def saliency_measured_on(saliency: object, weights_sha256: str | None) -> bool:
    """Whether saliency figures (``docs/saliency.json``, or an older card's ``saliency`` section)
    were measured on the weights whose sha256 is ``weights_sha256``.

    The one rule for every place that shows, keeps or reports them (the cards listing, the 3D
    verdict, ``oncolens validate``, a retraining): figures count only for the exact weights they
    were measured on, so a retrained or replaced model never borrows its predecessor's verdicts.
    Figures without a ``weights_sha256``, or weights without a known sha256, never match.
    """
    if not isinstance(saliency, dict) or not weights_sha256:
        return False
    measured = saliency.get("weights_sha256")
    return isinstance(measured, str) and measured == weights_sha256


def read_card(root: Path) -> dict:
    """A bundle's card (``docs/card.json``; {} when it has none) with ``docs/saliency.json`` as its
    ``saliency`` section when that file exists (it wins over a section inside an older card).
    Either file unreadable is a ``BundleError`` with the file's name."""
    card = (
        read_json(root / "docs" / "card.json", "docs/card.json")
        if (root / "docs" / "card.json").is_file()
        else {}
    )
    if (root / SALIENCY_FILE).is_file():
        card["saliency"] = read_json(root / SALIENCY_FILE, SALIENCY_FILE)
    return card


def bundle_cards(*, dest: Path | None = None) -> list[dict]:
    """One entry per 3D bundle, the built-in one first, then the registered ones by name.

    Each entry: ``name``, ``builtin``, ``metadata`` (MONAI's ``metadata.json``), ``card`` (the
    training's ``docs/card.json``, ``{}`` for a bundle that ships none), ``registration``
    (``oncolens.json``: the pinned sha256, when and from where), ``saliency`` (the figures of
    ``docs/saliency.json``, or an older card's section; None when unmeasured or measured on other
    weights than the card's or registration's sha256) and ``error``: why the JSON
    could not be read (the entry is still listed, so a broken bundle is visible, not hidden).
    """
    entries = []
    for name in available_bundles(dest=dest):
        builtin = name == BUILTIN
        entry: dict = {"name": name, "builtin": builtin, "error": None}
        try:
            root = find_bundle(name, dest=dest)  # a folder named by hand may not be a valid name
            entry["metadata"] = read_json(
                root / "configs" / "metadata.json", "configs/metadata.json"
            )
            entry["card"] = read_card(root)
            entry["registration"] = (
                {} if builtin else read_json(root / "oncolens.json", "oncolens.json")
            )
        except BundleError as exc:
            entry.update(metadata={}, card={}, registration={}, error=str(exc))
        # the saliency figures count only for the weights they were measured on
        weights = (
            (entry["card"].get("weights") or {}).get("sha256")
            if builtin
            else entry["registration"].get("sha256")  # pinned at registration, checked every load
        )
        saliency = entry["card"].pop("saliency", None)
        entry["saliency"] = saliency if saliency_measured_on(saliency, weights) else None
        entries.append(entry)
    return entries
