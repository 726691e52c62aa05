"""3D saliency (``models.saliency.volume``) and its quality checks (``volume_quality``) on networks
whose answer is known: a linear lesion score (integrated gradients is exact) and a small MONAI
UNet trained here to outline bright cubes; then the built-in bundle's shape and determinism."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from models.saliency import volume as sv
from models.saliency import volume_quality as vq
from models.saliency.methods import SaliencyError

pytestmark = pytest.mark.filterwarnings("ignore")

SHAPE = (32, 32, 32)


class _Linear(nn.Module):
    """Background logit 0, lesion logit 3x: the lesion log-odds of a voxel is 3 x its intensity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 3.0 * x], dim=1)


def _cube_volume(rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """A dim noisy volume with one bright cube (the "lesion") somewhere inside."""
    x = rng.uniform(0.0, 0.3, SHAPE).astype(np.float32)
    lo = rng.integers(4, 20, 3)
    truth = np.zeros(SHAPE, bool)
    truth[lo[0] : lo[0] + 8, lo[1] : lo[1] + 8, lo[2] : lo[2] + 8] = True
    x[truth] += 0.7
    return torch.from_numpy(x)[None], truth


def test_integrated_gradients_of_a_linear_lesion_score_is_exact_and_stays_in_the_region() -> None:
    net = torch.jit.script(_Linear())
    x, truth = _cube_volume(np.random.default_rng(0))
    params = sv.VolumeParams(n_steps=4, baseline="black")
    attr, delta, rel, steps, _ = sv.explain_prepared(
        net, x, SHAPE, truth, "integrated_gradients", params
    )
    assert attr.shape == SHAPE and steps == 4
    # score = sum over the region of 3x, baseline 0: the attribution is 3x inside, 0 outside
    np.testing.assert_allclose(attr[truth], 3.0 * x[0].numpy()[truth], rtol=1e-4)
    assert not attr[~truth].any()
    assert delta is not None and rel is not None and rel < 1e-4
    peak = np.unravel_index(int(np.argmax(attr)), attr.shape)
    assert truth[peak]


def test_grad_cam_needs_a_unet_and_the_window_must_hold_the_volume() -> None:
    net = torch.jit.script(_Linear())
    x, truth = _cube_volume(np.random.default_rng(1))
    with pytest.raises(SaliencyError, match="needs a MONAI UNet"):
        sv.explain_prepared(net, x, SHAPE, truth, "gradcam")
    with pytest.raises(SaliencyError, match="larger than the model's window"):
        sv.explain_prepared(net, x, (16, 32, 32), truth, "integrated_gradients")
    with pytest.raises(SaliencyError, match="unknown method"):
        sv.explain_prepared(net, x, SHAPE, truth, "occlusion")


def test_without_a_mask_the_target_is_the_most_suspicious_spot() -> None:
    p = np.zeros(SHAPE, np.float32)
    p[10:14, 10:14, 10:14] = 0.4  # 64 voxels: exactly the fallback region
    region, words = sv.target_region(None, p)
    assert region.sum() == sv.FALLBACK_REGION_VOXELS and region[10:14, 10:14, 10:14].all()
    assert "no lesion" in words
    mask = np.zeros(SHAPE, bool)
    mask[1, 1, 1] = True
    region, words = sv.target_region(mask, p)
    assert region.sum() == 1 and "lesion mask" in words


@pytest.fixture(scope="module")
def cube_unet(tmp_path_factory):
    """A 3-level MONAI UNet trained for a few seconds to outline bright cubes, as TorchScript."""
    from monai.networks.nets import UNet  # lazy: MONAI for this fixture only

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = UNet(3, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0, norm="batch")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        batch = [_cube_volume(rng) for _ in range(4)]
        x = torch.stack([b[0] for b in batch])
        y = torch.from_numpy(np.stack([b[1] for b in batch])).long()
        loss = nn.functional.cross_entropy(net(x), y, weight=torch.tensor([1.0, 10.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("cube") / "models" / "model.ts"
    path.parent.mkdir()
    scripted = torch.jit.script(net.eval())
    torch.jit.save(scripted, str(path))
    return torch.jit.load(str(path)).eval(), path.parent.parent


def test_on_the_cube_unet_integrated_gradients_points_at_the_cube_and_grad_cam_is_honest(
    cube_unet,
) -> None:
    """The cube is the only lesion: IG's peak must fall inside it. Grad-CAM at the last decoder
    block is deterministic and non-negative; on this easy task the evidence bypasses that block
    through the outermost skip connection, and an all-zero map must say so, not name a peak."""
    net, _ = cube_unet
    layer = sv.gradcam_layer(net)
    assert layer == "model.1.submodule.2"  # the last decoder block before the output layer
    x, truth = _cube_volume(np.random.default_rng(7))
    with torch.no_grad():
        torch.testing.assert_close(sv.Unrolled(net, layer)(x[None]), net(x[None]))
    hits = []
    for seed in range(7, 11):
        x, truth = _cube_volume(np.random.default_rng(seed))
        attr, *_ = sv.explain_prepared(net, x, SHAPE, truth, "integrated_gradients")
        hits.append(truth[np.unravel_index(int(np.argmax(attr)), SHAPE)])
        cam, *_ = sv.explain_prepared(net, x, SHAPE, truth, "gradcam")
        assert cam.shape == SHAPE and cam.min() >= 0  # ReLU'd
        again, *_ = sv.explain_prepared(net, x, SHAPE, truth, "gradcam")
        np.testing.assert_array_equal(cam, again)  # deterministic
        exp = sv.VolumeExplanation(
            "gradcam", cam, x[0].numpy(), np.eye(4), truth, "cube", sv._peak(cam), 0.0, {}
        )
        assert exp.empty == (not (cam > 0).any())
        assert not exp.empty or (not exp.peak_in_region and exp.to_json()["empty_map"])
    assert all(hits), hits


def test_the_randomised_copy_reinitialises_every_layer_reproducibly(cube_unet) -> None:
    net, root = cube_unet
    a = vq.randomised_network(root / "models" / "model.ts", seed=0)
    b = vq.randomised_network(root / "models" / "model.ts", seed=0)
    trained = dict(net.named_parameters())
    for name, p in a.named_parameters():
        torch.testing.assert_close(p, dict(b.named_parameters())[name])
        if p.dim() >= 2:
            assert not torch.equal(p, trained[name]), name
    assert all(
        float(v.abs().sum()) == 0 for k, v in a.named_buffers() if k.endswith("running_mean")
    )


def test_quality_checks_on_the_cube_unet_score_a_faithful_map_above_random(cube_unet) -> None:
    """The whole 3D quality run on a model whose answer is known: the cube is the lesion."""
    net, root = cube_unet
    contract = SimpleNamespace(spatial_shape=SHAPE, spacing_mm=(2.0, 2.0, 2.0))
    bundle = SimpleNamespace(contract=contract, network=net, root=root, min_probability=0.5)
    cases = []
    for seed in range(20, 26):
        x, truth = _cube_volume(np.random.default_rng(seed))
        cases.append(vq.VolumeCase(x, truth, 16.0))
    params = sv.VolumeParams(n_steps=4)
    out = vq.evaluate(bundle, cases, methods=("integrated_gradients",), params=params, seed=1)
    g = out["results"]["integrated_gradients"]
    assert out["found"] == g["n_images"] >= 4
    assert g["pointing_game"]["value"] == 1.0 and g["n_empty_maps"] == 0
    # deleting the map's voxels first removes the cube faster than a random order
    assert g["deletion_auc"] < g["deletion_auc_random"]
    assert g["insertion_auc"] > g["insertion_auc_random"]
    assert -1 <= g["sanity"]["spearman_abs"]["value"] <= 1 and "verdict" not in g
    again = vq.evaluate(bundle, cases, methods=("integrated_gradients",), params=params, seed=1)
    assert again["results"]["integrated_gradients"] == g | {
        "latency_ms": again["results"]["integrated_gradients"]["latency_ms"]
    }  # deterministic but for the times


def test_the_built_in_model_explains_a_series_on_its_grid_and_refuses_noise(tmp_path) -> None:
    from models.volumes import bundle as bundles  # lazy: the bundle and the series writer
    from models.volumes import phantoms, read_volumes  # lazy: as above
    from tests.models.volumes.conftest import write_phantom_series  # lazy: as above

    builtin = bundles.load_bundle()
    rng = np.random.default_rng([4242, 1])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 26.0), 26.0)
    (volume,) = read_volumes([write_phantom_series(vol, tmp_path / "brain", "MR")]).volumes
    result, exp = sv.explain_series(volume, builtin, "gradcam")
    assert exp is not None and result["refused"] is None and result["label"] == "lesion"
    assert exp.attribution.shape == exp.image.shape == tuple(result["grid_shape"])
    assert exp.region.sum() > 0 and result["verdict"]["status"]
    nifti = exp.to_nifti()
    np.testing.assert_allclose(nifti.affine, exp.affine_ras)
    _, again = sv.explain_series(volume, builtin, "gradcam")
    assert again is not None
    np.testing.assert_array_equal(exp.attribution, again.attribution)

    noise = phantoms.PhantomVolume(
        np.random.default_rng(3).uniform(0, 900, vol.values.shape).astype(np.float32),
        np.zeros(vol.values.shape, np.uint8), vol.origin_lps, vol.spacing_mm, 0.0,
    )  # fmt: skip
    (noisy,) = read_volumes([write_phantom_series(noise, tmp_path / "noise", "MR")]).volumes
    result, exp = sv.explain_series(noisy, builtin, "gradcam")
    assert exp is None and "does not look like" in result["refused"]
    assert result["label"] is None and "peak_voxel" not in result


def test_the_figures_are_written_to_their_own_file_for_the_weights_measured(tmp_path) -> None:
    """``--write-card`` writes docs/saliency.json (never the training's card.json); figures of
    other weights are refused, and a file left from other weights reads as "not measured"."""
    import json  # lazy: only this test reads the files back
    import shutil  # lazy: as above

    from models.volumes import bundle as bundles  # lazy: the bundle loader

    src = tmp_path / "src" / "copied"
    shutil.copytree(bundles.BUILTIN_DIR, src)
    (src / bundles.SALIENCY_FILE).unlink()
    card = json.loads((src / "docs" / "card.json").read_text())
    card["saliency"] = {"weights_sha256": card["weights"]["sha256"], "methods": {}}
    (src / "docs" / "card.json").write_text(json.dumps(card, indent=1) + "\n")  # an older card
    measured = json.loads((bundles.BUILTIN_DIR / bundles.SALIENCY_FILE).read_text())
    with pytest.raises(ValueError, match="other weights"):
        vq.write_saliency_3d(src, measured | {"weights_sha256": "0" * 64})
    assert not (src / bundles.SALIENCY_FILE).exists()
    assert vq.write_saliency_3d(src, measured) == src / bundles.SALIENCY_FILE
    assert "saliency" not in json.loads((src / "docs" / "card.json").read_text())  # one place
    assert bundles.read_card(src)["saliency"] == measured

    registered = bundles.register(src, dest=tmp_path / "models")
    assert registered.card["saliency"] == measured
    assert sv.card_verdict(registered, "gradcam").status != "not measured"
    stale = measured | {"weights_sha256": "0" * 64}
    (registered.root / bundles.SALIENCY_FILE).write_text(json.dumps(stale))
    reloaded = bundles.load_bundle("copied", dest=tmp_path / "models")
    verdict = sv.card_verdict(reloaded, "gradcam")
    assert verdict.status == "not measured" and "other weights" in verdict.reasons[0]
