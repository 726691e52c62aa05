"""3D models as MONAI bundles: the built-in one, and bringing your own (``oncolens models add``).

A bundle is MONAI's folder format (``configs/metadata.json``, ``models/model.ts``, ``docs/``).
OncoLens reads a bundle only when it can meet its **input contract**, which ``contract_of``
takes from ``metadata.json`` (``network_data_format.inputs.image``):

- ``modality`` MR or CT (what OncoLens assembles from series), ``num_channels`` 1 (one series,
  one image: a four-sequence BraTS model cannot be fed), ``format`` ``magnitude`` (OncoLens
  scales intensities by percentiles to 0-1, ``segment.prepare``), ``dtype`` float32;
- the voxel size: ``pixdim`` (or ``spacing``) there, or the ``Spacingd`` transform's ``pixdim``
  in ``configs/inference.json``; the axis codes likewise (``axcodes`` / ``Orientationd``,
  default RAS, MONAI's convention); ``spatial_shape`` the window ``sliding_window_inference``
  uses, each side divisible by 8;
- the output a ``segmentation`` with ``num_channels`` >= 2 (channel 0 background, the rest
  lesion), which a dry forward pass of zeros must confirm;
- an input guard: the bundle's own ``configs/input_guard.json`` or, for the built-in model's
  modality, OncoLens's reference volumes (a CT bundle cannot be guarded yet, so it is refused).

Weights are TorchScript (``torch.jit.load``: no pickle). Their sha256 is pinned: the card
(``docs/card.json``, ``weights.sha256``) of a bundle that has one must match the file, and
``register`` writes the sha256 it checked into ``oncolens.json`` of the copy, which every later
load checks again; a tampered file is refused with both digests in the message.

The 3D saliency figures live in their own file, ``docs/saliency.json`` (``SALIENCY_FILE``,
written by ``python -m models.saliency.volume_quality --write-card`` with the sha256 of the
weights it measured), not in ``docs/card.json``: the card is what training writes, byte for byte
(``train3d --check``), and a retraining rewrote it without the section. ``read_card`` gives the
card with that file as its ``saliency`` section; readers compare its ``weights_sha256`` with the
weights and say "not measured" when they differ.

Where: the built-in bundle in ``models/weights/brain_mets_3d`` (in the package); registered
ones in ``$ONCOLENS_MODELS/bundles/NAME`` or, without that variable, ``~/.oncolens/models``
(per user, beside the default store).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from models.inference.tasks import TASKS
from models.paths import inside
from models.volumes.cards import (
    BUILTIN,
    BUILTIN_DIR,
    SALIENCY_FILE,
    BundleError,
    available_bundles,
    bundle_root,
    find_bundle,
    read_card,
)
from models.volumes.cards import read_json as _json
from models.volumes.segment import NoModelForVolumeError, VolumeGuard

# The clinic's other models, named in the audit trail and the sign-off (analytics lifecycle)
OTHER_MODEL_NAMES = frozenset({"treatment", "forecast"})

__all__ = [
    "BUILTIN",
    "Bundle",
    "BundleError",
    "Contract",
    "available_bundles",
    "bundle_for",
    "bundle_root",
    "contract_of",
    "find_bundle",
    "load_bundle",
    "read_card",
    "register",
    "sha256_of",
]

SUPPORTED_MODALITIES = ("MR", "CT")
MAX_BUNDLE_BYTES = 512 << 20


@dataclass(frozen=True)
class Contract:
    modality: str
    axcodes: str
    spacing_mm: tuple[float, float, float]
    channels: int
    spatial_shape: tuple[int, int, int]
    out_channels: int
    labels: tuple[str, ...]  # output channel names

    def to_json(self) -> dict:
        return {
            "modality": self.modality,
            "axcodes": self.axcodes,
            "spacing_mm": list(self.spacing_mm),
            "channels": self.channels,
            "spatial_shape": list(self.spatial_shape),
            "out_channels": self.out_channels,
            "labels": list(self.labels),
        }


@dataclass(frozen=True)
class Bundle:
    name: str
    root: Path
    metadata: dict
    contract: Contract
    card: dict
    sha256: str
    network: Any  # torch.jit.ScriptModule
    guard: VolumeGuard
    builtin: bool

    @property
    def min_probability(self) -> float:
        """The smallest largest-voxel probability of a kept lesion (``configs/inference.json``
        ``postprocessing.min_component_probability``; 0.5, the argmax's own, when unstated)."""
        path = self.root / "configs" / "inference.json"
        try:
            post = json.loads(path.read_text(encoding="utf-8")).get("postprocessing")
            value = float(post.get("min_component_probability", 0.5))
        except (OSError, ValueError, AttributeError, TypeError):
            return 0.5
        return min(max(value, 0.5), 0.999)

    @property
    def title(self) -> str:
        return str(self.metadata.get("name") or self.name)

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "0"))

    def summary(self) -> dict:
        """What ``oncolens models`` shows: contract, sha256 and the card's headline figures."""
        return {
            "name": self.name,
            "title": self.title,
            "version": self.version,
            "builtin": self.builtin,
            "contract": self.contract.to_json(),
            "sha256": self.sha256,
            "intended_use": self.metadata.get("intended_use", ""),
            "metrics": self.card.get("metrics", {}),
            "folder": str(self.root),
        }


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find_transform(config: Any, suffix: str) -> dict | None:
    """The first transform whose ``_target_`` ends with ``suffix`` in a bundle config (any depth)."""
    if isinstance(config, dict):
        if str(config.get("_target_", "")).endswith(suffix):
            return config
        values: Any = config.values()
    elif isinstance(config, list):
        values = config
    else:
        return None
    for v in values:
        found = _find_transform(v, suffix)
        if found is not None:
            return found
    return None


