"""One function per checklist item: it reads the evidence and answers, naming the source, or returns
None (missing). No answer is written down in advance: remove the field an answer reads and the item
turns missing.

Statements no data can hold (funding, interests, protocol, registration, ethics approval, patient
and public involvement, assessors, usability) are read from the card's ``reporting`` section
(``REPORTING_FIELDS``), which a clinic fills for its own deployment; the demo cards leave it empty,
so those items say what would answer them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from analytics.governance.reporting.evidence import IMAGING, Evidence

# The card's ``reporting`` section: statements a clinic writes for its own deployment.
REPORTING_FIELDS = (
    "abstract",
    "inequalities",
    "outcome_assessors",
    "outcome_blinding",
    "predictor_assessors",
    "ethics_approval",
    "funding",
    "conflicts_of_interest",
    "protocol",
    "registration",
    "patient_public_involvement",
    "usability_evaluation",
    "annotators",
)


@dataclass(frozen=True)
class Found:
    """An answer and where it came from (a card field, a store table, a saved validation run)."""

    text: str
    source: str


@dataclass(frozen=True)
class Missing:
    """Not answered, and why: the evidence exists but does not hold this item (a 3D card that
    records no initialisation), so the checklist says so instead of leaving the reason blank."""

    why: str


Answerer = Callable[[Evidence], Found | Missing | None]


def _present(value: Any) -> bool:
    return value not in (None, "", [], {}) and not (isinstance(value, float) and value != value)


def _get(mapping: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = mapping
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value if _present(value) else None


def _short(value: Any, limit: int = 400) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        text = "; ".join(value)
    elif isinstance(value, Mapping):
        text = "; ".join(
            f"{k.replace('_', ' ')} {v if not isinstance(v, Mapping | list) else json.dumps(v)}"
            for k, v in value.items()
        )
    else:
        text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _card_source(ev: Evidence, path: tuple[str, ...], parent: bool = False) -> str:
    where = "treatment model card (the forecast's survival curves)" if parent else "model card"
    return f"{where}: {'.'.join(path)}"


def card(*path: str, fmt: Callable[[Any], str] = _short, parent: bool = False) -> Answerer:
    """Answer from the card's field at ``path`` (the forecast may read its parent treatment card
    where ``parent``: its survival curves are that model's)."""

    def answer(ev: Evidence) -> Found | None:
        value = _get(ev.card, path)
        if value is not None:
            return Found(fmt(value), _card_source(ev, path))
        if parent and ev.parent_card:
            value = _get(ev.parent_card, path)
            if value is not None:
                return Found(
                    fmt(value) + " (survival part of the forecast)", _card_source(ev, path, True)
                )
        return None

    return answer


def reporting(name: str) -> Answerer:
    """A statement from the card's ``reporting`` section."""
    assert name in REPORTING_FIELDS, name
    return card("reporting", name)


def first(*answerers: Answerer) -> Answerer:
    """The first answer any of ``answerers`` finds (else the first reason one gives for none)."""

    def answer(ev: Evidence) -> Found | Missing | None:
        why = None
        for a in answerers:
            found = a(ev)
            if isinstance(found, Found):
                return found
            why = why or found
        return why

    return answer


def _store(ev: Evidence, *path: str) -> Any:
    return _get(ev.store, path)


def _src(ev: Evidence, what: str) -> str:
    return f"store {ev.store_source or ''} ({what})".replace("  ", " ")


# --- answers shared by several items --------------------------------------------------------------


def dates(ev: Evidence) -> Found | None:
    dx, fu = _store(ev, "diagnoses"), _store(ev, "follow_up")
    if not dx or not fu or not dx.get("first"):
        return None
    cutoff = _get(ev.store, ("metadata", "data_cutoff"))
    return Found(
        f"diagnoses {dx['first']} to {dx['last']}; follow-up to {fu['end']}"
        + (f" (data cut-off {cutoff})" if cutoff else "")
        + f"; median follow-up {fu['median_days'] / 365.25:.1f} years",
        _src(ev, "condition_occurrence, observation_period, clinic_metadata"),
    )


