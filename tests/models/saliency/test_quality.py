"""models.saliency.quality: each metric on cases with a known answer, the sanity check failing when it must, cards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from models.inference.registry import BUNDLED_WEIGHTS, load_model
from models.saliency import quality as q
from models.saliency.methods import IG_RULE, gaussian_blur
from models.training import synthetic as phantoms
from tests.models.saliency.test_methods import SquareModel

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def brain():
    return load_model("brain_mri", device="cpu")


@pytest.fixture(scope="module")
def two_tumours() -> q.LabelledSet:
    items = [
        phantoms.brain_mri(np.random.default_rng(s), True, lesion_diameter_mm=28.0)
        for s in (31, 32)
    ]
    return q.LabelledSet(
        images=[p.pixels.astype(np.float32) * p.rescale_slope + p.rescale_intercept for p in items],
        labels=np.array([1, 1]),
        masks=[p.mask for p in items],
        spacings=[p.spacing_mm for p in items],
        description="two brain tumour phantoms",
    )


CHEAP = q.QualityConfig(
    n=2, seed=1, n_sensitivity=1, sensitivity_samples=2, infidelity_samples=4, steps=8
)


def test_pointing_game_and_rank_correlation():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    a = np.zeros((10, 10))
    a[3, 3] = 1.0
    assert q.pointing_hit(a, mask)
    a[8, 8] = 2.0
    assert not q.pointing_hit(a, mask)
    x = np.random.default_rng(0).random((16, 16))
    assert q.spearman(x, x) == pytest.approx(1.0)
    assert q.spearman(x, -x) == pytest.approx(-1.0)
    assert q.spearman(x, np.zeros_like(x)) == 0.0  # a blank map shares no ranking


def test_deletion_and_insertion_reward_the_true_evidence_order():
    model = SquareModel()
    x = torch.rand(1, 1, 128, 128) * 0.5 + 0.5
    truth = (x * model.w)[0, 0].numpy()
    rng = np.random.default_rng(0)

    def prob(batch):
        return torch.softmax(model.class_logits(batch), dim=1)[:, 1]

    deleted, start = torch.zeros_like(x), gaussian_blur(x, (4.0, 4.0)) * 0
    good = q.deletion_insertion(prob, x, q.pixel_order(truth, rng), deleted, start, 16)
    bad = q.deletion_insertion(prob, x, q.pixel_order(-truth, rng), deleted, start, 16)
    rand = q.deletion_insertion(prob, x, rng.permutation(truth.size), deleted, start, 16)
    assert good[0] < rand[0] < bad[0]  # deletion: the true order removes the evidence first
    assert good[1] > rand[1] > bad[1]  # insertion: ... and puts it back first


def test_ties_are_broken_at_random_not_in_raster_order():
    flat = np.zeros((8, 8))
    flat[0, 0] = 1.0
    orders = {tuple(q.pixel_order(flat, np.random.default_rng(s))[1:4]) for s in range(5)}
    assert len(orders) > 1


def test_randomised_copy_is_the_same_architecture_with_fresh_weights(brain):
    fresh = q.randomised_copy(brain.network)
    again = q.randomised_copy(brain.network)
    assert type(fresh) is type(brain.network) and not fresh.training
    a, b, c = (dict(m.named_parameters())["enc1.0.weight"] for m in (brain.network, fresh, again))
    assert not torch.equal(a, b) and torch.equal(b, c)


def test_the_sanity_check_fails_a_map_that_ignores_the_weights(brain, two_tumours, monkeypatch):
    real = q.evaluate_method(brain, two_tumours, "gradcam", q.SaliencyParams(), CHEAP)
    assert real["n_images"] == 2 and 0 <= real["pointing_game"]["value"] <= 1
    assert {"deletion_auc", "insertion_auc_random", "infidelity", "sensitivity_max"} <= real.keys()
    # "re-initialising" that leaves the trained weights in place: identical maps, rho 1, must fail
    monkeypatch.setattr(q, "randomised_copy", lambda net, seed=0: net)
    same = q.evaluate_method(brain, two_tumours, "gradcam", q.SaliencyParams(), CHEAP)
    assert same["sanity"]["spearman_abs"]["value"] == pytest.approx(1.0)
    assert same["sanity"]["passed"] is False and same["recommended"] is False
    assert real["sanity"]["spearman_abs"]["value"] < same["sanity"]["spearman_abs"]["value"]


def test_cards_gain_a_saliency_section_and_nothing_else(brain, two_tumours, tmp_path, monkeypatch):
    for f in ("brain_mri.pt", "brain_mri.json", "brain_mri.guard.json"):
        shutil.copy(BUNDLED_WEIGHTS / f, tmp_path / f)
    before = json.loads((tmp_path / "brain_mri.json").read_text())
    quality = q.saliency_quality(brain, methods=("gradcam",), cfg=CHEAP, data=two_tumours)
    q.write_card(tmp_path / "brain_mri.json", quality)
    after = json.loads((tmp_path / "brain_mri.json").read_text())
    assert {k: v for k, v in after.items() if k != "saliency"} == {
        k: v for k, v in before.items() if k != "saliency"
    }
    assert list(after["saliency"]["methods"]) == ["gradcam"]  # replaced, not merged
    assert after["saliency"]["methods"]["gradcam"]["sanity"]["threshold"] == q.SANITY_THRESHOLD
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path))
    assert (
        load_model("brain_mri", device="cpu").card["saliency"]["model"] == "brain_mri"
    )  # still verifies
    with pytest.raises(ValueError, match="other weights"):
        q.write_card(tmp_path / "brain_mri.json", {**quality, "weights_sha256": "0" * 64})


def test_retiming_updates_only_the_times_and_refuses_other_maps(brain, two_tumours):
    section = q.saliency_quality(
        brain,
        methods=("gradcam", "integrated_gradients"),
        cfg=CHEAP,
        data=two_tumours,
        params=q.SaliencyParams(n_steps=4),
    )
    section["methods"]["integrated_gradients"]["params"]["internal_batch_size"] = (
        32  # as older cards listed it
    )
    retimed = q.latency_update(brain, section, two_tumours, q.SaliencyParams(n_steps=4))
    for method, entry in retimed["methods"].items():
        old = section["methods"][method]
        assert {k: v for k, v in entry.items() if k not in ("latency_ms", "params")} == {
            k: v for k, v in old.items() if k not in ("latency_ms", "params")
        }
        assert entry["latency_ms"]["n_images"] == 2 and entry["latency_ms"]["median"] > 0
    assert retimed["methods"]["integrated_gradients"]["params"] == {
        "baseline": "mean",
        "n_steps": 4,
        "rule": IG_RULE,
    }
    with pytest.raises(ValueError, match="n_steps"):  # the maps would differ from the ones scored
        q.latency_update(brain, section, two_tumours, q.SaliencyParams(n_steps=8))

    # figures measured before IG's path rule (issue 23) describe other maps: refused, and one
    # method's figures re-measured are merged into the card's others (the same section's here)
    stale = json.loads(json.dumps(section))
    stale["methods"]["integrated_gradients"]["params"].pop("rule")
    stale["methods"]["integrated_gradients"]["pointing_game"]["value"] = -1.0
    with pytest.raises(ValueError, match="rule"):
        q.latency_update(brain, stale, two_tumours, q.SaliencyParams(n_steps=4))
    merged = q.merge_methods(stale, section, ("integrated_gradients",))
    assert merged["methods"]["gradcam"] == section["methods"]["gradcam"]  # kept as it was
    ig = merged["methods"]["integrated_gradients"]
    assert ig["params"]["rule"] == IG_RULE and ig["pointing_game"]["value"] >= 0
    assert ig["command"].endswith("--method integrated_gradients")
    with pytest.raises(ValueError, match="seed"):
        q.merge_methods({**stale, "seed": 2}, section, ("integrated_gradients",))
    with pytest.raises(ValueError, match="no saliency figures"):
        q.merge_methods(None, section, ("integrated_gradients",))


@pytest.mark.parametrize("name", ["mammography", "brain_mri"])
def test_the_cards_figures_were_measured_with_todays_maps(name):
    """Every method's figures in the committed card were measured with the parameters (and, for
    integrated gradients, the path rule) the page and the CLI now use: a change to a method that
    is not re-measured (`python -m models.saliency.quality --write-cards [--method M]`) fails here."""
    card = load_model(name, device="cpu").card
    for method, entry in card["saliency"]["methods"].items():
        assert entry["params"] == q.SaliencyParams().for_method(method), (name, method)