def contract_of(root: Path) -> Contract:
    """The input contract of the bundle at ``root``, or ``BundleError`` saying what OncoLens cannot meet."""
    meta = _json(root / "configs" / "metadata.json", "configs/metadata.json")
    inference: dict = {}
    if (root / "configs" / "inference.json").is_file():
        inference = _json(root / "configs" / "inference.json", "configs/inference.json")
    fmt = meta.get("network_data_format") or {}
    image = (fmt.get("inputs") or {}).get("image")
    outputs = fmt.get("outputs") or {}
    pred = outputs.get("pred") or (next(iter(outputs.values())) if outputs else None)
    if not isinstance(image, dict) or not isinstance(pred, dict):
        raise BundleError(
            "metadata.json has no network_data_format.inputs.image and outputs: no input contract"
        )
    modality = str(image.get("modality", "")).upper()
    if modality not in SUPPORTED_MODALITIES:
        raise BundleError(
            f"input modality {modality or 'unstated'}: OncoLens assembles "
            f"{' and '.join(SUPPORTED_MODALITIES)} volumes only"
        )
    channels = image.get("num_channels")
    if channels != 1:
        raise BundleError(
            f"the model needs {channels} input channels; OncoLens gives one image per series (1 channel)"
        )
    if str(image.get("format", "magnitude")) != "magnitude":
        raise BundleError(
            f"input format {image.get('format')!r}: OncoLens prepares 'magnitude' inputs "
            "(percentile-scaled to 0-1)"
        )
    if str(image.get("dtype", "float32")) != "float32":
        raise BundleError(f"input dtype {image.get('dtype')!r}: OncoLens gives float32")
    spacing_t = _find_transform(inference, "Spacingd") or _find_transform(inference, "Spacing")
    spacing = image.get("pixdim") or image.get("spacing") or (spacing_t or {}).get("pixdim")
    try:
        spacing_mm = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        spacing_mm = ()
    if len(spacing_mm) != 3 or min(spacing_mm) <= 0 or max(spacing_mm) > 10:
        raise BundleError(
            "the input spacing is not stated (metadata pixdim or a Spacingd transform): "
            "OncoLens cannot resample a volume for it"
        )
    orient_t = _find_transform(inference, "Orientationd") or _find_transform(
        inference, "Orientation"
    )
    axcodes = str(image.get("axcodes") or (orient_t or {}).get("axcodes") or "RAS").upper()
    if sorted(axcodes.translate(str.maketrans("LPI", "RAS"))) != ["A", "R", "S"]:
        raise BundleError(f"axis codes {axcodes!r} are not three patient directions")
    shape = image.get("spatial_shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(s, int) and 8 <= s <= 512 and s % 8 == 0 for s in shape)
    ):
        raise BundleError(
            f"spatial_shape {shape!r}: OncoLens needs three whole window sides (8-512, multiples of 8)"
        )
    if str(pred.get("format", "")) != "segmentation":
        raise BundleError(
            f"output format {pred.get('format')!r}: OncoLens reads segmentation outputs"
        )
    out_channels = pred.get("num_channels")
    if not isinstance(out_channels, int) or out_channels < 2:
        raise BundleError(
            f"output channels {out_channels!r}: a segmentation needs background and at least one lesion channel"
        )
    names = pred.get("channel_def") or {}
    labels = tuple(str(names.get(str(k), f"class {k}")) for k in range(out_channels))
    return Contract(
        modality,
        axcodes,
        (spacing_mm[0], spacing_mm[1], spacing_mm[2]),
        1,
        (shape[0], shape[1], shape[2]),
        out_channels,
        labels,
    )


