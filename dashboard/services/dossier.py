"""A model's reporting checklists and its dossier: one code path for ``oncolens checklist``,
``oncolens dossier`` and the Governance page (issue 22, items 1-2).

It lives in ``dashboard/`` for the same reason as the tumour-board report (``report.py``): it joins
both libraries (imaging cards and phantoms from ``models``, the store and the treatment model from
``analytics``) and draws the app's own figures (``dashboard.figures.governance``).

- ``model_evidence(model, db)``: the card (imaging from ``models/weights``, a 3D model from its
  bundle, ``dossier_volume``; treatment beside the store, forecast: none yet, its survival curves
  read the treatment card), the store's facts,
  validation runs saved in ``<store>_models/validation/``, code versions;
- ``model_checklist(model, db)``: the filled checklists (``analytics.governance.reporting``);
- ``gather_dossier`` / ``write_dossier`` / ``dossier_bytes``: the dossier's sections as data, then a
  PDF (``dossier_pdf``), written atomically; each generation is one audit event (``model_dossier``,
  naming the model, version and the PDF's sha256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analytics import store
from analytics.governance import audit
from analytics.governance.reporting.checklist import ANSWERED, Checklist, fill
from analytics.governance.reporting.evidence import (
    IMAGING,
    PREDICTION,
    PREDICTION_MODELS,
    VOLUME,
    Evidence,
    code_versions,
    saved_validations,
    store_facts,
)
from analytics.treatment.model import files as treatment_files
from dashboard.figures import static
from dashboard.figures.governance import (
    calibration_curves_figure,
    card_calibration_series,
    reliability_points,
    risk_calibration_series,
)
from dashboard.services.dossier_volume import bundle_evidence, volume_models, volume_sections
from dashboard.services.report import write_atomically
from models.deid.deidentify import key_path_for_store
from models.inference import registry

SECTIONS = (
    "1. Identity, versions and hashes",
    "2. Intended use and out of scope",
    "3. Training and validation data, with lineage",
    "4. Discrimination and the deployed choice",
    "5. Calibration before and after recalibration",
    "6. Subgroup results",
    "7. Input guard",
    "8. Saliency quality",
    "9. Known failure modes",
    "10. Reporting checklist",
    "11. Audit summary of its use",
    "12. Decision support, not a medical device",
)
DISCLAIMER = (
    "OncoLens is research and decision support, not a medical device. Every figure in this dossier was "
    "read from the model's card, its saved validation runs or the store at the time of generation; an "
    "item marked missing has no evidence on record, and the checklist says what would answer it."
)
CALIBRATION_SIGNS = (
    "Sign conventions. The card's calibration and the subgroup audit's survival table report predicted "
    "minus Kaplan-Meier 5-year RFS (survival scale: positive = optimistic, the model under-predicts risk). "
    "The subgroup audit's 5-year table reports mean predicted risk minus the observed event rate (event "
    "scale: positive = the model over-predicts risk), and only over patients whose 5-year status is known "
    "(those censored earlier are left out, which raises the observed rate). The same miscalibration "
    "therefore carries opposite signs in the two tables; they are not in conflict."
)


class UnknownModelError(LookupError):
    """A model name OncoLens does not deploy."""


def model_names() -> tuple[str, ...]:
    """The deployed models: the two prediction models, every installed 2D imaging model and every
    3D model (the built-in bundle and the registered ones, ``oncolens models add``)."""
    return (*PREDICTION_MODELS, *registry.available_models(), *volume_models())


def _treatment_card(db_path: Path) -> tuple[dict, str | None]:
    folder = treatment_files.model_dir_for(db_path)
    try:
        return treatment_files.load_card(folder), str(treatment_files.model_paths(folder)[1])
    except treatment_files.TreatmentModelError:
        return {}, None


def model_evidence(model: str, db_path: Path) -> Evidence:
    """Everything the checklists and the dossier read about ``model``; raises ``UnknownModelError``."""
    db_path = Path(db_path).expanduser()
    names = model_names()
    if model not in names:
        raise UnknownModelError(f"unknown model {model!r}: choose one of {', '.join(names)}")
    card: dict = {}
    parent: dict = {}
    bundle: dict = {}
    source = None
    kind = PREDICTION if model in PREDICTION_MODELS else IMAGING
    if model == "treatment":
        card, source = _treatment_card(db_path)
    elif model == "forecast":
        parent, _ = _treatment_card(db_path)
    elif model in volume_models():  # a 3D bundle: its card, metadata and registration (JSON only)
        card, bundle, source = bundle_evidence(model)
        kind = VOLUME
    else:
        card = registry.load_card(model)
        source = str(registry.find_model_files(model)[1])
    with store.open_store(db_path, read_only=True) as con:
        facts = store_facts(con, model)
    facts["deid_key"] = key_path_for_store(db_path).exists()
    validation = saved_validations(treatment_files.model_dir_for(db_path))
    return Evidence(
        model=model,
        kind=kind,
        card=card,
        card_source=source,
        parent_card=parent,
        store=facts,
        store_source=db_path.name,
        validation=validation,
        code=code_versions(),
        bundle=bundle,
    )


def model_checklist(model: str, db_path: Path) -> Checklist:
    """The filled checklists of ``model`` on the store at ``db_path``."""
    return fill(model_evidence(model, db_path))


# --- the dossier -----------------------------------------------------------------------------------


@dataclass
class Section:
    """One heading of the dossier: key-value rows, paragraphs, tables and images, in that order."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    images: list[tuple[bytes, str]] = field(default_factory=list)


