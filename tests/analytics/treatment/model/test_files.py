"""analytics.treatment.model.files: the saved model predicts what the fitted one did, and is verified."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analytics.treatment.data import gbsg2_table
from analytics.treatment.model.files import TreatmentModelError, load_model, model_paths, save_model
from analytics.treatment.model.outcome_model import OutcomeModel


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    table = gbsg2_table().subset(np.arange(400))
    model = OutcomeModel(bootstrap=2, seed=5, background_size=30).fit(table)
    folder = tmp_path_factory.mktemp("model")
    card = save_model(model, folder, {"intended_use": "test"})
    return table, model, folder, card


def test_round_trip_predicts_identically(saved):
    table, model, folder, card = saved
    loaded, loaded_card = load_model(folder)
    x = table.covariates.iloc[:30]
    assert np.array_equal(loaded.rfs_5y(x), model.rfs_5y(x))
    assert np.array_equal(loaded.rfs_5y_replicates(x), model.rfs_5y_replicates(x))
    assert np.allclose(loaded.rmst(x), model.rmst(x))
    assert loaded.background_.equals(model.background_)
    assert loaded_card["version"] == card["version"] and card["version"].startswith("xgb_pseudo-")
    assert len(card["weights"]["sha256"]) == 64 and card["intended_use"] == "test"


def test_altered_weights_are_refused(saved, tmp_path):
    _, _, folder, _ = saved
    weights, card = model_paths(folder)
    copy = tmp_path / "m"
    copy.mkdir()
    (copy / card.name).write_text(card.read_text())
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    (copy / weights.name).write_bytes(bytes(data))
    with pytest.raises(TreatmentModelError, match="do not match their model card"):
        load_model(copy)


def test_missing_model_says_how_to_train_one(tmp_path):
    with pytest.raises(TreatmentModelError, match="oncolens recommend --train"):
        load_model(tmp_path)


def test_card_with_weights_missing(saved, tmp_path):
    _, _, folder, _ = saved
    _, card = model_paths(folder)
    (tmp_path / card.name).write_text(json.dumps(json.loads(card.read_text())))
    with pytest.raises(TreatmentModelError, match="weights .* are missing"):
        load_model(tmp_path)