def _guard_for(root: Path, contract: Contract) -> VolumeGuard:
    own = root / "configs" / "input_guard.json"
    source = own if own.is_file() else BUILTIN_DIR / "configs" / "input_guard.json"
    if not own.is_file():
        builtin = contract_of(BUILTIN_DIR)
        if contract.modality != builtin.modality:
            raise BundleError(
                f"no input guard for {contract.modality} volumes: ship configs/input_guard.json "
                f"(python -m models.training.train3d --fit-guard) or use an {builtin.modality} model"
            )
    try:
        return VolumeGuard.from_json(_json(source, "configs/input_guard.json"))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            f"configs/input_guard.json is not an OncoLens input guard: {exc}"
        ) from exc


def _open(root: Path, pinned: str | None, builtin: bool) -> Bundle:
    contract = contract_of(root)
    meta = _json(root / "configs" / "metadata.json", "configs/metadata.json")
    card = read_card(root)
    weights = root / "models" / "model.ts"
    if not weights.is_file():
        raise BundleError("models/model.ts (TorchScript weights) is missing")
    actual = sha256_of(weights)
    for expected, where in (
        ((card.get("weights") or {}).get("sha256"), "its card"),
        (pinned, "its registration"),
    ):
        if expected is not None and expected != actual:
            raise BundleError(
                f"models/model.ts does not match {where} (sha256 {actual[:12]}... vs "
                f"{str(expected)[:12]}...): refusing unverified weights"
            )
    if builtin and not (root / "docs" / "card.json").is_file():
        raise BundleError("the built-in bundle has no card (docs/card.json)")
    guard = _guard_for(root, contract)
    try:
        network = torch.jit.load(str(weights), map_location="cpu").eval()
    except Exception as exc:  # any TorchScript load failure is the bundle's, with its reason
        raise BundleError(f"models/model.ts is not loadable TorchScript: {exc}") from exc
    name = root.name
    return Bundle(name, root, meta, contract, card, actual, network, guard, builtin)


def _dry_run(bundle: Bundle) -> None:
    """A forward pass of zeros of the contract's shape: the output must have the stated channels."""
    c = bundle.contract
    try:
        with torch.inference_mode():
            out = bundle.network(torch.zeros((1, c.channels, *c.spatial_shape)))
    except Exception as exc:  # the network's own error, said in one line
        msg = str(exc).strip().splitlines()
        raise BundleError(
            f"the model fails on a {c.channels}-channel {c.spatial_shape} input: {msg[-1] if msg else exc}"
        ) from exc
    shape = tuple(getattr(out, "shape", ()))
    if shape != (1, c.out_channels, *c.spatial_shape):
        raise BundleError(
            f"the model's output is {shape}, not the (1, {c.out_channels}, {', '.join(map(str, c.spatial_shape))}) "
            "its metadata states"
        )