def setting(ev: Evidence) -> Found | None:
    meta, patients = _store(ev, "metadata"), _store(ev, "patients")
    if not meta or not patients:
        return None
    kind = meta.get("kind", "clinic")
    return Found(
        f"{patients} patients in one {kind} store"
        + (
            f" (simulated, generator v{meta['generator_version']}, seed {meta['seed']})"
            if kind == "demo"
            else ""
        ),
        _src(ev, "person, clinic_metadata"),
    )


def quality_checks(ev: Evidence) -> Found | None:
    q = _store(ev, "quality")
    if not q or "checks" not in q:
        return None
    failed = q.get("failed") or []
    return Found(
        f"{q['passed']} of {q['checks']} data-quality checks pass (completeness, conformance, plausibility)"
        + (f"; failing: {', '.join(failed)}" if failed else ""),
        _src(ev, "analytics.governance.quality, run now"),
    )


def training_size(ev: Evidence) -> Found | None:
    for c, parent in ((ev.card, False), (ev.parent_card, True)):
        t = _get(c, ("training",))
        if t and "patients" in t and "events" in t:
            return Found(
                f"{t['patients']} patients, {t['events']} events (recurrence or death)"
                + (" (survival part of the forecast)" if parent else ""),
                _card_source(ev, ("training", "patients|events"), parent),
            )
    t = _get(ev.card, ("training_data",))
    if t and "n_train" in t:
        e = _get(ev.card, ("evaluation_data",)) or {}
        return Found(
            f"{t['n_train']} training, {t.get('n_validation', '?')} validation, {e.get('n_test', '?')} test images",
            _card_source(ev, ("training_data", "evaluation_data")),
        )
    return None


def cv_metrics(ev: Evidence) -> Found | None:
    for c, parent in ((ev.card, False), (ev.parent_card, True)):
        learners = _get(c, ("metrics", "learners"))
        kept = _get(c, ("metrics", "learners", "selection", "kept"))
        if learners and kept and kept in learners:
            m = learners[kept]
            parts = [
                f"{name.replace('_', ' ')} {m[name]['mean']:.3f} (sd {m[name]['sd']:.3f} over folds)"
                for name in ("harrell_c", "uno_c", "integrated_brier")
                if isinstance(m.get(name), Mapping) and "mean" in m[name]
            ]
            if parts:
                return Found(
                    f"{kept}, cross-validated: "
                    + ", ".join(parts)
                    + (" (survival part of the forecast)" if parent else ""),
                    _card_source(ev, ("metrics", "learners", kept), parent),
                )
    return None


def selection(ev: Evidence) -> Found | None:
    s = _get(ev.card, ("metrics", "learners", "selection"))
    if not s or "why_kept" not in s:
        return None
    return Found(
        f"kept {s['kept']}: {s['why_kept']}. Rule: {s.get('rule', '')}",
        _card_source(ev, ("metrics", "learners", "selection")),
    )


def treatment_calibration(ev: Evidence) -> Found | None:
    c = _get(ev.card, ("calibration",))
    if not c:
        return None
    if "bins" in c and "overall" in c:
        o = c["overall"]
        return Found(
            f"{c.get('method', '')}: overall predicted {o['mean_predicted']:.3f} vs observed {o['observed']:.3f}; "
            f"largest group gap {c['max_abs_gap']:.3f}. Recalibration: {c.get('recalibration', 'not stated')}",
            _card_source(ev, ("calibration",)),
        )
    if "ece_test" in c:  # imaging: temperature scaling, before / after
        return Found(
            f"{c.get('method')}: ECE on test {c['ece_test']['before']:.3f} before, {c['ece_test']['after']:.3f} after; "
            f"{'applied' if c.get('applied') else 'not applied'} ({c.get('rule', '')})",
            _card_source(ev, ("calibration",)),
        )
    return None