@dataclass
class DossierData:
    model: str
    version: str | None
    generated_at: dt.datetime
    generated_by: str
    renderer: str
    sections: list[Section]
    checklist: Checklist


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(
            f"{k.replace('_', ' ')}: {v}"
            for k, v in value.items()
            if not isinstance(v, dict | list)
        )
    return str(value)


def _identity(ev: Evidence, checklist: Checklist) -> Section:
    s = Section(SECTIONS[0])
    card = ev.card or {}
    s.rows.append(("Model", ev.model + (f" ({card['title']})" if card.get("title") else "")))
    s.rows.append(("Version", checklist.version or "not recorded"))
    if card.get("created_at"):
        s.rows.append(("Card written", str(card["created_at"])))
    w = card.get("weights") or {}
    if w.get("sha256"):
        s.rows.append(("Weights", f"{w.get('file')} sha256 {w['sha256']}"))
    meta, reg = ev.bundle.get("metadata") or {}, ev.bundle.get("registration") or {}
    if meta.get("name"):
        s.rows.append(
            ("MONAI bundle", f"{meta['name']} (configs/metadata.json {meta.get('version')})")
        )
    if reg.get("sha256"):
        s.rows.append(
            (
                "Registered",
                f"{reg.get('registered_at', '?')} from {reg.get('source', '?')}; weights sha256 "
                f"{reg['sha256']} pinned, checked on every load",
            )
        )
    if card:
        digest = hashlib.sha256(json.dumps(card, sort_keys=True).encode()).hexdigest()
        s.rows.append(("Card", f"{ev.card_source} sha256 {digest} (canonical JSON)"))
    if ev.parent_card:
        pw = ev.parent_card.get("weights") or {}
        s.rows.append(
            (
                "Survival curves from",
                f"treatment model {ev.parent_card.get('version')} (weights sha256 {pw.get('sha256')})",
            )
        )
    worklist = (ev.store.get("use") or {}).get("worklist")
    if worklist:
        s.rows.append(
            (
                "Worklist",
                f"method version {worklist['method_version']}, outcome model {worklist['outcome_model_version']}, "
                f"as of {worklist['as_of']}, {worklist['entries']} patients ranked",
            )
        )
    s.rows.append(
        ("Code", ", ".join(f"{k} {v}" for k, v in ev.code.items() if v != "not installed"))
    )
    meta = ev.store.get("metadata") or {}
    s.rows.append(
        (
            "Data",
            f"store {ev.store_source} (schema v{ev.store.get('schema_version')}, {ev.store.get('patients')} patients, "
            f"kind {meta.get('kind', '?')}, seed {meta.get('seed', '?')}, cut-off {meta.get('data_cutoff', '?')})",
        )
    )
    if ev.store.get("data_fingerprint"):
        s.rows.append(("Data fingerprint", str(ev.store["data_fingerprint"])))
    return s


