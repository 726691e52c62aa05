"""Lineage: every model version, what it was trained and validated on, by which code and command.

Why a registry built from the cards and the trail, not a table of its own: the cards are the
verified record of the weights (each carries their sha256, checked before every load), and the
audit trail names the model and version of every prediction shown (AI reads, recommendations,
forecasts, decisions). So the registry lists the versions whose cards are present (the committed
imaging models, the clinic's treatment model and the forecast that uses it) and every other
version the trail names, marked "card no longer present" (a retrained clinic model leaves its
old version in the trail). A prediction points to its version through the event's own hashed
columns ``model_name`` and ``model_version``; the version id is the sha256 of the weights.

What each card records (``lineage`` block, written at training; docs/governance.md):
data (source, a fingerprint of the store or a hash of the generated data's specification,
the cohort definition, row counts, date), code (git commit, OncoLens version, library
versions) and the command. What a card does not record is listed in ``missing``, never guessed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from analytics.governance.chain import canonical_json

# the actions that show or store a model's output (what "a prediction in the trail" means)
PREDICTION_ACTIONS = (
    "ai_read_shown",
    "ai_read_refused",
    "recommendation_shown",
    "forecast_shown",
    "treatment_decision",
    "explanation_shown",
)
VERSION_HEX = re.compile(r"[0-9a-f]{64}")  # a weights sha256 (lower-case hex)
LINEAGE_FIELDS = (
    "data source",
    "data fingerprint",
    "cohort",
    "rows",
    "date",
    "code version",
    "command",
)


@dataclass(frozen=True)
class ModelVersion:
    """One model version and its lineage (``data``, ``code``, ``command``; ``missing``: what is not recorded)."""

    model_name: str  # as the audit trail names it: mammography, brain_mri, treatment, forecast
    kind: str  # imaging, volume (a 3D bundle), treatment, forecast
    version: str
    version_id: str | None  # sha256 of the weights (None: card no longer present)
    title: str
    trained_at: str | None
    data: dict = field(default_factory=dict)
    code: dict = field(default_factory=dict)
    command: str | None = None
    missing: tuple[str, ...] = ()
    card_present: bool = True

    @property
    def short_id(self) -> str:
        return (self.version_id or "")[:12] or "unknown"

    def to_json(self) -> dict:
        return {
            "model": self.model_name,
            "kind": self.kind,
            "version": self.version,
            "version_id": self.version_id,
            "title": self.title,
            "trained_at": self.trained_at,
            "data": self.data,
            "code": self.code,
            "command": self.command,
            "missing": list(self.missing),
            "card_present": self.card_present,
        }


def _missing(data: dict, code: dict, command: str | None, trained_at: str | None) -> tuple:
    checks = {
        "data source": data.get("source"),
        "data fingerprint": data.get("fingerprint") or data.get("dataset_sha256"),
        "cohort": data.get("cohort"),
        "rows": data.get("rows"),
        "date": trained_at,
        "code version": code.get("git_commit") or code.get("oncolens_version"),
        "command": command,
    }
    return tuple(k for k, v in checks.items() if v in (None, "", {}, [], "unknown"))


def spec_sha256(spec: dict) -> str:
    """sha256 of a canonical JSON specification: the id of data generated from it (seeded phantoms)."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def imaging_version(card: dict) -> ModelVersion:
    """An imaging card's version and lineage: phantoms regenerated from seeds, so the data's hash
    is that of their specification (generator, seeds, counts) at the recorded commit."""
    lineage = card.get("lineage") or {}
    training, evaluation = card.get("training_data") or {}, card.get("evaluation_data") or {}
    guard = card.get("input_guard") or {}
    spec = {"training": training, "evaluation": evaluation, "guard": guard.get("fit")}
    rows = {
        k: v
        for k, v in {
            "train": training.get("n_train"),
            "validation": training.get("n_validation"),
            "test": evaluation.get("n_test"),
        }.items()
        if v is not None
    }
    data = {
        "source": training.get("source"),
        "dataset_sha256": spec_sha256(spec) if training else None,
        "cohort": (
            f"synthetic phantoms: training seed {training.get('seed')}, test seed "
            f"{evaluation.get('seed')} (never used in training or calibration)"
            if training
            else None
        ),
        "rows": rows or None,
        "validation": evaluation.get("source"),
    }
    code = {
        "git_commit": lineage.get("git_commit"),
        "oncolens_version": lineage.get("oncolens_version"),
        "torch_version": (card.get("training") or {}).get("torch_version"),
    }
    command = (card.get("training") or {}).get("command")
    trained_at = lineage.get("trained_at")
    return ModelVersion(
        str(card.get("name")),
        "imaging",
        str(card.get("version")),
        (card.get("weights") or {}).get("sha256"),
        str(card.get("title") or card.get("name")),
        trained_at,
        data,
        code,
        command,
        _missing(data, code, command, trained_at),
    )