def subgroup_audit(ev: Evidence) -> Found | None:
    run = ev.validation.get("subgroups")
    if not run:
        return None
    largest = (
        (run.get("treatment") or run).get("survival", {}).get("largest_gap", {})
        if ev.model == "treatment"
        else {}
    )
    text = "subgroup audit saved: " + run.get("file", "")
    if largest:
        text += "; largest gaps: " + ", ".join(
            f"{r['title']} {r['gap']:.3f} by {r['attribute']}" for r in largest.values()
        )
    return Found(text, f"validation run {run.get('file', '')}")


def by_site(ev: Evidence) -> Found | None:
    found = subgroup_audit(ev)
    return Found(found.text + " (site is one of its attributes)", found.source) if found else None


def validation_run(target: str, what: str, models: tuple[str, ...]) -> Answerer:
    """A saved validation run ``target`` answers for ``models`` only (a forecast run says nothing of the
    treatment model)."""

    def answer(ev: Evidence) -> Found | None:
        run = ev.validation.get(target) if ev.model in models or ev.kind in models else None
        if not run:
            return None
        return Found(
            f"{what}: saved run {run.get('file', '')}", f"validation run {run.get('file', '')}"
        )

    return answer


def code_version(ev: Evidence) -> Found | None:
    v = ev.code.get("oncolens")
    if not v:
        return None
    libs = ", ".join(
        f"{k} {ev.code[k]}"
        for k in ("python", "xgboost", "torch", "captum", "shap")
        if k in ev.code
    )
    return Found(f"OncoLens {v} (open source); {libs}", "installed package versions")


def weights(ev: Evidence) -> Found | None:
    w = _get(ev.card, ("weights",))
    if not w or "sha256" not in w:
        return None
    return Found(
        f"{w.get('file')} sha256 {w['sha256']}" + (f"; {w['format']}" if w.get("format") else ""),
        _card_source(ev, ("weights",)),
    )


def use_events(ev: Evidence) -> Found | None:
    a = _get(ev.store, ("use", "audit"))
    if not a or not a.get("events"):
        return None
    actions = ", ".join(f"{k} {v}" for k, v in a["by_action"].items())
    return Found(
        f"{a['events']} audit events by {a['users']} user(s), {a['first']} to {a['last']}: {actions}",
        _src(ev, "audit_event WHERE model_name"),
    )


def versions_seen(ev: Evidence) -> Found | None:
    a = _get(ev.store, ("use", "audit"))
    if not a or not a.get("versions"):
        return None
    return Found(
        f"model versions in the audit trail: {', '.join(a['versions'])}",
        _src(ev, "audit_event.model_version"),
    )


def users(ev: Evidence) -> Found | None:
    roles = _store(ev, "accounts_by_role")
    if not roles:
        return None
    return Found(
        ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in roles.items()),
        _src(ev, "app_user by role"),
    )


def agreement(ev: Evidence) -> Found | None:
    d = _get(ev.store, ("use", "decisions"))
    if d and d.get("decisions"):
        rec = d["accepted"] + d["overridden"]
        rate = f", {d['accepted'] / rec:.0%} accepted" if rec else ""
        return Found(
            f"{d['decisions']} decisions: {d['accepted']} accepted, {d['overridden']} overridden, "
            f"{d['no_recommendation']} without a recommendation{rate}",
            _src(ev, "treatment_decision"),
        )
    reviews = _get(ev.store, ("use", "worklist_reviews"))
    if reviews:
        return Found(f"{reviews} worklist reviews recorded", _src(ev, "worklist_review"))
    return None


def errors(ev: Evidence) -> Found | None:
    use = _get(ev.store, ("use",)) or {}
    if "refusals" in use and (use.get("reads") or use.get("refusals")):
        return Found(
            f"{use.get('reads', 0)} AI reads filed, {use['refusals']} refused by the input guard",
            _src(ev, "ai_finding, ai_refusal"),
        )
    return None


def evaluation_design(ev: Evidence) -> Found | None:
    e = _get(ev.card, ("evaluation_data",))
    if not e:
        return None
    return Found(
        f"retrospective, on generated data: {_short(e)}", _card_source(ev, ("evaluation_data",))
    )