def _intended_use(ev: Evidence) -> Section:
    s = Section(SECTIONS[1])
    card = ev.card
    if not card.get("intended_use"):
        s.paragraphs.append(
            "No intended-use statement on record: the model has no card of its own (a card with intended use, "
            "out-of-scope uses and the decision it informs would answer this)."
        )
        if ev.parent_card.get(
            "intended_use"
        ):  # the forecast: say where its curves come from, not borrow scope
            s.rows.append(
                (
                    "Survival curves from",
                    f"the treatment model, whose card says: {ev.parent_card['intended_use']}",
                )
            )
        return s
    s.rows.append(("Intended use", card["intended_use"]))
    if card.get("out_of_scope"):
        s.rows.append(("Out of scope", _text(card["out_of_scope"])))
    if card.get("decision_rule"):
        s.rows.append(("Decision rule", card["decision_rule"]))
    return s


def _data(ev: Evidence) -> Section:
    s = Section(SECTIONS[2])
    card = ev.card or ev.parent_card
    if not ev.card and ev.parent_card:
        s.rows.append(
            (
                "Applies to",
                "the survival curves' model (the treatment model), below; the tumour growth-inhibition "
                "prior is estimated from the store's lesion series at each worklist refresh",
            )
        )
    for key in ("training_data", "evaluation_data"):
        if card.get(key):
            s.rows.append((key.replace("_", " ").capitalize(), _text(card[key])))
    t = card.get("training") or {}
    if t.get("source"):
        s.rows.append(("Training source", str(t["source"])))
    if t.get("patients") is not None:
        s.rows.append(("Training patients", f"{t['patients']} patients, {t.get('events')} events"))
    if t.get("store_metadata"):
        meta = {k: v for k, v in t["store_metadata"].items() if len(str(v)) <= 80}  # not UID lists
        s.rows.append(
            ("Trained from store", f"{Path(str(t.get('store', ''))).name}: {_text(meta)}")
        )
    if t.get("options_received"):
        s.rows.append(("Options received", _text(t["options_received"])))
    if t.get("command"):
        s.rows.append(("Training command", str(t["command"])))
    if card.get("horizon"):
        s.rows.append(("Horizon", _text(card["horizon"])))
    dx, fu = ev.store.get("diagnoses") or {}, ev.store.get("follow_up") or {}
    if dx:
        s.rows.append(
            (
                "Store now",
                f"diagnoses {dx.get('first')} to {dx.get('last')}, follow-up to {fu.get('end')}, "
                f"outcome events {_text(ev.store.get('outcome_events') or {})}",
            )
        )
    runs = {k: v for k, v in ev.validation.items() if not k.startswith("_")}
    s.rows.append(
        (
            "Validation runs saved",
            ", ".join(f"{k} ({Path(v['file']).name})" for k, v in runs.items())
            or "none (save `oncolens validate TARGET --json` output in <store>_models/validation/TARGET.json)",
        )
    )
    s.paragraphs.append(
        "Lineage as recorded by the card and the store. A registry of model versions with the data each was "
        "trained on is kept separately (model lineage, issue 22 item 3)."
    )
    return s


