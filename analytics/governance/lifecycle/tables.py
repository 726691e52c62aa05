"""Schema version 12 (additive, issue 22 items 3-5): the governance settings and the inputs of AI reads.

Why beside the lifecycle code: these tables exist for it (``approvals`` reads the setting,
``drift_data`` the read inputs); ``analytics.store.migrations`` lists the statements. This module
imports nothing, so the migration imports it without a cycle.
"""

from __future__ import annotations

STAT_COLUMNS = (
    "stat_mean",
    "stat_std",
    "stat_air_fraction",
    "stat_saturated_fraction",
    "stat_edge_rows",
    "stat_edge_columns",
    "stat_texture",
    "stat_entropy",
    "stat_asymmetry",
    "stat_centre_minus_border",
)  # models.inference.guard.STAT_NAMES, prefixed: the ten statistics the input guard measures

V12_STATEMENTS = (
    # one row per setting; every change is also a chained audit event (approvals.set_require_approval)
    """CREATE TABLE IF NOT EXISTS governance_setting (
        key              VARCHAR PRIMARY KEY,
        value            VARCHAR NOT NULL,             -- JSON
        changed_by       VARCHAR NOT NULL,
        changed_at       TIMESTAMP NOT NULL            -- UTC
    )""",
    # what each AI read saw (accepted or refused): the input guard's score and the image statistics,
    # for drift monitoring (analytics.governance.lifecycle.drift_data); no pixels, no identifiers
    f"""CREATE TABLE IF NOT EXISTS ai_read_input (
        sop_instance_uid VARCHAR NOT NULL,
        person_id        BIGINT,
        model_name       VARCHAR NOT NULL,
        model_version    VARCHAR NOT NULL,
        study_date       DATE,                         -- when the image was acquired (the drift window)
        read_at          TIMESTAMP NOT NULL,
        refused          BOOLEAN NOT NULL,
        score            DOUBLE NOT NULL,              -- input guard score (1: held-out 99.9th percentile)
        feature_distance DOUBLE,
        statistics_distance DOUBLE,
        {", ".join(f"{c} DOUBLE" for c in STAT_COLUMNS)},
        PRIMARY KEY (sop_instance_uid, model_name)
    )""",
)