def metric_with_ci(ev: Evidence) -> Found | None:
    m = _get(ev.card, ("metrics",))
    if not m:
        return None
    parts = [
        f"{k.replace('_', ' ')} {v['value']:.3f} (95 % CI {v['ci_low']:.3f}-{v['ci_high']:.3f})"
        for k, v in m.items()
        if isinstance(v, Mapping) and {"value", "ci_low", "ci_high"} <= set(v)
    ]
    return Found("; ".join(parts), _card_source(ev, ("metrics",))) if parts else None


def auc_ci(ev: Evidence) -> Found | None:
    """The card's AUC of its positive class (``auc_<label>_vs_rest``) with its interval."""
    label = ev.card.get("positive_label")
    key = f"auc_{label}_vs_rest" if label else "auc"
    v = _get(ev.card, ("metrics", key))
    if not v or "ci_low" not in v:
        return None
    return Found(
        f"AUC of {label or 'the positive class'} {v['value']:.3f} (95 % CI {v['ci_low']:.3f}-{v['ci_high']:.3f})",
        _card_source(ev, ("metrics", key)),
    )


def robustness(ev: Evidence) -> Found | None:
    g = _get(ev.card, ("input_guard", "out_of_distribution"))
    if not g:
        return None
    return Found(
        f"input guard: AUROC {g['auroc']:.3f} out-of-distribution vs held-out phantoms; refuses "
        f"{g['refusal_rate_out_of_distribution']:.0%} of {g['n_out_of_distribution']} OOD images and "
        f"{g['refusal_rate_in_distribution']:.1%} of {g['n_in_distribution']} phantoms",
        _card_source(ev, ("input_guard", "out_of_distribution")),
    )


def weak_spots(ev: Evidence) -> Found | None:
    w = _get(ev.card, ("known_weak_spots",))
    if not w:
        return None
    parts = []
    for name, spot in w.items():
        sens = spot.get("sensitivity", {}) if isinstance(spot, Mapping) else {}
        parts.append(
            f"{name.replace('_', ' ')}: "
            + ", ".join(
                f"sensitivity {b.replace('_', ' ')} {s['value']:.2f} (n {s['n']})"
                for b, s in sens.items()
            )
        )
    return Found("; ".join(parts), _card_source(ev, ("known_weak_spots",)))


def saliency(ev: Evidence) -> Found | None:
    s = _get(ev.card, ("saliency", "methods"))
    if not s:
        return None
    parts = []
    for method, m in s.items():
        sanity = m.get("sanity") or {}
        pg = (m.get("pointing_game") or {}).get("value")
        parts.append(
            f"{method}: sanity check {'passed' if sanity.get('passed') else 'failed'}"
            + (f", pointing game {pg:.2f}" if pg is not None else "")
        )
    return Found(
        "Captum maps checked on phantoms with known masks: " + "; ".join(parts),
        _card_source(ev, ("saliency",)),
    )


def deidentification(ev: Evidence) -> Found | None:
    # The store's ingest de-identifies (PS3.15 Basic Profile); its key file is the evidence it ran.
    tables = _store(ev, "tables") or []
    if "imaging_instance" not in tables:
        return None
    return (
        None
        if not _store(ev, "deid_key")
        else Found(
            "DICOM PS3.15 Annex E Basic Profile on ingest, UIDs remapped under the store's key",
            _src(ev, "<store>_deid.key present"),
        )
    )


def partitions(ev: Evidence) -> Found | None:
    t, e = _get(ev.card, ("training_data",)), _get(ev.card, ("evaluation_data",))
    if not t or not e:
        return None
    return Found(
        f"train {t.get('n_train')} / validation {t.get('n_validation')} (seed {t.get('seed')}); test {e.get('n_test')} "
        f"(seed {e.get('seed')}): disjoint at the image level, every image generated afresh from its own seed",
        _card_source(ev, ("training_data", "evaluation_data")),
    )


