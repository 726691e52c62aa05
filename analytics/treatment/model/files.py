"""Saving and loading the clinic's outcome model: weights, model card, sha256, no pickle.

Files, beside the store they were trained from (``<store>_models/``, or a
folder given explicitly):

- ``treatment_outcome.npz``: the full-data trees, the bootstrap refits (each
  xgboost's own UBJSON bytes) and the SHAP reference patients' covariates,
  read with ``allow_pickle=False`` (no code runs on load);
- ``treatment_outcome.json``: the model card (Mitchell et al. 2019): intended
  use, data, learner and its parameters, cross-validated metrics, caveats,
  version, and the sha256 of the weights file.

Loading refuses weights whose sha256 differs from the card's: the model that
runs is the one whose metrics the card reports. Both files are written to a
temporary name and renamed into place, weights first, so a crash never
leaves a card describing other weights.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analytics.treatment.data import Feature

if (
    TYPE_CHECKING
):  # imported where used: SciPy (through them) took seconds of the app's sign-in page
    from analytics.treatment.model.learners import XGBPseudoLearner
    from analytics.treatment.model.outcome_model import OutcomeModel

MODEL_NAME = "treatment_outcome"
CARD_FORMAT = 1


class TreatmentModelError(Exception):
    """No usable treatment model (missing, altered, or from an incompatible version).

    ``reason`` is the message without the CLI's "train one with …" hint: the page shows the
    command with the store's real path below it, so the hint would say the same thing twice.
    """

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(f"{reason}; {hint}" if hint else reason)
        self.reason = reason


def model_dir_for(db_path: Path) -> Path:
    """Where the clinic model of a store lives: ``<folder>/<store name>_models``."""
    db_path = Path(db_path).expanduser()
    return db_path.with_name(f"{db_path.stem}_models")


def model_paths(folder: Path) -> tuple[Path, Path]:
    return folder / f"{MODEL_NAME}.npz", folder / f"{MODEL_NAME}.json"


def _booster_bytes(learner: XGBPseudoLearner) -> np.ndarray:
    return np.frombuffer(bytes(learner.model_.get_booster().save_raw("ubj")), dtype=np.uint8)


def _learner_from_bytes(
    raw: np.ndarray, params: dict, options, feature_columns, design_columns
) -> XGBPseudoLearner:
    # lazy: xgboost is imported only when this is used (start-up time)
    import xgboost as xgb

    # lazy: the app's sign-in page reads model paths from this module, without SciPy (issue 23)
    from analytics.treatment.model.learners import XGBPseudoLearner

    learner = XGBPseudoLearner(**params)
    reg = xgb.XGBRegressor()
    reg.load_model(bytearray(raw.tobytes()))
    reg.set_params(n_jobs=1)
    learner.model_ = reg
    learner.options_ = tuple(options)
    learner.feature_columns_ = list(feature_columns)
    learner.design_columns_ = list(design_columns)
    return learner


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_model(model: OutcomeModel, folder: Path, card_extra: dict) -> dict:
    """Write weights and card into ``folder``; returns the card (with sha256 and version)."""
    # lazy: the app's sign-in page reads model paths from this module, without SciPy (issue 23)
    from analytics.treatment.model.learners import XGBPseudoLearner

    if not isinstance(model.main_, XGBPseudoLearner):
        raise TreatmentModelError(
            "only the pseudo-value tree model (xgb_pseudo) is saved as the clinic model"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights_path, card_path = model_paths(folder)
    arrays = {
        "main": _booster_bytes(model.main_),
        "background": model.background_.to_numpy(dtype=float),
    }
    for b, member in enumerate(model.members_):
        arrays[f"member_{b:03d}"] = _booster_bytes(member)
    effects = getattr(model, "effects_", None)
    if effects is not None:  # the benefit intervals' doubly robust forest, as plain arrays
        arrays.update(effects.to_arrays())
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    learner_params = {
        f.name: getattr(model.main_, f.name)
        for f in dataclasses.fields(model.main_)
        if f.name not in ("seed", "name")
    }
    learner_params["horizons_days"] = list(learner_params["horizons_days"])
    # lazy: xgboost is imported only when this is used (start-up time)
    import xgboost

    card = {
        "card_format": CARD_FORMAT,
        "name": MODEL_NAME,
        "version": f"{model.learner}-{sha[:12]}",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **card_extra,
        "learner": {
            "name": model.learner,
            "params": learner_params,
            "bootstrap": model.bootstrap,
            "seed": model.seed,
            "horizon_days": model.horizon_days,
            "background_size": len(model.background_),
        },
        "options": list(model.options_),
        "features": [{"column": f.column, "label": f.label} for f in model.features_],
        "design_columns": list(model.main_.design_columns_),
        "training": {
            "patients": model.n_train_,
            "events": model.events_train_,
            **card_extra.get("training", {}),
        },
        "weights": {
            "file": weights_path.name,
            "sha256": sha,
            "format": "npz (allow_pickle=False): xgboost UBJSON boosters as uint8 arrays, SHAP background, "
            "the benefit intervals' doubly robust forest as node arrays",
            "xgboost_version": xgboost.__version__,
        },
    }
    _atomic_write(weights_path, data)
    _atomic_write(card_path, (json.dumps(card, indent=2) + "\n").encode())
    return card


def load_card(folder: Path) -> dict:
    _, card_path = model_paths(Path(folder))
    if not card_path.exists():
        raise TreatmentModelError(
            f"no treatment model in {folder} (looked for {card_path.name})",
            "train one with `oncolens recommend --train --db STORE`",
        )
    try:
        return json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TreatmentModelError(f"model card {card_path} cannot be read: {exc}") from exc


def load_model(folder: Path) -> tuple[OutcomeModel, dict]:
    """The saved model (verified against its card's sha256) and its card; never refits."""
    # lazy: the app's sign-in page reads model paths from this module, without SciPy (issue 23)
    from analytics.treatment.model.effects import DoublyRobustForest
    from analytics.treatment.model.outcome_model import OutcomeModel  # (the same)

    folder = Path(folder)
    card = load_card(folder)
    weights_path, _ = model_paths(folder)
    if not weights_path.exists():
        raise TreatmentModelError(f"model card found but its weights {weights_path} are missing")
    data = weights_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    expected = card.get("weights", {}).get("sha256")
    if sha != expected:
        raise TreatmentModelError(
            f"weights {weights_path} do not match their model card (sha256 {sha[:12]}... vs card "
            f"{str(expected)[:12]}...); refusing to use unverified weights; retrain the model"
        )
    if card.get("card_format") != CARD_FORMAT:
        raise TreatmentModelError(
            f"model card format {card.get('card_format')} is not {CARD_FORMAT}; retrain"
        )
    try:
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        spec = card["learner"]
        params = dict(spec["params"])
        params["horizons_days"] = tuple(params["horizons_days"])
        features = tuple(Feature(f["column"], f["label"]) for f in card["features"])
        columns = [f.column for f in features]

        def learner(key: str) -> XGBPseudoLearner:
            return _learner_from_bytes(
                arrays[key], params, card["options"], columns, card["design_columns"]
            )

        model = OutcomeModel(
            learner=spec["name"],
            bootstrap=int(spec["bootstrap"]),
            seed=int(spec["seed"]),
            background_size=int(spec["background_size"]),
            horizon_days=float(spec["horizon_days"]),
        )
        model.options_ = tuple(card["options"])
        model.features_ = features
        model.main_ = learner("main")
        model.members_ = [learner(f"member_{b:03d}") for b in range(model.bootstrap)]
        model.background_ = pd.DataFrame(arrays["background"], columns=columns)
        model.effects_ = (
            DoublyRobustForest.from_arrays(arrays) if "effects_shape" in arrays.files else None
        )
        model.n_train_ = int(card["training"]["patients"])
        model.events_train_ = int(card["training"]["events"])
    except Exception as exc:  # a damaged card entry, or bytes from an incompatible xgboost
        raise TreatmentModelError(f"treatment model in {folder} cannot be loaded: {exc}") from exc
    return model, card