def register(source: str | Path, *, dest: Path | None = None) -> Bundle:
    """Validate the bundle at ``source`` and copy it into the models folder; the registered bundle.

    Raises ``BundleError`` with the one-line reason, and copies nothing, when OncoLens cannot
    meet its contract or the weights do not match their card.
    """
    root = Path(source).expanduser().absolute()
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle folder")
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"the bundle holds {size >> 20} MB; OncoLens copies at most {MAX_BUNDLE_BYTES >> 20} MB"
        )
    checked = _open(root, None, builtin=False)
    _dry_run(checked)
    name = (
        "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in root.name).strip("_")
        or "bundle"
    )
    if name == BUILTIN:
        raise BundleError(f"'{BUILTIN}' is the built-in model's name; rename the bundle's folder")
    if name in TASKS or name in OTHER_MODEL_NAMES:
        # a model version is known by (name, version): a bundle named after another model would
        # share its sign-off (approving the bundle's weights would approve the other's reads)
        raise BundleError(
            f"'{name}' is the name of OncoLens's {name} model; rename the bundle's folder"
        )
    base = (dest or bundle_root()).expanduser().absolute()
    base.mkdir(parents=True, exist_ok=True)
    target = inside(base, name)
    tmp = inside(base, f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("configs", "models", "docs"):
        if (root / sub).is_dir():
            shutil.copytree(root / sub, tmp / sub, symlinks=False)
    if sha256_of(tmp / "models" / "model.ts") != checked.sha256:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError("models/model.ts changed while it was copied; try again")
    (tmp / "oncolens.json").write_text(
        json.dumps(
            {
                "sha256": checked.sha256,
                "registered_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "source": str(root),
                "contract": checked.contract.to_json(),
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    _cached.cache_clear()
    return load_bundle(name, dest=base)


def _pinned(root: Path) -> str | None:
    reg = root / "oncolens.json"
    if not reg.is_file():
        return None
    return str(_json(reg, "oncolens.json").get("sha256") or "") or None


@lru_cache(maxsize=4)
def _cached(path: str, stamps: tuple[float, ...]) -> Bundle:
    root = Path(path)
    builtin = root == BUILTIN_DIR
    pinned = None if builtin else _pinned(root)
    if not builtin and pinned is None:
        raise BundleError(f"{root.name} was not registered with `oncolens models add`")
    return _open(root, pinned, builtin)


def load_bundle(name: str = BUILTIN, *, dest: Path | None = None) -> Bundle:
    """The verified bundle ``name`` (the built-in one by default); ``BundleError`` says why not."""
    path = find_bundle(name, dest=dest)
    # the weights, the card, the saliency file and the configs (contract, post-processing, a
    # refitted guard): what changes on disk is read without a restart
    files = (
        path / "models" / "model.ts",
        path / "docs" / "card.json",
        path / SALIENCY_FILE,
        path / "configs" / "metadata.json",
        path / "configs" / "inference.json",
        path / "configs" / "input_guard.json",
        path / "oncolens.json",
    )
    return _cached(str(path), tuple(f.stat().st_mtime if f.exists() else 0.0 for f in files))


def bundle_for(modality: str, name: str | None = None, *, dest: Path | None = None) -> Bundle:
    """The bundle that reads ``modality`` volumes: ``name`` when given, else the built-in one when
    its contract covers the modality, else the first registered one that does.

    Raises ``BundleError`` for a named bundle that cannot be used, ``NoModelForVolumeError``
    when no bundle reads the modality.
    """
    if name is not None:
        return load_bundle(name, dest=dest)
    base = (dest or bundle_root()).expanduser().absolute()
    for candidate in available_bundles(dest=dest):
        root = BUILTIN_DIR if candidate == BUILTIN else base / candidate
        try:
            if contract_of(root).modality == modality:
                return load_bundle(candidate, dest=dest)
        except BundleError:
            continue  # a broken registered bundle never hides a working one
    raise NoModelForVolumeError(
        f"no 3D model reads {modality or 'unknown-modality'} volumes "
        "(register a MONAI bundle with `oncolens models add`)"
    )