def class_counts(ev: Evidence) -> Found | None:
    c = _get(ev.card, ("metrics", "class_counts"))
    return (
        Found(f"test set: {_short(c)}", _card_source(ev, ("metrics", "class_counts")))
        if c
        else None
    )


def options_received(ev: Evidence) -> Found | None:
    for c, parent in ((ev.card, False), (ev.parent_card, True)):
        o = _get(c, ("training", "options_received"))
        if o:
            return Found(
                "first-line options, modelled as a covariate with a prediction under each: "
                + _short(o),
                _card_source(ev, ("training", "options_received"), parent),
            )
    return None


def features(ev: Evidence) -> Found | None:
    for c, parent in ((ev.card, False), (ev.parent_card, True)):
        f = _get(c, ("features",))
        if f:
            return Found(
                ", ".join(x.get("label", x.get("column", "?")) for x in f)
                + (" (survival part of the forecast)" if parent else ""),
                _card_source(ev, ("features",), parent),
            )
    return None


def horizon(ev: Evidence) -> Found | None:
    for c, parent in ((ev.card, False), (ev.parent_card, True)):
        h = _get(c, ("horizon",))
        if h and "label" in h:
            return Found(
                f"recurrence-free survival (recurrence or death), {h['label']} horizon ({h.get('rule', '')})",
                _card_source(ev, ("horizon",), parent),
            )
    return None


def model_identity(ev: Evidence) -> Found | None:
    c = ev.card
    if c.get("name") and c.get("version"):
        return Found(
            f"{c.get('title') or c['name']} version {c['version']}",
            _card_source(ev, ("name", "version")),
        )
    w = _get(ev.store, ("use", "worklist"))
    if ev.model == "forecast" and w:  # the forecast has no card: the stored worklist names what ran
        return Found(
            f"progression forecast (tumour growth-inhibition fits and RFS curves), method version "
            f"{w['method_version']}, on outcome model {w['outcome_model_version']}, as of {w['as_of']}",
            _src(ev, "worklist_state"),
        )
    return None


def eligibility(ev: Evidence) -> Found | Missing | None:
    # not the parent's: the treatment model's scope (no recurrence) is not the forecast's
    return first(card("out_of_scope"), card("training", "source"))(ev)


def limitations(ev: Evidence) -> Found | Missing | None:
    return first(card("caveats"), card("caveats", parent=True))(ev)


def flow(ev: Evidence) -> Found | None:
    size, fu = training_size(ev), _store(ev, "follow_up")
    if size is None or not fu:
        return None
    ended = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (fu.get("ended") or {}).items())
    return Found(
        f"{size.text}; follow-up ended by {ended}",
        size.source + "; " + _src(ev, "observation_period"),
    )


def characteristics(ev: Evidence) -> Found | None:
    s, o = setting(ev), options_received(ev)
    events = _store(ev, "outcome_events")
    if s is None or not events:
        return None
    return Found(
        f"{s.text}; outcome events {_short(events)}" + (f"; {o.text}" if o else ""),
        s.source + ("; " + o.source if o else ""),
    )


def imaging_training(ev: Evidence) -> Found | None:
    t = _get(ev.card, ("training",))
    if not t:
        return None
    keys = ("epochs", "batch_size", "learning_rate", "optimizer", "loss", "command")
    return Found(
        ", ".join(f"{k.replace('_', ' ')} {t[k]}" for k in keys if k in t),
        _card_source(ev, ("training",)),
    )


def software(ev: Evidence) -> Found | None:
    t = _get(ev.card, ("training",)) or {}
    trained = (
        f"trained with torch {t['torch_version']} on {t.get('platform', '?')}; "
        if "torch_version" in t
        else ""
    )
    code = code_version(ev)
    return (
        Found(trained + code.text, _card_source(ev, ("training",)) + "; " + code.source)
        if code
        else None
    )


def data_source(ev: Evidence) -> Found | Missing | None:
    for c, parent in ((ev.card, False), (ev.parent_card, True)):
        t = _get(c, ("training",)) or {}
        if t.get("source"):
            meta = t.get("store_metadata") or {}
            return Found(
                f"{t['source']}"
                + (
                    f"; store kind {meta.get('kind')}, seed {meta.get('seed')}, cut-off {meta.get('data_cutoff')}"
                    if meta
                    else ""
                ),
                _card_source(ev, ("training", "source"), parent),
            )
    return card("training_data", "source")(ev)


