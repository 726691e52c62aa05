"""Schema version 5: the stored worklist's tables (filled by ``analytics.worklist.stored``).

A module of its own, importing nothing, because ``analytics.store`` reads these
statements for its migration and must stay cheap to import.
"""

ENTRY_TABLE = "worklist_entry"

# The schema-version-5 statements (analytics.store owns them).
TABLE_STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS {ENTRY_TABLE} (
        rank             BIGINT NOT NULL,              -- 1-based position in the whole list; rows stored in this order
        person_id        BIGINT NOT NULL,              -- derived: rewritten by worklist_store.refresh, never edited
        mrn              VARCHAR,
        site             VARCHAR,
        n_measurements   BIGINT,
        baseline_date    DATE,
        baseline_mm      DOUBLE,
        nadir_mm         DOUBLE,
        latest_date      DATE,
        latest_mm        DOUBLE,
        change_from_nadir_pct DOUBLE,
        change_from_baseline_pct DOUBLE,
        progression      BOOLEAN,
        response         BOOLEAN,
        regrowth_ratio   DOUBLE,
        p_progression_6m DOUBLE,
        p_recurrence_6m  DOUBLE,
        risk_6m          DOUBLE,
        risk_parts       VARCHAR,
        computed_at      TIMESTAMP NOT NULL            -- when this row's risk was computed
    )""",
    """CREATE TABLE IF NOT EXISTS worklist_state (
        id               TINYINT PRIMARY KEY CHECK (id = 1),
        source_fingerprint VARCHAR NOT NULL,           -- sources' row counts and largest ids at refresh
        model_version    VARCHAR NOT NULL,             -- treatment model card version, or 'none'
        method_version   INTEGER NOT NULL,
        as_of            DATE NOT NULL,                -- the forecasts' "today"
        prior            VARCHAR NOT NULL,             -- JSON: growth-inhibition prior of the last full refresh
        entries          BIGINT NOT NULL,
        computed_at      TIMESTAMP NOT NULL,           -- last refresh, full or incremental
        full_refresh_at  TIMESTAMP NOT NULL
    )""",
)


# Schema version 6: worklist reviews, append-only (analytics.worklist.review reads and writes them).
REVIEW_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS worklist_review (
        person_id   BIGINT NOT NULL,
        reviewed_at TIMESTAMP NOT NULL,     -- UTC
        reviewed_by VARCHAR NOT NULL,       -- the signed-in user
        role        VARCHAR
    )""",
)


# Schema version 7: what the worklist's buckets read (analytics.worklist.events, .buckets), and a
# review's note and assignee. Additive, and each statement safe to run twice.
BUCKET_STATEMENTS = (
    *(
        f"ALTER TABLE {ENTRY_TABLE} ADD COLUMN IF NOT EXISTS {name} {kind}"
        for name, kind in (
            ("progression_date", "DATE"),  # latest RECIST progression (line by line)
            ("n_progressions", "BIGINT"),
            ("line_start", "DATE"),  # first reading of her current line
            ("recurrence_date", "DATE"),
            ("ai_suspicious_at", "TIMESTAMP"),  # latest suspicious AI read (when the model read it)
            ("ai_label", "VARCHAR"),
            ("ai_probability", "DOUBLE"),
            ("last_imaging_date", "DATE"),
            ("cadence_days", "DOUBLE"),  # her usual imaging interval
            ("due_date", "DATE"),  # imaging overdue from this day
            ("event_at", "TIMESTAMP"),  # the latest of the three events
            ("event_kind", "VARCHAR"),  # 'progression', 'recurrence' or 'ai_read'
        )
    ),
    "ALTER TABLE worklist_review ADD COLUMN IF NOT EXISTS note VARCHAR",  # short, free text
    "ALTER TABLE worklist_review ADD COLUMN IF NOT EXISTS assignee VARCHAR",  # an account's username
)


# Schema version 15 (issue 23): the forecast's growth-inhibition prior, stored by the full worklist
# refresh (``oncolens demo``, ``oncolens worklist --refresh``) so that no page fits it (20-30 s on
# two cores). Keyed by what it was estimated from; ``analytics.worklist.stored.stored_prior`` uses
# it only while the key matches the store now (else the reader estimates it and says so).
PRIOR_TABLE = "forecast_prior"
PRIOR_STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS {PRIOR_TABLE} (
        id               TINYINT PRIMARY KEY CHECK (id = 1),
        source_fingerprint VARCHAR NOT NULL,           -- the sources it was estimated from
        as_of            DATE NOT NULL,                -- readings and lines up to this day
        method_version   INTEGER NOT NULL,             -- analytics.worklist.stored.METHOD_VERSION
        max_patients     BIGINT NOT NULL,              -- the sample size (forecast.data.PRIOR_MAX_PATIENTS)
        prior            VARCHAR NOT NULL,             -- JSON: TGIPrior.to_state()
        computed_at      TIMESTAMP NOT NULL
    )""",
)
