"""CLAIM and DECIDE-AI answered from a 3D model's evidence: its bundle card and input contract.

Why answerers of their own: a 3D card (``docs/card.json`` of a MONAI bundle, written by
``models.training.train3d``) has another shape than a 2D card: Dice and HD95 with bootstrap
intervals instead of an AUC, volumes instead of images, sensitivity by lesion size, a guard
measured by Mahalanobis scores; its intended use and input contract live in
``configs/metadata.json`` (``Evidence.bundle["metadata"]``). Reading it through the 2D answerers
would either miss what it has or claim what it does not (the 2D partition answer says the splits
are disjoint per image; a 3D card does not say how its splits are kept apart). Every answer names
its source; an item the 3D card cannot answer is ``Missing`` with the reason, never filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analytics.governance.reporting import answers as a
from analytics.governance.reporting.answers import Answerer, Found, Missing
from analytics.governance.reporting.evidence import Evidence

CARD = "docs/card.json"
METADATA = "configs/metadata.json"


def _card(ev: Evidence, *path: str) -> Any:
    return a._get(ev.card, path)


def _meta(ev: Evidence, *path: str) -> Any:
    return a._get(ev.bundle.get("metadata") or {}, path)


def _src(file: str, *path: str) -> str:
    return f"3D bundle {file}: {'.'.join(path)}"


def _input(ev: Evidence) -> Mapping[str, Any]:
    return _meta(ev, "network_data_format", "inputs", "image") or {}


def _output(ev: Evidence) -> Mapping[str, Any]:
    return _meta(ev, "network_data_format", "outputs", "pred") or {}


def _not_in_card(what: str) -> Answerer:
    """An item the 3D card has no field for: missing, saying so (a clinic's card may add it)."""

    def answer(ev: Evidence) -> Missing:
        return Missing(f"not answered: the 3D card ({CARD}) records no {what}")

    return answer


def meta(*path: str) -> Answerer:
    """Answer from ``configs/metadata.json`` (MONAI's bundle metadata)."""

    def answer(ev: Evidence) -> Found | None:
        value = _meta(ev, *path)
        return None if value is None else Found(a._short(value), _src(METADATA, *path))

    return answer


def card(*path: str) -> Answerer:
    def answer(ev: Evidence) -> Found | None:
        value = _card(ev, *path)
        return None if value is None else Found(a._short(value), _src(CARD, *path))

    return answer


def method(ev: Evidence) -> Found | None:
    name, description = _meta(ev, "name"), _meta(ev, "description")
    if not description:
        return None
    return Found(f"{name or ev.model}: {description}", _src(METADATA, "name|description"))


def identity(ev: Evidence) -> Found | None:
    version = _card(ev, "version") or _meta(ev, "version")
    if not version:
        return None
    title = _meta(ev, "name")
    return Found(
        f"{title + ' (' + ev.model + ')' if title else ev.model} version {version}",
        _src(CARD, "version") if _card(ev, "version") else _src(METADATA, "version"),
    )


def contract(ev: Evidence) -> Found | None:
    """The input contract: modality, channel, voxel size, axis codes, window."""
    image = _input(ev)
    if not image.get("modality"):
        return None
    channels = image.get("channel_def") or {}
    parts = [
        f"{image['modality']}, {image.get('num_channels', '?')} channel(s)"
        + (f" ({', '.join(str(v) for v in channels.values())})" if channels else "")
    ]
    if image.get("pixdim"):
        parts.append(f"resampled to {' x '.join(f'{v:g}' for v in image['pixdim'])} mm")
    if image.get("axcodes"):
        parts.append(f"axis codes {image['axcodes']}")
    if image.get("value_range"):
        lo, hi = image["value_range"]
        parts.append(f"intensities scaled to {lo}-{hi}")
    if image.get("spatial_shape"):
        parts.append(f"window {' x '.join(str(v) for v in image['spatial_shape'])} voxels")
    return Found("; ".join(parts), _src(METADATA, "network_data_format", "inputs", "image"))


def architecture(ev: Evidence) -> Found | None:
    found, inputs = method(ev), contract(ev)
    out = _output(ev)
    if found is None or inputs is None:
        return None
    classes = ", ".join(str(v) for v in (out.get("channel_def") or {}).values())
    return Found(
        f"{found.text} Input: {inputs.text}. Output: {out.get('format', '?')} with "
        f"{out.get('num_channels', '?')} channels ({classes})",
        _src(METADATA, "description|network_data_format"),
    )


def data_source(ev: Evidence) -> Found | None:
    generator = _card(ev, "data", "generator")
    return None if not generator else Found(str(generator), _src(CARD, "data", "generator"))


def sizes(ev: Evidence) -> Found | None:
    d = _card(ev, "data")
    if not d or "test_volumes" not in d:
        return None
    return Found(
        f"{d.get('train_volumes', '?')} training, {d.get('guard_volumes', '?')} guard (held out: "
        f"the input guard's threshold and the probability floor), {d['test_volumes']} test volumes"
        + (f"; seed {_card(ev, 'seed')}" if _card(ev, "seed") is not None else ""),
        _src(CARD, "data", "seed"),
    )


def design(ev: Evidence) -> Found | None:
    found, source = sizes(ev), data_source(ev)
    if found is None or source is None:
        return None
    return Found(
        f"retrospective, on generated volumes: {found.text}; generator {source.text}",
        _src(CARD, "data"),
    )


def labels(ev: Evidence) -> Found | None:
    target = _card(ev, "data", "target")
    classes = (_output(ev).get("channel_def")) or {}
    if not target:
        return None
    return Found(
        f"{target}; output channels " + ", ".join(f"{k} {v}" for k, v in classes.items()),
        _src(CARD, "data", "target") + "; " + _src(METADATA, "outputs", "pred", "channel_def"),
    )


def reference_standard(ev: Evidence) -> Found | None:
    target, generator = _card(ev, "data", "target"), _card(ev, "data", "generator")
    if not target or not generator:
        return None
    return Found(
        f"the generator's own lesion masks ({target}), drawn with each volume by {generator}",
        _src(CARD, "data", "target|generator"),
    )


def software(ev: Evidence) -> Found | None:
    trained = ", ".join(
        f"{k.replace('_version', '')} {_meta(ev, k)}"
        for k in ("monai_version", "pytorch_version", "numpy_version")
        if _meta(ev, k)
    )
    code = a.code_version(ev)
    if not trained and code is None:
        return None
    return Found(
        (f"bundle built with {trained}; " if trained else "") + (code.text if code else ""),
        _src(METADATA, "*_version") + ("; " + code.source if code else ""),
    )


def training(ev: Evidence) -> Found | None:
    t = _card(ev, "training")
    if not t:
        return None
    keys = ("iterations", "crop", "crops_per_step", "sampling", "loss", "optimizer", "threads")
    return Found(
        "; ".join(f"{k.replace('_', ' ')} {t[k]}" for k in keys if k in t), _src(CARD, "training")
    )


def model_selection(ev: Evidence) -> Found | Missing:
    floor = _card(ev, "postprocessing")
    why = "not answered: the 3D card records no rule that chose these weights"
    if floor and floor.get("chosen_on"):
        why += (
            f" (only the operating point: probability floor {floor.get('min_component_probability')}"
            f" chosen on {floor['chosen_on']})"
        )
    return Missing(why)


def robustness(ev: Evidence) -> Found | None:
    g = _card(ev, "input_guard")
    if not g or "threshold" not in g:
        return None
    refuse = g.get("must_refuse") or {}
    return Found(
        f"input guard: threshold {g['threshold']}; held-out volumes refused {g.get('held_out_refused')}"
        f" (largest score {g.get('held_out_max')})"
        + (
            "; scores of volumes it must refuse: "
            + ", ".join(f"{k} {v}" for k, v in refuse.items())
            if refuse
            else ""
        ),
        _src(CARD, "input_guard"),
    )


def _by_size(m: Mapping[str, Any]) -> str:
    sens = m.get("sensitivity_by_size") or {}
    dice = m.get("dice_by_size") or {}
    return ", ".join(
        f"{band}: {v.get('found')} of {v.get('lesions')} found"
        + (f", Dice {dice[band]:.2f}" if isinstance(dice.get(band), int | float) else "")
        for band, v in sens.items()
        if isinstance(v, Mapping)
    )


def failures(ev: Evidence) -> Found | None:
    m = _card(ev, "metrics")
    if not m or not m.get("sensitivity_by_size"):
        return None
    parts = [f"lesions by longest diameter: {_by_size(m)}"]
    if m.get("hd95_missed") is not None:
        parts.append(f"{m['hd95_missed']} volume(s) with nothing predicted left out of HD95")
    spec = m.get("specificity_no_lesion") or {}
    if spec.get("volumes"):
        parts.append(f"{spec.get('clear')} of {spec['volumes']} lesion-free volumes read clear")
    return Found("; ".join(parts), _src(CARD, "metrics", "sensitivity_by_size|dice_by_size"))


def accuracy(ev: Evidence) -> Found | None:
    m = _card(ev, "metrics")
    sens = (m or {}).get("lesion_sensitivity") or {}
    if "ci_low" not in sens:
        return None
    spec = (m or {}).get("specificity_no_lesion") or {}
    return Found(
        f"lesion-level sensitivity {sens['value']:.2f} (95 % CI {sens['ci_low']:.2f}-"
        f"{sens['ci_high']:.2f}, {m.get('n_with_lesion', '?')} volumes with a lesion)"
        + (
            f"; lesion-free volumes read clear {spec.get('clear')} of {spec['volumes']} (no interval)"
            if spec.get("volumes")
            else ""
        ),
        _src(CARD, "metrics", "lesion_sensitivity|specificity_no_lesion"),
    )


def per_partition(ev: Evidence) -> Found | None:
    m = _card(ev, "metrics")
    if not m:
        return None
    return Found(
        f"test volumes only ({m.get('n_test_volumes', '?')}): lesions by size {_by_size(m)}; "
        f"{m.get('n_with_lesion', '?')} with a lesion, "
        f"{(m.get('specificity_no_lesion') or {}).get('volumes', '?')} without",
        _src(CARD, "metrics"),
    )


def performance(ev: Evidence) -> Found | None:
    found = a.metric_with_ci(ev)
    if found is None:
        return None
    return Found(
        found.text.replace("hd95 mm", "HD95 (mm)") + " (held-out test volumes)",
        _src(CARD, "metrics"),
    )


def explainability(ev: Evidence) -> Found | Missing:
    found = a.saliency(ev)
    if found is not None:
        return Found(
            found.text.replace("on phantoms", "on held-out volumes"),
            "3D bundle docs/saliency.json (measured on these weights)",
        )
    return Missing(
        "not answered: no 3D saliency figures measured on these weights (docs/saliency.json "
        "absent, or measured on other weights)"
    )


def weights(ev: Evidence) -> Found | None:
    found = a.weights(ev)
    pinned = (ev.bundle.get("registration") or {}).get("sha256")
    if found is not None:
        return Found(found.text, _src(CARD, "weights"))
    if pinned:
        return Found(
            f"models/model.ts sha256 {pinned} (pinned at registration, checked on every load)",
            "3D bundle oncolens.json: sha256",
        )
    return None


def errors(ev: Evidence) -> Found | None:
    use = a._get(ev.store, ("use",)) or {}
    if not use.get("volume_reads"):
        return None
    return Found(
        f"{use['volume_reads']} 3D reads filed, {use.get('volume_refusals', 0)} refused by the "
        "input guard",
        a._src(ev, "ai_volume_read"),
    )


def limitations(ev: Evidence) -> Found | Missing | None:
    return card("limitations")(ev)


def _intended_use(ev: Evidence) -> Found | Missing | None:
    return meta("intended_use")(ev)


VOLUME_CLAIM: dict[str, Answerer] = {
    "1": method,
    "2": a.reporting("abstract"),
    "3": _intended_use,
    "4": a.first(meta("task"), _intended_use),
    "5": design,
    "6": design,
    "7": data_source,
    "8": contract,
    "9": contract,
    "10": sizes,
    "11": labels,
    "12": a.deidentification,
    "13": _not_in_card("missing-data statement"),
    "14": reference_standard,
    "15": _not_in_card("rationale for its reference standard"),
    "16": a.first(
        a.reporting("annotators"), _not_in_card("annotators (masks come from the generator)")
    ),
    "17": _not_in_card("annotation tool (masks come from the generator)"),
    "18": _not_in_card("rater-variability study (masks come from the generator)"),
    "19": sizes,
    "20": sizes,
    "21": _not_in_card("statement of how its training, guard and test volumes are kept apart"),
    "22": architecture,
    "23": software,
    "24": _not_in_card("initialisation of the network's parameters"),
    "25": training,
    "26": model_selection,
    "27": _not_in_card("ensembling statement"),
    "28": performance,
    "29": a.metric_with_ci,
    "30": robustness,
    "31": explainability,
    "32": _not_in_card("evaluation on external (real) data"),
    "33": sizes,
    "34": per_partition,
    "35": performance,
    "36": accuracy,
    "37": failures,
    "38": limitations,
    "39": _intended_use,
    "40": a.reporting("registration"),
    "41": a.reporting("protocol"),
    "42": a.reporting("funding"),
}

VOLUME_DECIDE: dict[str, Answerer] = {
    "I": identity,
    "II": a.reporting("abstract"),
    "III": _intended_use,
    "IV": contract,
    "V": a.users,
    "VI": a.first(weights, identity),
    "VII": a.use_events,
    "VIII": errors,
    "IX": a.reporting("usability_evaluation"),
    "X": a.card("reporting", "evaluation_analysis"),
    "XI": a.use_events,
    "XII": a.use_events,
    "XIII": a.versions_seen,
    "XIV": lambda ev: Missing(
        "not answered: no accept / override of a 3D read is recorded (the store keeps the reads, "
        "the audit trail what was shown)"
    ),
    "XV": errors,
    "XVI": a.reporting("usability_evaluation"),
    "XVII": limitations,
}

VOLUME_ANSWERS: dict[str, dict[str, Answerer]] = {"CLAIM": VOLUME_CLAIM, "DECIDE-AI": VOLUME_DECIDE}