def volume_version(entry: dict) -> ModelVersion:
    """A 3D model bundle's version (``models.volumes.cards.bundle_cards``' entry, JSON only).

    Its version is the bundle's ``metadata.json`` version (what every 3D read names) and its id the
    sha256 its weights are pinned to: the built-in bundle's card (``weights.sha256``), a registered
    one's registration (``oncolens.json``, written by ``oncolens models add``); every load verifies
    the file against it, so a sign-off binds to the weights that read, as for the 2D models. A
    bundle whose JSON cannot be read has no id (listed, never signed off: ``error`` in ``data``).
    """
    meta, card = entry.get("metadata") or {}, entry.get("card") or {}
    registration = entry.get("registration") or {}
    builtin = bool(entry.get("builtin"))
    sha = (card.get("weights") or {}).get("sha256") if builtin else registration.get("sha256")
    card_data = card.get("data") or {}
    rows = {
        k: card_data.get(f"{k}_volumes")
        for k in ("train", "guard", "test")
        if card_data.get(f"{k}_volumes") is not None
    }
    data = {
        "source": card_data.get("generator")
        or (
            "registered bundle"
            + (f" from {registration['source']}" if registration.get("source") else "")
        ),
        "dataset_sha256": spec_sha256({"data": card_data, "seed": card.get("seed")})
        if card_data
        else None,
        "cohort": f"synthetic volumes, seed {card.get('seed')}" if card_data else None,
        "rows": rows or None,
        "validation": "held-out volumes (the bundle's card)" if card_data else None,
    }
    if entry.get("error"):
        data["error"] = str(entry["error"])
    code = {
        "oncolens_version": None,
        "monai_version": meta.get("monai_version"),
        "torch_version": meta.get("pytorch_version"),
    }
    command = card.get("trained") if isinstance(card.get("trained"), str) else None
    trained_at = registration.get("registered_at") if not builtin else None
    return ModelVersion(
        str(entry.get("name")),
        "volume",
        str(meta.get("version", "0")),
        sha if isinstance(sha, str) and VERSION_HEX.fullmatch(sha) else None,
        str(meta.get("name") or entry.get("name")),
        trained_at,
        data,
        code,
        command,
        _missing(data, code, command, trained_at),
    )