def ethics(ev: Evidence) -> Found | Missing | None:
    return reporting("ethics_approval")(ev)


# --- the forecast: its evidence is its saved validation run (``oncolens validate forecast --json``) ---


def _forecast_run(ev: Evidence) -> Mapping[str, Any] | None:
    return ev.validation.get("forecast") if ev.model == "forecast" else None


def forecast_metrics(ev: Evidence) -> Found | None:
    run = _forecast_run(ev)
    if not run:
        return None
    parts = []
    t = _get(run, ("tumour", "overall"))
    if t:
        mae = t["mae_mm"]
        parts.append(
            f"tumour size: MAE {mae['tgi']:.2f} mm (last value {mae['locf']:.2f}, linear trend {mae['trend']:.2f}) "
            f"over {t['readings']} held-out readings; 80 % band coverage {t['coverage_80']:.2f}"
        )
    s = _get(run, ("survival", "integrated_brier"))
    if s:
        parts.append(
            f"RFS curves: integrated Brier {s['model']:.4f} (Kaplan-Meier reference {s['kaplan_meier_reference']:.4f})"
        )
    r = _get(run, ("risk_6m", "model"))
    if r:
        parts.append(
            f"six-month risk: AUC {r['auc']:.3f}, Brier {r['brier']:.3f} on {r['patients']} patients, {r['events']} events"
        )
    return Found("; ".join(parts), f"validation run {run.get('file', '')}") if parts else None


def forecast_recalibration(ev: Evidence) -> Found | None:
    run = _forecast_run(ev)
    if not run:
        return None
    parts = []
    t = _get(run, ("tumour", "overall"))
    if t and "uncalibrated" in t:
        u = t["uncalibrated"]
        parts.append(
            f"tumour bands recalibrated on held-out readings (quantile recalibration): 80 % coverage "
            f"{u['coverage_80']:.2f} before, {t['coverage_80']:.2f} after; 95 % {u['coverage_95']:.2f} before, "
            f"{t['coverage_95']:.2f} after"
        )
    r, u = _get(run, ("risk_6m", "model")), _get(run, ("risk_6m", "uncalibrated_bands"))
    if r and u:
        parts.append(
            f"six-month risk calibration slope {u['calibration_line']['slope']:.2f} before, "
            f"{r['calibration_line']['slope']:.2f} after (1 when calibrated)"
        )
    return Found("; ".join(parts), f"validation run {run.get('file', '')}") if parts else None


def forecast_design(ev: Evidence) -> Found | None:
    run = _forecast_run(ev)
    design = _get(run or {}, ("tumour", "design"))
    return (
        Found(_short(design, 600), f"validation run {(run or {}).get('file', '')}")
        if design
        else None
    )


def forecast_caveat(ev: Evidence) -> Found | None:
    run = _forecast_run(ev)
    caveat = _get(run or {}, ("caveat",))
    return Found(caveat, f"validation run {(run or {}).get('file', '')}") if caveat else None


# --- the map: item key -> answerer ---------------------------------------------------------------