def _discrimination(ev: Evidence, checklist: Checklist) -> Section:
    s = Section(SECTIONS[3])
    learners = ((ev.card.get("metrics") or {}).get("learners")) or {}
    if learners:
        rows = []
        sel = learners.get("selection") or {}
        for name, m in learners.items():
            if name == "selection" or not isinstance(m, dict):
                continue
            diff = m.get(f"{sel.get('kept')}_minus_this") or {}
            rows.append(
                {
                    "learner": name + (" (deployed)" if name == sel.get("kept") else ""),
                    "Harrell's C": f"{m['harrell_c']['mean']:.3f} ± {m['harrell_c']['sd']:.3f}",
                    "Uno's C": f"{m['uno_c']['mean']:.3f} ± {m['uno_c']['sd']:.3f}",
                    "integrated Brier": f"{m['integrated_brier']['mean']:.4f}",
                    "deployed minus this (C)": (
                        f"{diff['harrell_c']['mean']:+.3f} (SE {diff['harrell_c']['se']:.3f})"
                        if diff.get("harrell_c", {}).get("se") is not None
                        else ""
                    ),
                }
            )
        cv = (ev.card.get("metrics") or {}).get("cross_validation") or {}
        s.tables.append(
            (
                f"Cross-validated ({cv.get('folds', '?')} folds, seed {cv.get('seed', '?')}; mean ± sd over folds)",
                pd.DataFrame(rows),
            )
        )
        if sel:
            better = sel.get("better_than_kept") or []
            s.rows.append(("Deployed", str(sel.get("kept"))))
            s.rows.append(("Why this one", str(sel.get("why_kept"))))
            s.rows.append(("Rule", str(sel.get("rule"))))
            s.rows.append(
                (
                    "Clearly better learners",
                    ", ".join(better)
                    or "none: every higher C is within two paired standard errors of the deployed learner's",
                )
            )
    metrics = ev.card.get("metrics") or {}
    ci_rows = [
        {
            "metric": k.replace("_", " "),
            "value": f"{v['value']:.3f}",
            "95 % CI": f"{v['ci_low']:.3f}-{v['ci_high']:.3f}",
        }
        for k, v in metrics.items()
        if isinstance(v, dict) and {"value", "ci_low", "ci_high"} <= set(v)
    ]
    if ci_rows:
        s.tables.append(
            (f"Held-out test set (n {metrics.get('n_test', '?')})", pd.DataFrame(ci_rows))
        )
    if ev.model == "forecast":
        a = checklist.get("TRIPOD+AI", "23a")
        s.paragraphs.append(a.answer if a.status == ANSWERED else f"Not on record: {a.item.needs}.")
    if not s.rows and not s.tables and not s.paragraphs:
        s.paragraphs.append("No discrimination figures on record.")
    return s


def _calibration(ev: Evidence) -> tuple[Section, list[tuple[Any, str]]]:
    """The section and the figures it needs drawn (figure, caption)."""
    s = Section(SECTIONS[4])
    figs: list[tuple[Any, str]] = []
    cal = ev.card.get("calibration") or {}
    if ev.model == "treatment":
        series = card_calibration_series(ev.card)
        if series:
            o = cal["overall"]
            s.rows.append(("Method", str(cal.get("method"))))
            s.rows.append(("Recalibration", str(cal.get("recalibration"))))
            s.rows.append(
                (
                    "Overall",
                    f"predicted {o['mean_predicted']:.3f} vs Kaplan-Meier {o['observed']:.3f} (gap {o['gap']:+.3f}); "
                    f"largest group gap {cal['max_abs_gap']:.3f}",
                )
            )
            figs.append(
                (
                    calibration_curves_figure(
                        series,
                        title="Treatment model: predicted vs Kaplan-Meier RFS at the horizon, by tenth of predicted",
                        x_title="mean predicted RFS",
                        y_title="observed (Kaplan-Meier) RFS",
                    ),
                    "Out-of-fold predictions under the option received; bars: the group's 95 % Kaplan-Meier band. "
                    "No recalibration is applied, so before and after are the same curve.",
                )
            )
        elif not ev.card:
            s.paragraphs.append(
                "No treatment model card: train one with `oncolens recommend --train`."
            )
        else:
            s.paragraphs.append(
                "The card holds no calibration (written before issue 22): retrain with `oncolens recommend --train`."
            )
        s.paragraphs.append(CALIBRATION_SIGNS)
    elif ev.model == "forecast":
        run = ev.validation.get("forecast")
        series = risk_calibration_series(run) if run else []
        if series:
            figs.append(
                (
                    calibration_curves_figure(
                        series,
                        title="Six-month risk of progression or recurrence: before and after the band recalibration",
                        x_title="mean predicted risk",
                        y_title="observed share (Wilson 95 % CI)",
                    ),
                    f"From the saved validation run {Path(run['file']).name}.",
                )
            )
        else:
            s.paragraphs.append(
                "No forecast validation run saved: `oncolens validate forecast --db DB --json > "
                "DB_models/validation/forecast.json`."
            )
    else:
        if cal:
            ece = cal.get("ece_test") or {}
            s.rows.append(("Method", str(cal.get("method"))))
            s.rows.append(
                (
                    "Expected calibration error (test)",
                    f"{ece.get('before', float('nan')):.3f} before, {ece.get('after', float('nan')):.3f} after; "
                    f"{'applied' if cal.get('applied') else 'not applied'}",
                )
            )
            s.rows.append(("Rule", str(cal.get("rule"))))
        points = reliability_points(ev.card)
        if not points.empty:
            frame = points.rename(columns={"mean_confidence": "predicted", "accuracy": "observed"})
            label = (
                "as deployed ("
                + ("recalibrated" if cal.get("applied") else "not recalibrated")
                + ")"
            )
            figs.append(
                (
                    calibration_curves_figure(
                        [(label, frame)],
                        title="Reliability on the held-out test set",
                        x_title="mean confidence of the predicted class",
                        y_title="accuracy",
                    ),
                    "Reliability bins of the deployed model; the ECE before and after temperature scaling is above.",
                )
            )
    return s, figs


