"""What the project knows about one model, gathered once: the evidence every checklist item is answered from.

Why one gathering step: an answer must name its source and must turn "missing" when the source is
absent, so answers read only this object (a card, the store's facts, saved validation runs, code
versions), never the world. A test removes a field from a card copy and sees its item turn missing.

Sources:

- ``card``: the model card as JSON (imaging: ``models/weights/<name>.json``; a 3D model: its bundle's
  ``docs/card.json`` with ``docs/saliency.json`` as ``saliency`` when measured on its weights, and its
  ``configs/metadata.json`` as ``bundle``; treatment: the clinic
  model's card beside the store; forecast: none exists yet, so it is empty and the forecast reads the
  treatment card it draws its survival curves from as ``parent_card``);
- ``store``: facts read from the DuckDB store with parameterised SQL (``store_facts``);
- ``validation``: validation runs saved as JSON in ``<store>_models/validation/<target>.json``
  (the output of ``oncolens validate TARGET --json``);
- ``code``: the OncoLens version and the versions of the libraries the model runs on.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb

from analytics import store
from analytics.governance import quality

IMAGING = "imaging"
PREDICTION = "prediction"
VOLUME = "volume"  # a 3D model (a MONAI bundle): its card has its own shape (docs/volumes.md)
# The models OncoLens deploys and the name their audit events carry (``audit_event.model_name``).
PREDICTION_MODELS = ("treatment", "forecast")
_ALIASES = {
    "xgboost": ("xgboost-cpu",),
    "torch": ("torch-cpu",),
}  # other wheels of the same library
# Events that name a model without using it in care: reading its dossier is not exposure to its output.
NOT_USE = ("model_dossier",)
LIBRARIES = (
    "duckdb",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-survival",
    "xgboost",
    "shap",
    "torch",
    "captum",
)


@dataclass(frozen=True)
class Evidence:
    """Everything a checklist answer may read about one model (plain JSON-like values)."""

    model: str
    kind: str  # IMAGING or PREDICTION
    card: Mapping[str, Any] = field(default_factory=dict)
    card_source: str | None = None  # where the card was read, named in answers
    parent_card: Mapping[str, Any] = field(default_factory=dict)  # forecast: the treatment card
    store: Mapping[str, Any] = field(default_factory=dict)
    store_source: str | None = None
    validation: Mapping[str, Any] = field(default_factory=dict)  # target -> saved validation JSON
    code: Mapping[str, Any] = field(default_factory=dict)
    # a 3D model's bundle files beside its card: ``metadata`` (configs/metadata.json, the input
    # contract), ``registration`` (oncolens.json of a registered bundle, {} for the built-in one)
    bundle: Mapping[str, Any] = field(default_factory=dict)


def code_versions() -> dict[str, Any]:
    """OncoLens and the libraries' installed versions (``"not installed"`` where absent), and Python."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for name in ("oncolens", *LIBRARIES):
        out[name] = "not installed"
        for dist in (name, *_ALIASES.get(name, ())):
            try:
                out[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


def saved_validations(folder: Path | None) -> dict[str, Any]:
    """Validation runs saved as ``<folder>/validation/<target>.json``; unreadable files are skipped
    with their reason under ``"_unreadable"`` (a broken file never hides the others)."""
    found: dict[str, Any] = {}
    if folder is None or not (Path(folder) / "validation").is_dir():
        return found
    for path in sorted((Path(folder) / "validation").glob("*.json")):
        try:
            text = path.read_text()
            # `oncolens validate --json` prints JSON Lines: one object per line; the first is the run
            first = next(line for line in text.splitlines() if line.strip())
            found[path.stem] = {"file": str(path), **json.loads(first)}
        except (OSError, StopIteration, json.JSONDecodeError, TypeError) as exc:
            found.setdefault("_unreadable", {})[path.name] = str(exc) or type(exc).__name__
    return found


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }


def _iso(value: object) -> str | None:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else None


def store_facts(con: duckdb.DuckDBPyConnection, model: str) -> dict[str, Any]:
    """Facts of the store about the clinic and about ``model``'s use, as plain JSON.

    Clinic: metadata, schema version, patients, diagnosis and follow-up dates, outcome events,
    first-line options, the data-quality checks' outcome. Use of the model: audit events naming it
    (by action, first and last), AI reads and refusals (imaging), decisions (treatment), the stored
    worklist and its reviews (forecast), accounts by role.
    """
    tables = _tables(con)
    facts: dict[str, Any] = {"tables": sorted(tables)}
    if "clinic_metadata" in tables:
        facts["metadata"] = dict(con.execute("SELECT key, value FROM clinic_metadata").fetchall())
    if "schema_version" in tables:
        facts["schema_version"] = store.one_row(
            con.execute("SELECT max(version) FROM schema_version")
        )[0]
    if "person" in tables:
        facts["patients"] = store.one_row(con.execute("SELECT count(*) FROM person"))[0]
    if "condition_occurrence" in tables:
        first, last, n = store.one_row(
            con.execute(
                "SELECT min(diagnosis_date), max(diagnosis_date), count(DISTINCT person_id) FROM condition_occurrence"
            )
        )
        facts["diagnoses"] = {"first": _iso(first), "last": _iso(last), "patients": n}
    if "observation_period" in tables:
        start, end, median_days = store.one_row(
            con.execute(
                "SELECT min(start_date), max(end_date), median(end_date - start_date) FROM observation_period"
            )
        )
        ended = dict(
            con.execute("SELECT end_reason, count(*) FROM observation_period GROUP BY 1").fetchall()
        )
        facts["follow_up"] = {
            "start": _iso(start),
            "end": _iso(end),
            "median_days": None if median_days is None else float(median_days),
            "ended": ended,
        }
    if "outcome_event" in tables:
        facts["outcome_events"] = dict(
            con.execute(
                "SELECT event_type, count(*) FROM outcome_event GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
    if "cohort_base" in tables:
        cols = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'cohort_base'"
            ).fetchall()
        }
        if "first_line_regimen" in cols:
            facts["first_line"] = dict(
                con.execute(
                    "SELECT coalesce(first_line_regimen, 'none'), count(*) FROM cohort_base GROUP BY 1 ORDER BY 1"
                ).fetchall()
            )
    if (
        "cohort_base_state" in tables
    ):  # what the derived cohort was built from (row counts per source table)
        row = con.execute(
            "SELECT source_fingerprint FROM cohort_base_state WHERE id = 1"
        ).fetchone()
        facts["data_fingerprint"] = None if row is None else row[0]
    facts["quality"] = _quality(con)
    facts["use"] = _use(con, tables, model)
    if "app_user" in tables:
        facts["accounts_by_role"] = dict(
            con.execute("SELECT role, count(*) FROM app_user GROUP BY 1 ORDER BY 1").fetchall()
        )
    return facts


