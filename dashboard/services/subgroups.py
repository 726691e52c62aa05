"""The subgroup audit's figures, shared by the Governance page and ``oncolens validate subgroups``.

No streamlit here: the page caches these results (``dashboard/resources.py``),
the CLI prints them, both from the same function, so the page shows what the
command prints. The imaging half joins ``models.training.subgroup_cases`` (fresh
phantoms and their attributes) with ``analytics.governance.subgroup_audit`` (fairlearn
``MetricFrame`` and the gaps); only ``dashboard`` may import both.
"""

from __future__ import annotations

from analytics.governance.subgroup_audit import DEFAULT_BOOTSTRAP, DEFAULT_MIN_N, audit_subgroups
from models.training.subgroup_cases import DEFAULT_N, attributes_for, imaging_audit_frame

IMAGING_NOTE = (
    "Synthetic phantoms record no age, sex, ethnicity, site or vendor; the audit uses what they record "
    "(breast density, laterality, lesion size for mammography; lesion size for brain MRI)."
)


def imaging_subgroup_report(
    model,
    *,
    n: int = DEFAULT_N,
    seed: int = 20_261_125,
    min_n: int = DEFAULT_MIN_N,
    bootstrap: int = DEFAULT_BOOTSTRAP,
) -> dict:
    """Subgroup metrics and gaps of one loaded imaging model on ``n`` fresh phantoms (seeded)."""
    frame = imaging_audit_frame(model, n, seed)
    audit = audit_subgroups(
        frame, attributes_for(model.task.name), min_n=min_n, bootstrap=bootstrap, seed=seed
    )
    return {
        "model": model.name,
        "model_version": model.version,
        "data": f"{n} fresh phantoms, seed {seed} (never used in training or calibration)",
        "positive_label": model.task.positive_label,
        "decision": f"the most likely class is '{model.task.positive_label}' (what the Imaging page shows)",
        "note": IMAGING_NOTE,
        **audit.as_dict(),
    }