def _subgroups(
    ev: Evidence, db_path: Path, phantoms: int, clinic: Any = None, audit_report: dict | None = None
) -> Section:
    s = Section(SECTIONS[5])
    report: dict | None = None
    note = ""
    try:
        if ev.model == "treatment":
            report = (audit_report or _treatment_subgroups(db_path, clinic))["survival"]
            note = "Treatment model, every patient of the store (in-sample: compare groups, not levels)."
        elif ev.kind == IMAGING and phantoms > 0:
            report = _imaging_subgroups(ev.model, phantoms)
            note = report["data"]
    except (
        treatment_files.TreatmentModelError,
        registry.ModelUnavailableError,
        store.StoreError,
    ) as exc:
        s.paragraphs.append(f"Not computed: {exc}")
        return s
    if report is None:
        s.paragraphs.append(
            "Not computed for this model"
            + (
                " (run with phantoms > 0 to audit it on fresh phantoms)."
                if ev.kind == IMAGING
                else ": no subgroup audit exists for the forecast yet."
            )
        )
        return s
    s.paragraphs.append(note)
    rows = []
    for r in report.get("gaps", []):
        lo, hi = r.get("ci_low"), r.get("ci_high")
        flagged = lo is not None and hi is not None and (lo > 0 or hi < 0)
        rows.append(
            {
                "attribute": r["attribute"].replace("_", " "),
                "metric": r["title"],
                "gap": f"{r['gap']:.3f}",
                "95 % CI": "too few" if lo is None else f"{lo:+.3f} to {hi:+.3f}",
                "flag": "GAP (CI excludes 0)" if flagged else "-",
                "lowest": f"{r['low_group']} {r['low_value']:.3f} (n {r['n_low']})",
                "highest": f"{r['high_group']} {r['high_value']:.3f} (n {r['n_high']})",
            }
        )
    if rows:
        s.tables.append(
            (
                "Gaps between groups (highest minus lowest; a gap is flagged only where its 95 % interval "
                "excludes 0)",
                pd.DataFrame(rows),
            )
        )
    else:
        s.paragraphs.append(
            f"No gap computed: fewer than two groups of an attribute reached n >= {report.get('min_n')}."
        )
    groups = pd.DataFrame(report.get("by_group") or [])
    if not groups.empty:
        keep = [c for c in groups.columns if c not in ("positives",)]
        s.tables.append(("Every group with its n", groups[keep]))
    for attribute, why in (report.get("skipped") or {}).items():
        s.paragraphs.append(f"Not audited: {attribute.replace('_', ' ')}: {why}.")
    return s