TRIPOD = {
    "1": model_identity,
    "2": reporting("abstract"),
    "3a": card("intended_use"),
    "3b": card("intended_use"),
    "3c": reporting("inequalities"),
    "4": first(forecast_metrics, cv_metrics, metric_with_ci),
    "5a": data_source,
    "5b": dates,
    "6a": setting,
    "6b": eligibility,
    "6c": options_received,
    "7": quality_checks,
    "8a": horizon,
    "8b": reporting("outcome_assessors"),
    "8c": reporting("outcome_blinding"),
    "9a": features,
    "9b": features,
    "9c": reporting("predictor_assessors"),
    "10": training_size,
    "11": first(card("missing_values"), card("missing_values", parent=True)),
    "12a": first(
        forecast_design,
        card("metrics", "cross_validation"),
        card("metrics", "cross_validation", parent=True),
    ),
    "12b": first(card("design_columns"), card("design_columns", parent=True)),
    "12c": first(selection, card("learner", "name", parent=True)),
    "12d": by_site,
    "12e": first(forecast_metrics, cv_metrics, metric_with_ci),
    "12f": first(forecast_recalibration, treatment_calibration),
    "12g": weights,
    "13": card("class_imbalance"),
    "14": subgroup_audit,
    "15": card("decision_rule"),
    "16": first(
        validation_run(
            "treatment", "validation against the simulation's ground truth", ("treatment",)
        ),
        validation_run(
            "forecast", "forecast validated on later readings and later windows", ("forecast",)
        ),
    ),
    "17": ethics,
    "18a": reporting("funding"),
    "18b": reporting("conflicts_of_interest"),
    "18c": reporting("protocol"),
    "18d": reporting("registration"),
    "18e": data_source,
    "18f": code_version,
    "19": reporting("patient_public_involvement"),
    "20a": flow,
    "20b": characteristics,
    "20c": validation_run("gbsg2", "the learners checked on GBSG2, a real trial", ("treatment",)),
    "21": training_size,
    "22": weights,
    "23a": first(forecast_metrics, cv_metrics),
    "23b": by_site,
    "24": first(forecast_recalibration, treatment_calibration),
    "25": limitations,
    "26": first(forecast_caveat, limitations),
    "27a": first(
        card("missing_values"), card("input_guard", "method"), card("missing_values", parent=True)
    ),
    "27b": first(card("decision_rule"), card("intended_use")),
    "27c": card("out_of_scope"),
}

CLAIM_MAP = {
    "1": first(card("architecture", "network"), card("title")),
    "2": reporting("abstract"),
    "3": card("intended_use"),
    "4": card("intended_use"),
    "5": evaluation_design,
    "6": evaluation_design,
    "7": card("training_data", "source"),
    "8": first(card("modalities"), card("body_parts")),
    "9": card("architecture", "input"),
    "10": partitions,
    "11": card("labels"),
    "12": deidentification,
    "13": card("missing_values"),
    "14": card("training_data", "source"),
    "15": card("training_data", "ground_truth"),
    "16": reporting("annotators"),
    "17": card("training_data", "annotation_tool"),
    "18": card("training_data", "rater_variability"),
    "19": training_size,
    "20": partitions,
    "21": partitions,
    "22": card("architecture"),
    "23": software,
    "24": card("training", "initialisation"),
    "25": imaging_training,
    "26": card("training", "model_selection"),
    "27": card("training", "ensembling"),
    "28": metric_with_ci,
    "29": metric_with_ci,
    "30": first(robustness, weak_spots),
    "31": saliency,
    "32": validation_run("external", "external validation", (IMAGING,)),
    "33": training_size,
    "34": class_counts,
    "35": first(treatment_calibration, metric_with_ci),
    "36": auc_ci,
    "37": weak_spots,
    "38": card("caveats"),
    "39": first(card("intended_use"), card("out_of_scope")),
    "40": reporting("registration"),
    "41": reporting("protocol"),
    "42": reporting("funding"),
}

DECIDE = {
    "I": model_identity,
    "II": reporting("abstract"),
    "III": card("intended_use"),
    "IV": eligibility,
    "V": users,
    "VI": first(weights, model_identity),
    "VII": use_events,
    "VIII": first(errors, agreement),
    "IX": reporting("usability_evaluation"),
    "X": card("reporting", "evaluation_analysis"),
    "XI": use_events,
    "XII": use_events,
    "XIII": versions_seen,
    "XIV": agreement,
    "XV": errors,
    "XVI": reporting("usability_evaluation"),
    "XVII": limitations,
}

ANSWERS: dict[str, dict[str, Answerer]] = {
    "TRIPOD+AI": TRIPOD,
    "CLAIM": CLAIM_MAP,
    "DECIDE-AI": DECIDE,
}
