"""One verdict per saliency method and model, from the model card's quality figures.

Why not the randomisation check alone: a map can change when the weights are thrown away
(it "passes") and still point away from the lesion. On the mammography model occlusion passed
the randomisation check with a pointing game of 0.06 and an insertion curve below random, and
carried a "sanity passed" badge. A method is **trustworthy** here only when both hold:

* **randomisation** (Adebayo et al. 2018): the map depends on the learned weights
  (``sanity.passed`` in the card, Spearman of absolute maps below the threshold);
* **localisation better than a random map**, each with its bootstrap 95 % interval:
  the pointing game's lower bound is above the hit rate of a random map (the mean lesion
  area fraction, ``pointing_game_random``), and the deletion and insertion gains over a random
  pixel order both have lower bounds above 0.

Everything else gets a verdict that names what failed; every place that offers a method (the
Imaging page's pickers, ``oncolens explain``, ``oncolens validate saliency``) shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRUSTWORTHY = "trustworthy"
FAILS_LOCALISATION = "fails localisation"
FAILS_RANDOMISATION = "fails randomisation check"
FAILS_BOTH = "fails randomisation and localisation"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Verdict:
    status: str  # one of the constants above
    reasons: tuple[str, ...] = field(default=())  # what failed, in words

    @property
    def trustworthy(self) -> bool:
        return self.status == TRUSTWORTHY

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "trustworthy": self.trustworthy,
            "reasons": list(self.reasons),
        }


def _lower(entry: dict, key: str) -> float | None:
    value = entry.get(key)
    if isinstance(value, dict):
        return value.get("ci_low")
    return None


def localisation_failures(entry: dict, pointing_random: float | None) -> list[str]:
    """What keeps a method's localisation from being better than a random map (empty: none)."""
    out = []
    pg_low = _lower(entry, "pointing_game")
    if pg_low is None:
        out.append("pointing game not measured")
    elif pointing_random is not None and pg_low <= pointing_random:
        out.append(
            f"pointing game (lower 95 % bound {pg_low:.2f}) not above a random map ({pointing_random:.2f})"
        )
    for key, what in (("deletion_gain", "deletion"), ("insertion_gain", "insertion")):
        low = _lower(entry, key)
        if low is None:
            out.append(f"{what} curve not measured against random")
        elif low <= 0:
            out.append(f"{what} curve not better than a random order (lower 95 % bound {low:+.3f})")
    return out


def verdict(card: dict, method: str) -> Verdict:
    """The method's verdict for this model card (``NOT_MEASURED`` without quality figures)."""
    quality = card.get("saliency") or {}
    entry = (quality.get("methods") or {}).get(method)
    if not entry or "sanity" not in entry:
        return Verdict(NOT_MEASURED, ("no quality figures in the model card",))
    randomised = bool(entry["sanity"].get("passed"))
    local = localisation_failures(entry, quality.get("pointing_game_random"))
    reasons = (
        [] if randomised else ["the map barely changes when the weights are randomised"]
    ) + local
    if randomised and not local:
        return Verdict(TRUSTWORTHY)
    if not randomised and local:
        return Verdict(FAILS_BOTH, tuple(reasons))
    return Verdict(FAILS_RANDOMISATION if not randomised else FAILS_LOCALISATION, tuple(reasons))