def _treatment_subgroups(db_path: Path, clinic: Any) -> dict:
    # lazy: the treatment model and its audit load only for a treatment dossier (xgboost, shap)
    from analytics.governance.subgroup_treatment import treatment_subgroup_report

    # lazy: as above
    from analytics.treatment.clinic import load_clinic_model

    model = clinic or load_clinic_model(db_path)
    with store.open_store(db_path, read_only=True) as con:
        return treatment_subgroup_report(con, model)


def _imaging_subgroups(name: str, n: int) -> dict:
    # lazy: torch and the phantom generator load only for an imaging dossier with phantoms
    from dashboard.services.subgroups import imaging_subgroup_report

    # lazy: as above
    from models.inference.loader import ModelLoader

    return imaging_subgroup_report(ModelLoader()(name), n=n)


def _guard(ev: Evidence) -> Section:
    s = Section(SECTIONS[6])
    g = ev.card.get("input_guard") or {}
    if g:
        ood = g.get("out_of_distribution") or {}
        s.rows.append(("Method", str(g.get("method"))))
        s.rows.append(
            ("Threshold", f"{g.get('threshold')} (set on {_text(g.get('threshold_set_on') or {})})")
        )
        if ood:
            s.rows.append(
                (
                    "Detection",
                    f"AUROC {ood['auroc']:.3f}; refuses {ood['refusal_rate_out_of_distribution']:.0%} of "
                    f"{ood['n_out_of_distribution']} out-of-distribution images and "
                    f"{ood['refusal_rate_in_distribution']:.1%} of {ood['n_in_distribution']} held-out phantoms",
                )
            )
            s.tables.append(
                (
                    "Refusal by kind of out-of-distribution image",
                    pd.DataFrame(
                        [
                            {
                                "kind": k,
                                "n": v.get("n"),
                                "refused": f"{v.get('refusal_rate', 0):.0%}",
                            }
                            for k, v in (ood.get("by_kind") or {}).items()
                        ]
                    ),
                )
            )
        use = ev.store.get("use") or {}
        s.rows.append(
            (
                "In use",
                f"{use.get('reads', 0)} reads filed, {use.get('refusals', 0)} refused by the guard",
            )
        )
    elif ev.model == "treatment":
        overlap = ((ev.card.get("data_checks") or {}).get("overlap") or {}).get("options") or {}
        s.paragraphs.append(
            "No pixel input. Each recommendation is gated by its scope check (adjuvant decision in early breast "
            "cancer only; no recurrence or metastatic disease) and needs every covariate (no imputation)."
        )
        if overlap:
            s.tables.append(
                (
                    "Treatment overlap at training (propensity common support)",
                    pd.DataFrame(
                        [
                            {
                                "option": k,
                                "outside common support": f"{v.get('share_outside_common_support', 0):.2%}",
                                "extreme propensity": f"{v.get('share_extreme_propensity', 0):.2%}",
                            }
                            for k, v in overlap.items()
                        ]
                    ),
                )
            )
    else:
        s.paragraphs.append("No input guard on record for this model.")
    return s


def _saliency(ev: Evidence) -> Section:
    s = Section(SECTIONS[7])
    methods = ((ev.card.get("saliency") or {}).get("methods")) or {}
    if not methods:
        s.paragraphs.append(
            "Not applicable: no image input."
            if ev.kind == PREDICTION
            else "Saliency quality not measured (python -m models.saliency.quality --write-cards)."
        )
        return s
    rows = []
    for name, m in methods.items():
        sanity = m.get("sanity") or {}
        rows.append(
            {
                "method": name,
                "sanity check": "passed" if sanity.get("passed") else "FAILED",
                "rank corr. trained vs random": (sanity.get("spearman_abs") or {}).get("value"),
                "pointing game": (m.get("pointing_game") or {}).get("value"),
                "deletion AUC": m.get("deletion_auc"),
                "insertion AUC": m.get("insertion_auc"),
                "verdict": (m.get("verdict") or {}).get("status", ""),
            }
        )
    s.paragraphs.append(str((ev.card.get("saliency") or {}).get("data", "")))
    s.tables.append(("Saliency methods", pd.DataFrame(rows)))
    return s


