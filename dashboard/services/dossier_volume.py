"""The dossier's sections for a 3D model (a MONAI bundle): its card's own figures, not the 2D ones.

Why a module of its own: a 3D card (``docs/card.json`` of a bundle, ``models.volumes.cards``) reports
Dice and HD95 with bootstrap intervals, lesions found by size, lesion-free volumes read clear and a
Mahalanobis input guard, where a 2D card reports AUC, calibration and phantom subgroups. The 2D
section builders of ``dossier`` would print "not measured" beside figures the card has, or read
fields it does not have. Sections this module cannot fill say why (no calibration: the 3D
probabilities are not calibrated; no subgroup audit for 3D models), never a borrowed figure.

The evidence is JSON only (no torch): ``bundle_evidence`` reuses ``models.volumes.cards.bundle_cards``,
which keeps the saliency figures only when they were measured on these weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from analytics.governance.reporting.evidence import Evidence
from models.volumes.cards import available_bundles, bundle_cards, find_bundle

if TYPE_CHECKING:
    from dashboard.services.dossier import Section

__all__ = ["bundle_evidence", "volume_models", "volume_sections"]


def volume_models() -> tuple[str, ...]:
    """The 3D models: the built-in bundle, then the registered ones (``oncolens models add``)."""
    return tuple(available_bundles())


def bundle_evidence(name: str) -> tuple[dict, dict, str]:
    """The card (with ``saliency`` only when measured on these weights), the bundle's files beside
    it (``metadata``, ``registration``, ``builtin``, ``error``) and where the card was read."""
    entry = next((e for e in bundle_cards() if e["name"] == name), None)
    if entry is None:
        return {}, {"error": f"no 3D model named {name}"}, ""
    card = dict(entry["card"])
    if entry.get("saliency"):
        card["saliency"] = entry["saliency"]
    bundle = {
        "metadata": entry.get("metadata") or {},
        "registration": entry.get("registration") or {},
        "builtin": entry["builtin"],
        "error": entry.get("error"),
    }
    try:
        source = str(find_bundle(name) / "docs" / "card.json")
    except ValueError:  # BundleError: a folder named by hand; the entry's error says so
        source = ""
    return card, bundle, source


def _ci(v: Any, digits: int = 3) -> str:
    return f"{v['value']:.{digits}f} (95 % CI {v['ci_low']:.{digits}f}-{v['ci_high']:.{digits}f})"


def _intended_use(ev: Evidence, s: Section) -> None:
    meta = ev.bundle.get("metadata") or {}
    if ev.bundle.get("error"):
        s.paragraphs.append(f"The bundle's files cannot be read: {ev.bundle['error']}.")
    if meta.get("intended_use"):
        s.rows.append(("Intended use", str(meta["intended_use"])))
    if meta.get("task"):
        s.rows.append(("Task", str(meta["task"])))
    image = ((meta.get("network_data_format") or {}).get("inputs") or {}).get("image") or {}
    if image:
        s.rows.append(
            (
                "Input contract",
                f"{image.get('modality')}, {image.get('num_channels')} channel(s), voxel "
                + " x ".join(f"{v:g}" for v in image.get("pixdim") or ())
                + f" mm, axis codes {image.get('axcodes')}",
            )
        )
    if not meta.get("intended_use"):
        s.paragraphs.append("No intended-use statement in the bundle's configs/metadata.json.")
    out_of_scope = ev.card.get("out_of_scope") or meta.get("out_of_scope")
    s.paragraphs.append(
        f"Out of scope: {'; '.join(map(str, out_of_scope))}."
        if isinstance(out_of_scope, list) and out_of_scope
        else "Out of scope: not recorded in the 3D card or the bundle's metadata; its "
        "limitations, where recorded, are in section 9."
    )


def _data(ev: Evidence, s: Section) -> None:
    d, t = ev.card.get("data") or {}, ev.card.get("training") or {}
    for key, label in (
        ("generator", "Generator"),
        ("target", "Reference standard"),
        ("train_volumes", "Training volumes"),
        ("guard_volumes", "Guard volumes (held out: guard threshold, probability floor)"),
        ("test_volumes", "Test volumes (held out: the card's figures)"),
    ):
        if d.get(key) is not None:
            s.rows.append((label, str(d[key])))
    if ev.card.get("seed") is not None:
        s.rows.append(("Seed", str(ev.card["seed"])))
    for key in ("iterations", "sampling", "loss", "optimizer"):
        if t.get(key):
            s.rows.append((f"Training {key}", str(t[key])))
    if ev.card.get("trained"):
        s.rows.append(("Training command", str(ev.card["trained"])))
    if not s.rows:
        s.paragraphs.append("The 3D card records no data (docs/card.json has no data section).")


def _discrimination(ev: Evidence, s: Section) -> None:
    m = ev.card.get("metrics") or {}
    names = {
        "dice": "Dice (tumour)",
        "hd95_mm": "HD95 (mm)",
        "lesion_sensitivity": "lesion-level sensitivity",
    }
    rows = [
        {"metric": names.get(k, k.replace("_", " ")), "value": f"{v['value']:.3f}",
         "95 % CI": f"{v['ci_low']:.3f}-{v['ci_high']:.3f}"}
        for k, v in m.items()
        if isinstance(v, dict) and {"value", "ci_low", "ci_high"} <= set(v)
    ]  # fmt: skip
    if rows:
        s.tables.append(
            (
                f"Held-out test volumes (n {m.get('n_test_volumes', '?')}, {m.get('n_with_lesion', '?')} "
                "with a lesion; bootstrap over volumes)",
                pd.DataFrame(rows),
            )
        )
    by_size = m.get("sensitivity_by_size") or {}
    dice = m.get("dice_by_size") or {}
    if by_size:
        s.tables.append(
            (
                "By the lesion's longest diameter",
                pd.DataFrame(
                    [
                        {
                            "size": band,
                            "lesions": v.get("lesions"),
                            "found": v.get("found"),
                            "Dice": "" if dice.get(band) is None else f"{dice[band]:.2f}",
                        }
                        for band, v in by_size.items()
                    ]
                ),
            )
        )
    spec = m.get("specificity_no_lesion") or {}
    if spec.get("volumes"):
        s.rows.append(
            ("Lesion-free volumes read clear", f"{spec.get('clear')} of {spec['volumes']}")
        )
    if m.get("hd95_missed") is not None:
        s.rows.append(("Left out of HD95", f"{m['hd95_missed']} volume(s) with nothing predicted"))
    post = ev.card.get("postprocessing") or {}
    if post.get("min_component_probability") is not None:
        s.rows.append(
            (
                "Probability floor",
                f"{post['min_component_probability']} (chosen on {post.get('chosen_on', '?')})",
            )
        )
    if not s.rows and not s.tables:
        s.paragraphs.append("No figures on record (the 3D card has no metrics).")


def _guard(ev: Evidence, s: Section) -> None:
    g = ev.card.get("input_guard") or {}
    if not g:
        s.paragraphs.append("No input guard figures in the 3D card.")
    else:
        s.rows.append(
            (
                "Threshold",
                f"{g.get('threshold')} (largest held-out score {g.get('held_out_max')}, "
                f"{g.get('held_out_refused')} held-out volumes refused)",
            )
        )
        refuse = g.get("must_refuse") or {}
        if (
            refuse and g.get("threshold") is None
        ):  # no threshold: whether each was refused is unknown
            s.tables.append(
                (
                    "Scores of volumes it must refuse (no threshold recorded)",
                    pd.DataFrame([{"volume": k, "score": v} for k, v in refuse.items()]),
                )
            )
        elif refuse:
            threshold = float(g["threshold"])
            s.tables.append(
                (
                    "Scores of volumes it must refuse",
                    pd.DataFrame(
                        [
                            {"volume": k, "score": v, "refused": "yes" if v > threshold else "NO"}
                            for k, v in refuse.items()
                        ]
                    ),
                )
            )
    use = ev.store.get("use") or {}
    s.rows.append(
        (
            "In use",
            f"{use.get('volume_reads', 0)} 3D reads filed, {use.get('volume_refusals', 0)} refused "
            "by the guard",
        )
    )


def _failures(ev: Evidence, s: Section) -> None:
    m = ev.card.get("metrics") or {}
    for band, v in (m.get("sensitivity_by_size") or {}).items():
        s.rows.append((f"lesions {band}", f"{v.get('found')} of {v.get('lesions')} found"))
    for item in ev.card.get("limitations") or []:
        s.paragraphs.append(f"- {item}")
    if not s.rows and not s.paragraphs:
        s.paragraphs.append("No failure modes on record.")


def volume_sections(
    ev: Evidence,
    make: Callable[[str], Section],
    titles: tuple[str, ...],
    saliency: Callable[[Evidence], Section],
) -> list[Section]:
    """Sections 2 to 9 of a 3D model's dossier (``titles`` are the dossier's headings; ``make``
    builds an empty section; ``saliency`` is the dossier's own saliency section, which reads the 3D
    figures as it reads the 2D ones)."""
    out = []
    for title, fill in zip(titles[1:4], (_intended_use, _data, _discrimination), strict=True):
        section = make(title)
        fill(ev, section)
        out.append(section)
    calibration = make(titles[4])
    calibration.paragraphs.append(
        "No calibration on record: OncoLens measures no calibration for 3D models"
        + (
            " (the card has a calibration section, not read here)"
            if ev.card.get("calibration")
            else " and the card has none"
        )
        + "; the probabilities a 3D read shows are not calibrated (the Imaging page says so "
        "beside each read)."
    )
    subgroups = make(titles[5])
    data = ev.card.get("data") or {}
    anatomy = (
        " (the test volumes are one anatomy, the MNI152 template)"
        if "MNI152" in str(data.get("generator", ""))
        else ""
    )
    subgroups.paragraphs.append(
        f"Not computed: no subgroup audit exists for 3D models{anatomy}; results by lesion size, "
        "where the card has them, are in section 4."
    )
    guard = make(titles[6])
    _guard(ev, guard)
    figures = saliency(ev)
    if not ((ev.card.get("saliency") or {}).get("methods")):
        figures.paragraphs[:] = [
            "No 3D saliency figures measured on these weights (docs/saliency.json absent or "
            "measured on other weights; python -m models.saliency.volume_quality --write-card)."
        ]
    failures = make(titles[8])
    _failures(ev, failures)
    return [*out, calibration, subgroups, guard, figures, failures]
