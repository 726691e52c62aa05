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


def test_saliency_figures_count_only_for_the_weights_they_were_measured_on() -> None:
    """The one rule used by the cards listing, the 3D verdict, ``validate`` and a retraining."""
    from models.volumes.cards import saliency_measured_on

    sha = "ab" * 32
    assert saliency_measured_on({"weights_sha256": sha, "methods": {}}, sha)
    assert not saliency_measured_on({"weights_sha256": "cd" * 32}, sha)  # other weights
    assert not saliency_measured_on({"methods": {}}, sha)  # figures that do not say
    assert not saliency_measured_on({"weights_sha256": None}, None)  # nothing is not a match
    assert not saliency_measured_on({"weights_sha256": ""}, "")
    assert not saliency_measured_on({"weights_sha256": sha}, None)  # weights of unknown sha256
    assert not saliency_measured_on(None, sha) and not saliency_measured_on([sha], sha)


def test_the_places_that_judge_saliency_figures_share_one_rule() -> None:
    """bundle_cards, card_verdict, validate, write_saliency_3d and train3d call the one function
    (a source check: the same comparison written twice drifted before)."""
    import inspect

    from models.saliency import volume, volume_quality
    from models.training import train3d
    from models.volumes import cards, validate

    for module, function in (
        (cards, cards.bundle_cards),
        (volume, volume.card_verdict),
        (validate, validate.saliency_summary),
        (volume_quality, volume_quality.write_saliency_3d),
        (train3d, train3d.run),
    ):
        source = inspect.getsource(function)
        assert "saliency_measured_on(" in source, (module.__name__, function.__name__)
        assert (
            '.get("weights_sha256") ==' not in source and '.get("weights_sha256") !=' not in source
        )


def test_the_verdict_and_validate_refuse_figures_of_other_weights() -> None:
    """Behaviour, not only source: a bundle whose card carries figures of other weights gets
    "not measured" from ``card_verdict`` and no figures from ``validate``'s summary."""
    from types import SimpleNamespace

    from models.saliency.verdict import NOT_MEASURED
    from models.saliency.volume import card_verdict
    from models.volumes.validate import saliency_summary

    figures = json.loads((bundles.BUILTIN_DIR / "docs" / "saliency.json").read_text())
    own = SimpleNamespace(card={"saliency": figures}, sha256=figures["weights_sha256"])
    other = SimpleNamespace(card={"saliency": figures}, sha256="0" * 64)
    assert card_verdict(own, "gradcam").status != NOT_MEASURED
    assert card_verdict(other, "gradcam").status == NOT_MEASURED
    assert saliency_summary(own)["methods"]["gradcam"].get("pointing_game") is not None
    assert saliency_summary(other)["methods"]["gradcam"].get("pointing_game") is None
    assert saliency_summary(other)["pointing_game_random"] is None