def _failures(ev: Evidence) -> Section:
    s = Section(SECTIONS[8])
    card = ev.card
    spots = card.get("known_weak_spots") or {}
    for name, spot in spots.items():
        sens = spot.get("sensitivity") or {}
        s.rows.append(
            (
                name.replace("_", " "),
                ", ".join(
                    f"sensitivity {b.replace('_', ' ')} {v['value']:.2f} ({v['ci_low']:.2f}-{v['ci_high']:.2f}, n {v['n']})"
                    for b, v in sens.items()
                )
                + (f"; applies to {spot['applies_to']}" if spot.get("applies_to") else ""),
            )
        )
    for w in (card.get("data_checks") or {}).get("warnings") or []:
        s.rows.append(("data check", str(w.get("message", w))))
    verdict = (card.get("policy_tree") or {}).get("verdict")
    if verdict:
        s.rows.append(("policy", str(verdict)))
    for c in card.get("caveats") or []:
        s.paragraphs.append(f"- {c}")
    if not ev.card:  # the forecast: its survival curves carry the treatment model's caveats
        for c in ev.parent_card.get("caveats") or []:
            s.paragraphs.append(f"- Survival curves (treatment model): {c}")
    run = ev.validation.get("forecast") if ev.model == "forecast" else None
    if run and run.get("caveat"):
        s.paragraphs.append(f"- {run['caveat']}")
    if not s.rows and not s.paragraphs:
        s.paragraphs.append("No failure modes on record.")
    return s


