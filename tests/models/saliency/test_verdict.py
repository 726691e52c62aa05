"""Saliency verdicts need the randomisation check AND localisation better than a random map;
integrated gradients with a large convergence delta is recomputed with more steps or flagged."""

from __future__ import annotations

import numpy as np
import pytest

from models.inference.preprocess import to_tensor
from models.inference.registry import load_model
from models.saliency import methods as saliency
from models.saliency.verdict import (
    FAILS_BOTH,
    FAILS_LOCALISATION,
    FAILS_RANDOMISATION,
    NOT_MEASURED,
    TRUSTWORTHY,
    verdict,
)
from models.training import synthetic as phantoms

pytestmark = pytest.mark.filterwarnings("ignore")


def _card(passed: bool, pointing_low: float, deletion_low: float, insertion_low: float) -> dict:
    return {
        "saliency": {
            "pointing_game_random": 0.02,
            "methods": {
                "m": {
                    "pointing_game": {"value": 0.5, "ci_low": pointing_low, "ci_high": 0.9},
                    "deletion_gain": {"value": 0.1, "ci_low": deletion_low, "ci_high": 0.2},
                    "insertion_gain": {"value": 0.1, "ci_low": insertion_low, "ci_high": 0.2},
                    "sanity": {"passed": passed},
                }
            },
        }
    }


@pytest.mark.parametrize(
    ("card", "status"),
    [
        (_card(True, 0.5, 0.01, 0.01), TRUSTWORTHY),
        (_card(True, 0.01, 0.01, 0.01), FAILS_LOCALISATION),  # pointing no better than random
        (_card(True, 0.5, -0.01, 0.01), FAILS_LOCALISATION),  # deletion not better than random
        (_card(True, 0.5, 0.01, 0.0), FAILS_LOCALISATION),  # insertion interval touches 0
        (_card(False, 0.5, 0.01, 0.01), FAILS_RANDOMISATION),
        (_card(False, 0.0, -0.1, -0.1), FAILS_BOTH),
        ({}, NOT_MEASURED),
    ],
)
def test_verdict_needs_both_checks(card, status) -> None:
    v = verdict(card, "m")
    assert v.status == status
    assert v.trustworthy == (status == TRUSTWORTHY)
    assert bool(v.reasons) == (status != TRUSTWORTHY)


def test_the_committed_cards_label_occlusion_as_failing_localisation() -> None:
    """The case the issue saw: occlusion passed the randomisation check with a pointing game of
    0.06 and an insertion curve below random; it carried "sanity passed"."""
    card = load_model("mammography", device="cpu").card
    assert card["saliency"]["methods"]["occlusion"]["sanity"]["passed"]
    assert verdict(card, "occlusion").status == FAILS_LOCALISATION
    assert verdict(card, "integrated_gradients").trustworthy
    assert "occlusion" not in card["saliency"]["recommended"]
    for name, entry in card["saliency"]["methods"].items():
        assert entry["verdict"]["status"] == verdict(card, name).status


def test_integrated_gradients_with_a_large_delta_is_recomputed_with_more_steps() -> None:
    model = load_model("brain_mri", device="cpu")
    p = phantoms.brain_mri(np.random.default_rng(13), True, lesion_diameter_mm=30.0)
    x = to_tensor(p.pixels.astype(np.float32))
    few = saliency.SaliencyParams(n_steps=2)
    exp = saliency.explain(
        model.network, x, 1, "integrated_gradients", image_shape=p.pixels.shape, params=few
    )
    # two nodes never resolve the integral: the panels with the largest gaps are refined
    assert exp.params["n_steps"] == 2 and exp.params["evaluations"] > 2
    assert exp.params["panels"] > 1
    assert exp.relative_delta is not None
    approximate = any("approximate" in n for n in exp.notes)
    if exp.relative_delta > saliency.IG_MAX_RELATIVE_DELTA:  # refined until the budget, and said
        assert exp.params["evaluations"] > saliency.IG_MAX_STEPS - 2 * 2 and approximate
    else:
        assert not approximate