def treatment_versions(card: dict) -> list[ModelVersion]:
    """The clinic model's version, and the forecast's (its survival curves come from the same
    weights; the tumour-size part is fitted per patient and has no weights of its own)."""
    lineage = card.get("lineage") or {}
    training = card.get("training") or {}
    data = {
        "source": training.get("store") and f"store {training.get('store')}",
        "fingerprint": lineage.get("store_fingerprint"),
        "dataset_sha256": lineage.get("dataset_sha256"),
        "cohort": lineage.get("cohort") or training.get("source"),
        "rows": lineage.get("rows")
        or {"patients": training.get("patients"), "events": training.get("events")},
        "validation": (
            f"{((card.get('metrics') or {}).get('cross_validation') or {}).get('folds')}-fold "
            "cross-validation on the same patients"
        ),
    }
    code = {
        "git_commit": lineage.get("git_commit"),
        "oncolens_version": lineage.get("oncolens_version"),
        "xgboost_version": (card.get("weights") or {}).get("xgboost_version"),
    }
    command = lineage.get("command")
    trained_at = card.get("created_at")
    sha = (card.get("weights") or {}).get("sha256")
    missing = _missing(data, code, command, trained_at)
    version = str(card.get("version"))
    return [
        ModelVersion(
            "treatment",
            "treatment",
            version,
            sha,
            "Treatment outcome model (this clinic)",
            trained_at,
            data,
            code,
            command,
            missing,
        ),
        ModelVersion(
            "forecast",
            "forecast",
            version,
            sha,
            "Progression forecast (survival from the treatment model; tumour-size fits per patient)",
            trained_at,
            data,
            code,
            command,
            missing,
        ),
    ]


def named_in_trail(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per model and version the trail names: predictions shown or stored, first and last (UTC)."""
    return con.execute(
        "SELECT model_name, model_version, "
        "count(*) FILTER (WHERE list_contains(?::VARCHAR[], action)) AS predictions, "
        "min(occurred_at) AS first_seen, max(occurred_at) AS last_seen "
        "FROM audit_event WHERE model_name IS NOT NULL AND model_version IS NOT NULL "
        "AND action NOT IN ('model_approved', 'model_rejected') "
        "GROUP BY ALL ORDER BY model_name, model_version",
        [list(PREDICTION_ACTIONS)],
    ).df()


def registry(con: duckdb.DuckDBPyConnection, current: list[ModelVersion]) -> list[ModelVersion]:
    """The versions whose cards are present, then every other version the audit trail names."""
    known = {(v.model_name, v.version) for v in current}
    others = []
    for row in named_in_trail(con).itertuples(index=False):
        key = (str(row.model_name), str(row.model_version))
        if key in known:
            continue
        known.add(key)
        kind = key[0] if key[0] in ("treatment", "forecast") else "imaging"
        others.append(
            ModelVersion(
                key[0],
                kind,
                key[1],
                None,
                key[0],
                None,
                missing=LINEAGE_FIELDS,
                card_present=False,
            )
        )
    return [*current, *others]


def _rows_text(rows: object) -> str:
    """``{"train": 3000, "test": 900}`` as ``train 3000, test 900`` (lists such as exclusions left out)."""
    if not isinstance(rows, dict) or not rows:
        return "not recorded"
    return ", ".join(f"{k} {v}" for k, v in rows.items() if isinstance(v, (int, float)))


def registry_frame(versions: list[ModelVersion], usage: pd.DataFrame) -> pd.DataFrame:
    """One row per version for a table: name, version, id, trained, data, rows, code, predictions."""
    counts = {
        (str(r.model_name), str(r.model_version)): int(r.predictions)
        for r in usage.itertuples(index=False)
    }
    rows = []
    for v in versions:
        rows.append(
            {
                "model": v.model_name,
                "version": v.version,
                "version id (sha256 of weights)": v.short_id,
                "trained": v.trained_at or "not recorded",
                "data": v.data.get("fingerprint")
                or (
                    f"sha256 {v.data['dataset_sha256'][:12]}"
                    if v.data.get("dataset_sha256")
                    else None
                )
                or "not recorded",
                "rows": _rows_text(v.data.get("rows")),
                "code": (v.code.get("git_commit") or "")[:12]
                or v.code.get("oncolens_version")
                or "not recorded",
                "predictions in trail": counts.get((v.model_name, v.version), 0),
                "card": "present" if v.card_present else "no longer present",
            }
        )
    return pd.DataFrame(rows)