def _clip(text: str, limit: int = 240) -> str:
    """A checklist answer as the PDF's table shows it (the CSV export has the whole text)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _checklist_section(checklist: Checklist) -> Section:
    s = Section(SECTIONS[9])
    for name, c in checklist.counts().items():
        s.rows.append((name, f"{c['answered']} answered, {c['missing']} missing"))
    frame = pd.DataFrame(
        [
            {
                "item": f"{a.item.checklist} {a.item.number}",
                "topic": a.item.text,
                "status": a.status,
                "answer or what would answer it": _clip(
                    a.answer if a.status == ANSWERED else a.item.needs
                ),
                "source": a.source,
            }
            for a in checklist.answers
        ]
    )
    s.tables.append(("Items (answers read from the evidence named in 'source')", frame))
    return s


def _audit(ev: Evidence) -> Section:
    s = Section(SECTIONS[10])
    use = ev.store.get("use") or {}
    a = use.get("audit") or {}
    if a.get("events"):
        s.rows.append(
            (
                "Audit events",
                f"{a['events']} by {a['users']} user(s), {a.get('first')} to {a.get('last')}",
            )
        )
        s.rows.append(("Model versions seen", ", ".join(a.get("versions") or []) or "not recorded"))
        s.tables.append(
            (
                "Events by action",
                pd.DataFrame([{"action": k, "events": v} for k, v in a["by_action"].items()]),
            )
        )
    else:
        s.rows.append(("Audit events", "none record a use of this model yet"))
    if a.get("dossiers"):
        s.rows.append(
            ("Dossiers generated", f"{a['dossiers']} before this one (not counted as use)")
        )
    d = use.get("decisions")
    if d:
        s.rows.append(
            (
                "Decisions",
                f"{d['decisions']}: {d['accepted']} accepted, {d['overridden']} overridden, "
                f"{d['no_recommendation']} without a recommendation",
            )
        )
    if "reads" in use and ev.kind == IMAGING:
        s.rows.append(("AI reads", f"{use['reads']} filed, {use.get('refusals', 0)} refused"))
    if "volume_reads" in use and ev.kind == VOLUME:
        s.rows.append(
            (
                "3D reads",
                f"{use['volume_reads']} filed, {use.get('volume_refusals', 0)} refused",
            )
        )
    if use.get("worklist_reviews") is not None:
        s.rows.append(("Worklist reviews", str(use["worklist_reviews"])))
    return s


def gather_dossier(
    model: str,
    db_path: Path,
    *,
    generated_by: str,
    phantoms: int = 100,
    clinic: Any = None,
    treatment_audit: dict | None = None,
) -> DossierData:
    """Every section of ``model``'s dossier; raises ``UnknownModelError`` for a model not deployed.

    ``phantoms``: fresh phantoms for an imaging model's subgroup audit (0 skips it, saying so);
    ``clinic``: an already loaded treatment model (the app's), else it is loaded from the store;
    ``treatment_audit``: the treatment subgroup report already computed (the page's, cached), else it
    is computed here.
    """
    ev = model_evidence(model, db_path)
    checklist = fill(ev)
    if ev.kind == VOLUME:  # a 3D card has its own figures (dashboard.services.dossier_volume)
        calibration, figs = Section(SECTIONS[4]), []
        middle = volume_sections(ev, Section, SECTIONS, _saliency)
    else:
        calibration, figs = _calibration(ev)
        middle = [
            _intended_use(ev),
            _data(ev),
            _discrimination(ev, checklist),
            calibration,
            _subgroups(ev, Path(db_path).expanduser(), phantoms, clinic, treatment_audit),
            _guard(ev),
            _saliency(ev),
            _failures(ev),
        ]
    sections = [
        _identity(ev, checklist),
        *middle,
        _checklist_section(checklist),
        _audit(ev),
        Section(SECTIONS[11], paragraphs=[DISCLAIMER]),
    ]
    pngs = static.figures_png([(fig, 900, 620) for fig, _ in figs])
    calibration.images = [(png, caption) for png, (_, caption) in zip(pngs, figs, strict=True)]
    return DossierData(
        model=model,
        version=checklist.version,
        generated_at=dt.datetime.now(),
        generated_by=generated_by,
        renderer=static.renderer(),
        sections=sections,
        checklist=checklist,
    )


def _record(
    db_path: Path, data: DossierData, pdf: bytes, actor: str, role: str | None, via: str
) -> str:
    digest = hashlib.sha256(pdf).hexdigest()
    audit.record_event(
        db_path,
        actor=actor,
        role=role,
        action="model_dossier",
        model_name=data.model,
        model_version=data.version,
        inputs_sha256=digest,
        details={"via": via, "bytes": len(pdf), "checklist": data.checklist.counts()},
    )
    return digest


def write_dossier(
    model: str, db_path: Path, out: Path, *, actor: str, role: str | None, phantoms: int = 100
) -> dict:
    """Write the dossier PDF to ``out`` (atomically: a temporary file renamed), then audit it."""
    # lazy: fpdf and the fonts load only when a PDF is written
    from dashboard.services.dossier_pdf import render_dossier

    data = gather_dossier(model, db_path, generated_by=actor, phantoms=phantoms)
    pdf = render_dossier(data)
    out = Path(out)
    write_atomically(out, pdf)
    digest = _record(db_path, data, pdf, actor, role, "cli")
    return {
        "model": model,
        "version": data.version,
        "out": str(out),
        "sha256": digest,
        "bytes": len(pdf),
        "renderer": data.renderer,
        "checklist": data.checklist.counts(),
    }


def dossier_bytes(
    model: str,
    db_path: Path,
    *,
    actor: str,
    role: str | None,
    phantoms: int = 0,
    clinic: Any = None,
    treatment_audit: dict | None = None,
) -> bytes:
    """The dossier PDF in memory for the page's download button; audited like ``write_dossier``."""
    # lazy: fpdf and the fonts load only when a PDF is written
    from dashboard.services.dossier_pdf import render_dossier

    data = gather_dossier(
        model,
        db_path,
        generated_by=actor,
        phantoms=phantoms,
        clinic=clinic,
        treatment_audit=treatment_audit,
    )
    pdf = render_dossier(data)
    _record(db_path, data, pdf, actor, role, "app")
    return pdf