def _quality(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    try:
        results = quality.run_checks(con, sample=0)
    except duckdb.Error as exc:  # a store altered by hand: the item says so instead of failing
        return {"error": str(exc).splitlines()[0]}
    return {
        "checks": len(results),
        "passed": sum(r.passed is True for r in results),
        "failed": [r.name for r in results if r.passed is False],
        "not_run": [r.name for r in results if r.passed is None],
    }


def _use(con: duckdb.DuckDBPyConnection, tables: set[str], model: str) -> dict[str, Any]:
    """How the deployed model was used, from the store: audit events, reads, refusals, decisions."""
    use: dict[str, Any] = {}
    if "audit_event" in tables:
        rows = con.execute(
            "SELECT action, count(*), count(DISTINCT actor), min(occurred_at), max(occurred_at) "
            "FROM audit_event WHERE model_name = ? AND NOT list_contains(?::VARCHAR[], action) "
            "GROUP BY 1 ORDER BY 2 DESC, 1",
            [model, list(NOT_USE)],
        ).fetchall()
        use["audit"] = {
            "events": sum(r[1] for r in rows),
            "by_action": {r[0]: r[1] for r in rows},
            "users": store.one_row(
                con.execute(
                    "SELECT count(DISTINCT actor) FROM audit_event WHERE model_name = ? "
                    "AND NOT list_contains(?::VARCHAR[], action)",
                    [model, list(NOT_USE)],
                )
            )[0],
            "dossiers": store.one_row(
                con.execute(
                    "SELECT count(*) FROM audit_event WHERE model_name = ? AND action = 'model_dossier'",
                    [model],
                )
            )[0],
            "first": _iso(min((r[3] for r in rows), default=None)),
            "last": _iso(max((r[4] for r in rows), default=None)),
            "versions": [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT model_version FROM audit_event WHERE model_name = ? "
                    "AND model_version IS NOT NULL AND NOT list_contains(?::VARCHAR[], action) ORDER BY 1",
                    [model, list(NOT_USE)],
                ).fetchall()
            ],
        }
    if "ai_finding" in tables:
        use["reads"] = store.one_row(
            con.execute("SELECT count(*) FROM ai_finding WHERE model_name = ?", [model])
        )[0]
    if "ai_volume_read" in tables:  # 3D reads: one row per series and model, a refusal too
        reads, refused = store.one_row(
            con.execute(
                "SELECT count(*), count(*) FILTER (WHERE refused IS NOT NULL) FROM ai_volume_read "
                "WHERE model_name = ?",
                [model],
            )
        )
        use["volume_reads"], use["volume_refusals"] = reads, refused
    if "ai_refusal" in tables:
        use["refusals"] = store.one_row(
            con.execute("SELECT count(*) FROM ai_refusal WHERE model_name = ?", [model])
        )[0]
    if model == "treatment" and "treatment_decision" in tables:
        n, accepted, overridden, none = store.one_row(
            con.execute(
                "SELECT count(*), count(*) FILTER (WHERE accepted), "
                "count(*) FILTER (WHERE NOT accepted AND recommended IS NOT NULL), "
                "count(*) FILTER (WHERE recommended IS NULL) FROM treatment_decision"
            )
        )
        use["decisions"] = {
            "decisions": n,
            "accepted": accepted,
            "overridden": overridden,
            "no_recommendation": none,
        }
    if model == "forecast" and "worklist_state" in tables:
        row = con.execute(
            "SELECT model_version, method_version, as_of, entries, computed_at FROM worklist_state LIMIT 1"
        ).fetchone()
        if row is not None:
            use["worklist"] = {
                "outcome_model_version": row[0],
                "method_version": row[1],
                "as_of": _iso(row[2]),
                "entries": row[3],
                "computed_at": _iso(row[4]),
            }
        if "worklist_review" in tables:
            use["worklist_reviews"] = store.one_row(
                con.execute("SELECT count(*) FROM worklist_review")
            )[0]
    return use
