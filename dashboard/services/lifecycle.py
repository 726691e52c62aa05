"""Lineage, sign-off and drift for the pages and the CLI: one code path gathering the models' files.

Why here and not in ``analytics``: the registry and the drift references come from model files
(the imaging cards and ``NAME.reference.json`` beside the weights, through ``models``; the clinic's
card beside the store), which ``analytics`` never opens. The statistics and queries themselves are
``analytics.governance.lifecycle``'s; this module hands them plain values. The Governance page
(through ``dashboard.resources``, which caches) and ``oncolens drift`` / ``oncolens lineage`` call
the same functions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from analytics import store
from analytics.governance.lifecycle import approvals, drift_data, lineage
from analytics.governance.lifecycle import measurements as ai_measurements
from analytics.governance.lifecycle.drift import DriftReport
from analytics.treatment.model import files as treatment_files
from analytics.worklist.buckets import SignOff
from analytics.worklist.stored import refresh_for_writer, source_fingerprint
from models.inference import registry
from models.training.reference import ReferenceUnavailableError, load_reference
from models.volumes.cards import available_bundles, bundle_cards

_log = logging.getLogger(__name__)

# what an output without a model version (a tumour-size fit per patient) says about sign-off
NOT_APPLICABLE = {
    "status": "not applicable",
    "required": False,
    "withheld": False,
    "message": None,
}


def record_decision(
    db_path: Path | str,
    *,
    model_name: str,
    model_version: str,
    version_id: str,
    decision: str,
    comment: str,
    actor: str,
    role: str | None,
    wait_s: float = 0.0,
) -> int:
    """The board's decision on a model version (``approvals.decide``), then the stored worklist
    ranked again for the patients whose AI measurements it shows or hides; the audit event id.

    Why a writer's refresh: where approval is required, a decision changes which AI readings the
    ranking may read (``measurements.shown``), like an import of readings does; the stored rows of
    those patients would otherwise keep a withheld reading (shown, marked out of date, above
    20,000 patients and by ``oncolens worklist``) until a full refresh (review of 2026-12-04).
    """
    with store.open_store(db_path, wait_s=wait_s) as con:
        before = source_fingerprint(con)
        event = approvals.decide(
            con,
            model_name=model_name,
            model_version=model_version,
            version_id=version_id,
            decision=decision,
            comment=comment,
            actor=actor,
            role=role,
        )
        _rank_again(
            con, db_path, before, ai_measurements.affected_people(con, model_name, version_id)
        )
    return event


def set_requirement(
    db_path: Path | str, wanted: bool, *, actor: str, role: str | None, wait_s: float = 0.0
) -> int:
    """The admin's setting (``approvals.set_require_approval``), then the stored worklist ranked
    again for every patient with AI measurements (``record_decision`` says why)."""
    with store.open_store(db_path, wait_s=wait_s) as con:
        before = source_fingerprint(con)
        event = approvals.set_require_approval(con, wanted, actor=actor, role=role)
        _rank_again(con, db_path, before, ai_measurements.affected_people(con))
    return event


def _rank_again(con, db_path: Path | str, before: str, people: list[int]) -> None:
    """Re-rank ``people`` when what the ranking may read changed; where it cannot (the stored list
    was already out of date, or the store is too large for a writer's full refresh) the list stays
    marked out of date by its fingerprint, as after any writer (``refresh_for_writer``). A refresh
    that fails (the clinic's model unreadable, say) is logged, not raised: the decision is
    already recorded, and the page must say so rather than show a traceback."""
    if not people or source_fingerprint(con) == before:
        return
    try:
        refresh_for_writer(con, Path(db_path), people, before)
    except Exception as exc:  # noqa: BLE001 - the decision stands; the list says it is out of date
        _log.warning("sign-off: the stored worklist was not ranked again (%s)", exc)


def current_versions(db_path: Path | str) -> list[lineage.ModelVersion]:
    """The versions whose cards are present: every imaging model, every 3D bundle (the built-in
    one and those registered with ``oncolens models add``; their JSON only, no torch), then the
    store's clinic model."""
    versions = [lineage.imaging_version(registry.load_card(n)) for n in registry.available_models()]
    versions.extend(lineage.volume_version(entry) for entry in bundle_cards())
    try:
        card = treatment_files.load_card(treatment_files.model_dir_for(Path(db_path)))
        versions.extend(lineage.treatment_versions(card))
    except treatment_files.TreatmentModelError:
        pass  # no clinic model yet: the trail may still name earlier ones
    return versions


def version_ids(db_path: Path | str) -> dict[tuple[str, str], str | None]:
    """Per (model, version) of the cards present, its version id: the sha256 of its weights.

    Why here: a sign-off binds to weights (``approvals.approval`` takes the id), and only this
    layer opens the cards. A version whose card is gone (a stored read of an older version) is
    absent, so its id is unknown and no decision applies to it.
    """
    return {(v.model_name, v.version): v.version_id for v in current_versions(db_path)}


def model_registry(db_path: Path | str) -> tuple[list[lineage.ModelVersion], pd.DataFrame]:
    """Every version (current cards, then others the trail names) and the trail's use of each."""
    current = current_versions(db_path)
    with store.open_store(db_path, read_only=True) as con:
        return lineage.registry(con, current), lineage.named_in_trail(con)


def imaging_references() -> tuple[dict[str, tuple[pd.DataFrame, str]], list[str]]:
    """Each imaging model's drift reference (scores and statistics on held-out phantoms), and notes
    for models without one."""
    out, notes = {}, []
    for name in registry.available_models():
        try:
            data = load_reference(name, registry.load_card(name))
        except ReferenceUnavailableError as exc:
            notes.append(str(exc))
            continue
        out[name] = (pd.DataFrame(data["values"]), f"{name}: {data['what']}")
    return out, notes


def imaging_drift(
    db_path: Path | str, frequency: str = "month"
) -> tuple[list[DriftReport], list[str]]:
    """The imaging models' input drift, windowed by ``frequency``, and notes on models without a
    reference: the part of ``drift`` that the page's window changes."""
    references, notes = imaging_references()
    with store.open_store(db_path, read_only=True) as con:
        reports = drift_data.drift_reports(
            con, imaging_references=references, treatment=None, frequency=frequency
        )
    return reports, notes


def treatment_drift(
    db_path: Path | str, patient_frequency: str = "year"
) -> tuple[list[DriftReport], list[str]]:
    """The clinic model's covariate drift and calibration reports (or a note why none): the part
    of ``drift`` that does not depend on the images' window (issue 23: 1.1 of a window change's
    1.2 CPU-s were this, recomputed for every window)."""
    try:
        # the model alone (its SHAP explainers are the Patient page's): the same risks
        treatment = treatment_files.load_model(treatment_files.model_dir_for(Path(db_path)))
    except treatment_files.TreatmentModelError as exc:
        return [], [f"treatment model not monitored: {exc}"]
    with store.open_store(db_path, read_only=True) as con:
        reports = drift_data.drift_reports(
            con,
            imaging_references={},
            treatment=treatment,
            patient_frequency=patient_frequency,
        )
    return reports, []


def drift(
    db_path: Path | str, frequency: str = "month", patient_frequency: str = "year"
) -> tuple[list[DriftReport], list[str]]:
    """Every model's drift report (``analytics.governance.lifecycle.drift_data.drift_reports``)
    and notes on what could not be monitored: the imaging models' (``imaging_drift``), then the
    clinic model's (``treatment_drift``), as one call of ``drift_reports`` orders them."""
    imaging, imaging_notes = imaging_drift(db_path, frequency)
    treatment, treatment_notes = treatment_drift(db_path, patient_frequency)
    return imaging + treatment, imaging_notes + treatment_notes


def approval(db_path: Path | str, model_name: str, model_version: str | None) -> dict:
    """The ``approval`` key of the CLI's JSON for one output; a missing store says so, never fails."""
    if model_version is None:
        return dict(NOT_APPLICABLE)
    path = Path(db_path).expanduser()
    if not path.exists():
        return {
            "model": model_name,
            "model_version": model_version,
            "status": "unknown",
            "required": False,
            "withheld": False,
            "message": f"no store at {path}: the ethics board's sign-off was not checked",
        }
    version_id = version_ids(path).get((str(model_name), str(model_version)))
    with store.open_store(path, read_only=True) as con:
        return approvals.approval(con, model_name, str(model_version), version_id).to_json()


# what an ingest entry keeps when its read is withheld: where it is, which model; no label, no figure
_KEEP_2D = ("model", "model_version")
_KEEP_3D = (
    "kind",
    "person_id",
    "study_uid",
    "series_instance_uid",
    "modality",
    "model",
    "model_version",
    "weights_sha256",
    "refused",
)


def signed_off_entry(db_path: Path | str, entry: dict, statuses: dict[tuple, dict]) -> dict:
    """One ``ingest_files``/``ingest_from_pacs`` report entry behind the ethics board's sign-off,
    as ``oncolens predict`` prints its reads: an image's AI read (``ai``) or a series' 3D read
    gets its version's ``approval``; where approval is required and not given, the label,
    probability and measurements are left out and ``withheld`` says why. The image itself was
    filed: a withheld read is not a failed input. Refusals and notes are not model output and
    pass. ``statuses``: the lookups so far, one per model version (filled here)."""
    volume = entry.get("kind") == "volume"
    read = entry if volume else entry.get("ai")
    if not isinstance(read, dict) or "note" in entry or entry.get("refused"):
        return entry
    if read.get("model") is None or read.get("model_version") is None:
        return entry
    key = (str(read["model"]), str(read["model_version"]))
    if key not in statuses:
        statuses[key] = approval(db_path, *key)
    status = statuses[key]
    out = {**entry, "approval": status}
    if not status.get("withheld"):
        return out
    why = status.get("message") or "AI output withheld: model version not approved"
    if volume:
        return {
            **{k: entry[k] for k in _KEEP_3D if k in entry},
            "approval": status,
            "withheld": why,
        }
    return {**out, "ai": {k: read[k] for k in _KEEP_2D}, "withheld": why}


def worklist_signoff(
    statuses: dict[tuple[str, str], approvals.Approval],
    forecast: approvals.Approval | None,
    required: bool,
) -> SignOff:
    """What the worklist may use (``analytics.worklist.buckets.SignOff``) from the sign-off of each
    imaging version (``statuses``; keys as ``version_ids``') and of the forecast that ranked it."""
    return SignOff(
        approved_reads=frozenset(
            (name, version, status.version_id)
            for (name, version), status in statuses.items()
            if status.approved and status.version_id is not None
        ),
        required=bool(required),
        risk_withheld=forecast is not None and forecast.withheld,
    )


def imaging_keys(ids: dict[tuple[str, str], str | None]) -> list[tuple[str, str]]:
    """The 2D imaging model versions among ``version_ids``' keys (the rest: treatment, forecast
    and the 3D bundles, whose reads the worklist does not quote: they are in ``ai_volume_read``)."""
    skip = {"treatment", "forecast", *available_bundles()}
    return sorted(k for k in ids if k[0] not in skip)


def read_keys(ids: dict[tuple[str, str], str | None]) -> list[tuple[str, str]]:
    """The model versions among ``version_ids``' keys that make AI reads: the 2D imaging models and
    the 3D bundles (not treatment nor forecast). The worklist's ``SignOff`` names them all, so its
    count of new AI reads (2D and 3D, ``analytics.worklist.review``) follows the sign-off."""
    return sorted(k for k in ids if k[0] not in {"treatment", "forecast"})


def worklist_signoff_of(db_path: Path | str, ranked_by: str | None) -> SignOff:
    """``worklist_signoff`` for ``oncolens worklist``: read from the store and the cards now."""
    ids = version_ids(db_path)
    with store.open_store(db_path, read_only=True) as con:
        statuses = {k: approvals.approval(con, *k, ids[k]) for k in read_keys(ids)}
        forecast = (
            None
            if ranked_by is None
            else approvals.approval(con, "forecast", ranked_by, ids.get(("forecast", ranked_by)))
        )
        return worklist_signoff(statuses, forecast, approvals.require_approval(con))
