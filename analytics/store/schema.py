"""The store's tables: the statements of schema versions 1 to 3, 10 (saved cohorts), 13, 14 and 16, and the version this code knows.

Why one module owns the core schema: the app, the CLI and the demo generator must agree
on one set of tables and constraints. Tables follow the OMOP Common Data Model where it fits
(person, condition, exposures, measurement, observation period) plus imaging and governance
tables. The simulation's ground truth (potential outcomes under every treatment option)
lives in the separate schema ``truth``: no model, page or query outside the validation code
reads it. Later, additive versions keep their statements beside the code that fills them
(``analytics.cohorts.base``, ``analytics.store.worklist_schema``); ``migrations`` lists them all.
"""

from __future__ import annotations

SCHEMA_VERSION = 16

# Treatment options of the demo clinic: the first-line systemic regimen.
TREATMENT_OPTIONS = ("endocrine", "chemotherapy", "chemo_endocrine")

V1_STATEMENTS = (
    "CREATE SCHEMA IF NOT EXISTS truth",
    # --- who -----------------------------------------------------------------
    """CREATE TABLE person (
        person_id        BIGINT PRIMARY KEY,
        mrn              VARCHAR NOT NULL UNIQUE,      -- hospital record number (direct identifier)
        given_name       VARCHAR NOT NULL,             -- direct identifier
        family_name      VARCHAR NOT NULL,             -- direct identifier
        birth_date       DATE NOT NULL,
        sex              VARCHAR NOT NULL CHECK (sex IN ('F', 'M')),
        site             VARCHAR NOT NULL,             -- treating clinic, for subgroup audits
        menopausal_status VARCHAR NOT NULL CHECK (menopausal_status IN ('pre', 'post'))
    )""",
    """CREATE TABLE observation_period (
        person_id        BIGINT PRIMARY KEY,
        start_date       DATE NOT NULL,
        end_date         DATE NOT NULL,
        end_reason       VARCHAR NOT NULL CHECK (end_reason IN ('data_cutoff', 'lost_to_follow_up', 'death')),
        CHECK (end_date >= start_date)
    )""",
    # --- what ----------------------------------------------------------------
    """CREATE TABLE condition_occurrence (
        condition_id     BIGINT PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        condition        VARCHAR NOT NULL,             -- e.g. 'breast_cancer'
        diagnosis_date   DATE NOT NULL,
        laterality       VARCHAR NOT NULL CHECK (laterality IN ('left', 'right')),
        stage            VARCHAR NOT NULL CHECK (stage IN ('I', 'II', 'III', 'IV')),
        grade            TINYINT NOT NULL CHECK (grade BETWEEN 1 AND 3),
        tumour_size_mm   DOUBLE NOT NULL CHECK (tumour_size_mm > 0 AND tumour_size_mm < 300),
        positive_nodes   SMALLINT NOT NULL CHECK (positive_nodes >= 0),
        er_fmol          DOUBLE NOT NULL CHECK (er_fmol >= 0),   -- oestrogen receptor, fmol/mg
        pr_fmol          DOUBLE NOT NULL CHECK (pr_fmol >= 0),   -- progesterone receptor, fmol/mg
        er_positive      BOOLEAN NOT NULL,
        pr_positive      BOOLEAN NOT NULL,
        her2_positive    BOOLEAN NOT NULL
    )""",
    """CREATE TABLE treatment_exposure (
        exposure_id      BIGINT PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        exposure_type    VARCHAR NOT NULL CHECK (exposure_type IN ('drug', 'procedure')),
        treatment_class  VARCHAR NOT NULL CHECK (treatment_class IN
                           ('surgery', 'chemotherapy', 'endocrine', 'radiotherapy', 'anti_her2')),
        agent            VARCHAR NOT NULL,
        line_of_therapy  TINYINT NOT NULL CHECK (line_of_therapy >= 1),
        regimen          VARCHAR,                      -- the option this line belongs to, if any
        start_date       DATE NOT NULL,
        end_date         DATE,
        CHECK (end_date IS NULL OR end_date >= start_date),
        CHECK (regimen IS NULL OR regimen IN ('endocrine', 'chemotherapy', 'chemo_endocrine'))
    )""",
    # No PRIMARY KEY on the fact table: an ART index over tens of millions of rows
    # tripled the bulk-load time and memory (docs/architecture.md); ids are unique by
    # construction (generator, import sequence) and imports de-duplicate on natural keys.
    """CREATE TABLE measurement (
        measurement_id   BIGINT NOT NULL,
        person_id        BIGINT NOT NULL,
        measurement_date DATE NOT NULL,
        concept          VARCHAR NOT NULL,             -- 'lesion_longest_diameter', 'ca15_3', ...
        value            DOUBLE NOT NULL,
        unit             VARCHAR NOT NULL,
        source           VARCHAR NOT NULL CHECK (source IN ('clinic', 'radiology', 'ai', 'import')),
        study_uid        VARCHAR,                      -- imaging study the value was read from
        CHECK (concept <> 'lesion_longest_diameter' OR (value >= 0 AND unit = 'mm'))
    )""",
    """CREATE TABLE outcome_event (
        event_id         BIGINT PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        event_type       VARCHAR NOT NULL CHECK (event_type IN ('recurrence', 'death')),
        event_date       DATE NOT NULL,
        UNIQUE (person_id, event_type)
    )""",
    # --- imaging -------------------------------------------------------------
    """CREATE TABLE imaging_study (
        study_uid        VARCHAR PRIMARY KEY,
        person_id        BIGINT NOT NULL,
        study_date       DATE NOT NULL,
        modality         VARCHAR NOT NULL CHECK (modality IN ('MG', 'MR', 'CT', 'US', 'PT', 'OT')),
        description      VARCHAR,
        accession_number VARCHAR
    )""",
    """CREATE TABLE imaging_series (
        series_uid       VARCHAR PRIMARY KEY,
        study_uid        VARCHAR NOT NULL,
        modality         VARCHAR NOT NULL,
        body_part        VARCHAR,
        description      VARCHAR
    )""",
    """CREATE TABLE imaging_instance (
        sop_instance_uid VARCHAR PRIMARY KEY,
        series_uid       VARCHAR NOT NULL,
        file_path        VARCHAR,                      -- where the DICOM file lies, if stored locally
        rows             INTEGER CHECK (rows > 0),
        columns          INTEGER CHECK (columns > 0),
        pixel_spacing_mm DOUBLE CHECK (pixel_spacing_mm > 0)
    )""",
    """CREATE TABLE ai_finding (
        finding_id       BIGINT PRIMARY KEY,
        person_id        BIGINT,
        sop_instance_uid VARCHAR,
        model_name       VARCHAR NOT NULL,
        model_version    VARCHAR NOT NULL,
        predicted_class  VARCHAR NOT NULL,
        probability      DOUBLE NOT NULL CHECK (probability BETWEEN 0 AND 1),
        longest_diameter_mm DOUBLE CHECK (longest_diameter_mm >= 0),
        created_at       TIMESTAMP NOT NULL
    )""",
    # --- governance ----------------------------------------------------------
    "CREATE SEQUENCE audit_event_seq START 1",
    """CREATE TABLE audit_event (
        event_id         BIGINT PRIMARY KEY DEFAULT nextval('audit_event_seq'),
        occurred_at      TIMESTAMP NOT NULL,
        actor            VARCHAR NOT NULL,
        role             VARCHAR,
        action           VARCHAR NOT NULL,
        subject          VARCHAR,                      -- pseudonymous reference, never a name
        details          VARCHAR                       -- JSON text
    )""",
    """CREATE TABLE clinic_metadata (
        key              VARCHAR PRIMARY KEY,
        value            VARCHAR NOT NULL
    )""",
    # --- hidden ground truth of the simulation (read only by validation code) --
    """CREATE TABLE truth.potential_outcome (
        person_id        BIGINT NOT NULL,
        option           VARCHAR NOT NULL CHECK (option IN ('endocrine', 'chemotherapy', 'chemo_endocrine')),
        rfs_days         DOUBLE NOT NULL CHECK (rfs_days > 0),  -- recurrence-free survival had she received this option
        rfs_5y_probability DOUBLE NOT NULL CHECK (rfs_5y_probability BETWEEN 0 AND 1),
        rmst_5y_days     DOUBLE NOT NULL CHECK (rmst_5y_days >= 0),
        PRIMARY KEY (person_id, option)
    )""",
    """CREATE TABLE truth.patient_parameters (
        person_id        BIGINT PRIMARY KEY,
        assigned_option  VARCHAR NOT NULL,
        best_option      VARCHAR NOT NULL,
        linear_predictor DOUBLE NOT NULL,              -- prognostic part of the log-hazard
        tgi_growth_per_day DOUBLE NOT NULL,            -- g in f(t) = f0 (exp(-d t) + exp(g t) - 1)
        tgi_decay_per_day  DOUBLE NOT NULL             -- d under the assigned option
    )""",
)

# Version 2 (additive): what the clinician did with a treatment recommendation.
V2_STATEMENTS = (
    "CREATE SEQUENCE treatment_decision_seq START 1",
    """CREATE TABLE treatment_decision (
        decision_id      BIGINT PRIMARY KEY DEFAULT nextval('treatment_decision_seq'),
        person_id        BIGINT NOT NULL,
        model_version    VARCHAR NOT NULL,             -- the treatment model card's version
        recommended      VARCHAR,                      -- NULL: the model said "no clear difference"
        chosen           VARCHAR NOT NULL,             -- the option the clinician chose
        accepted         BOOLEAN NOT NULL,             -- chosen is the recommended option
        reason           VARCHAR,                      -- free text; required unless accepted
        actor            VARCHAR NOT NULL,
        decided_at       TIMESTAMP NOT NULL,
        shown            VARCHAR,                      -- JSON: the figures on screen when deciding
        CHECK (NOT accepted OR (recommended IS NOT NULL AND chosen = recommended)),
        CHECK (accepted OR length(trim(coalesce(reason, ''))) > 0)
    )""",
)

# Version 3 (additive): sign-in accounts and the hash-chained audit trail (governance issue).
V3_STATEMENTS = (
    # the audit trail gains what it must say (model, inputs) and its hash chain
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS model_name VARCHAR",
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS model_version VARCHAR",
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS inputs_sha256 VARCHAR",  # hash of what the model saw
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS prev_hash VARCHAR",  # hash of the event before
    "ALTER TABLE audit_event ADD COLUMN IF NOT EXISTS hash VARCHAR",  # sha256(prev_hash + row)
    # the end of the chain: catches removed last events, and a concurrent fork conflicts on its row
    """CREATE TABLE IF NOT EXISTS audit_chain_head (
        id               TINYINT PRIMARY KEY CHECK (id = 1),
        events           BIGINT NOT NULL CHECK (events >= 0),
        last_event_id    BIGINT,
        last_hash        VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS app_user (
        username         VARCHAR PRIMARY KEY,          -- lower case; staff sign-in name
        role             VARCHAR NOT NULL CHECK (role IN ('oncologist', 'care_team', 'ethics_board', 'admin')),
        password_hash    VARCHAR,                      -- argon2id PHC string; NULL: single sign-on only
        email            VARCHAR UNIQUE,               -- single sign-on identity (lower case)
        created_at       TIMESTAMP NOT NULL,
        CHECK (password_hash IS NOT NULL OR email IS NOT NULL)
    )""",
    # failed sign-ins per typed username, keyed by a keyed hash so that a password
    # typed into the username box is never stored
    """CREATE TABLE IF NOT EXISTS sign_in_throttle (
        username_key     VARCHAR PRIMARY KEY,          -- HMAC-SHA256 of the typed username
        failures         INTEGER NOT NULL CHECK (failures >= 0),
        last_failure_at  TIMESTAMP NOT NULL
    )""",
    # per-store secrets (pseudonym and throttle keys); never shown on a page
    """CREATE TABLE IF NOT EXISTS app_secret (
        name             VARCHAR PRIMARY KEY,
        value            VARCHAR NOT NULL,             -- hex
        created_at       TIMESTAMP NOT NULL
    )""",
)

# Version 7 (additive, imaging issue 18): AI reads the input guard refused. A refusal is a
# result, kept like a finding (which model, which version, how far outside, why), never a
# label: ``ai_finding`` stays the table of reads that were given.
V7_AI_REFUSAL_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS ai_refusal (
        sop_instance_uid VARCHAR NOT NULL,
        person_id        BIGINT,
        model_name       VARCHAR NOT NULL,
        model_version    VARCHAR NOT NULL,
        score            DOUBLE NOT NULL,              -- input guard score (models.inference.guard)
        threshold        DOUBLE NOT NULL,
        reason           VARCHAR NOT NULL,
        created_at       TIMESTAMP NOT NULL,
        PRIMARY KEY (sop_instance_uid, model_name)
    )""",
)

# Version 10 (additive, issue 20): saved cohorts, a named CohortDefinition (analytics.cohorts.saved).
SAVED_COHORT_NAME_MAX = 120
V10_SAVED_COHORT_STATEMENTS = (
    "CREATE SEQUENCE IF NOT EXISTS saved_cohort_id START 1",
    f"""CREATE TABLE IF NOT EXISTS saved_cohort (
        cohort_id        BIGINT PRIMARY KEY DEFAULT nextval('saved_cohort_id'),
        name             VARCHAR NOT NULL
                         CHECK (length(trim(name)) BETWEEN 1 AND {SAVED_COHORT_NAME_MAX}),
        definition       VARCHAR NOT NULL,             -- CohortDefinition.canonical() (JSON)
        author           VARCHAR NOT NULL,             -- staff username (or cli:<login>)
        author_role      VARCHAR,
        created_at       TIMESTAMP NOT NULL,           -- UTC
        data_cutoff      VARCHAR                       -- clinic_metadata.data_cutoff when saved
    )""",
)

# Version 11 (additive, governance issue 22): an admin deactivates an account instead of deleting
# it, so the audit trail's names keep resolving and the account can come back.
V11_USER_STATEMENTS = (
    "ALTER TABLE app_user ADD COLUMN IF NOT EXISTS deactivated_at TIMESTAMP",  # NULL: active
)

# Which weights made each AI read: a sign-off binds to the weights' sha256, and an imaging model
# keeps its version string when its weights change, so the version alone cannot say whether a
# stored read came from approved weights. NULL: a read stored before this column (matches no
# sign-off: "weights not recorded").
V13_AI_WEIGHTS_STATEMENTS = (
    "ALTER TABLE ai_finding ADD COLUMN IF NOT EXISTS weights_sha256 VARCHAR",
)

# Version 14 (additive, issue 21 item 4): 3D reads of series and their lesions across time points
# (analytics.imaging.volumes). One row per series and model in ``ai_volume_read`` (refusals
# included: a refused read is a result, with its input check); one row per lesion of an accepted
# read in ``ai_volume_lesion``, with its centroid in patient coordinates (LPS mm, the series' frame
# of reference) and ``track_id``, the same lesion across the patient's time points.
V14_VOLUME_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS ai_volume_read (
        series_uid       VARCHAR NOT NULL,             -- imaging_series.series_uid (de-identified)
        person_id        BIGINT NOT NULL,
        study_uid        VARCHAR NOT NULL,
        study_date       DATE NOT NULL,
        modality         VARCHAR NOT NULL,
        frame_key        VARCHAR,                      -- the frame of reference UID, de-identified
        model_name       VARCHAR NOT NULL,
        model_version    VARCHAR NOT NULL,
        weights_sha256   VARCHAR,
        label            VARCHAR CHECK (label IS NULL OR label IN ('lesion', 'no lesion')),
        probability      DOUBLE CHECK (probability IS NULL OR probability BETWEEN 0 AND 1),
        lesions          INTEGER NOT NULL CHECK (lesions >= 0),
        total_volume_ml  DOUBLE CHECK (total_volume_ml IS NULL OR total_volume_ml >= 0),
        refused          VARCHAR,                      -- the guard's reason; NULL: read given
        guard_score      DOUBLE NOT NULL,
        guard_threshold  DOUBLE NOT NULL,
        input_check      VARCHAR NOT NULL,             -- VolumeCheck.to_json(), as `predict --json`
        read_at          TIMESTAMP NOT NULL,
        CHECK ((refused IS NULL) = (label IS NOT NULL)),
        PRIMARY KEY (series_uid, model_name)
    )""",
    """CREATE TABLE IF NOT EXISTS ai_volume_lesion (
        series_uid       VARCHAR NOT NULL,
        model_name       VARCHAR NOT NULL,
        lesion_number    INTEGER NOT NULL CHECK (lesion_number >= 1),  -- 1: the read's largest
        person_id        BIGINT NOT NULL,
        study_date       DATE NOT NULL,
        track_id         INTEGER NOT NULL CHECK (track_id >= 1),       -- per patient and model
        volume_ml        DOUBLE NOT NULL CHECK (volume_ml >= 0),
        longest_axial_diameter_mm DOUBLE NOT NULL CHECK (longest_axial_diameter_mm >= 0),
        probability      DOUBLE CHECK (probability IS NULL OR probability BETWEEN 0 AND 1),
        centre_x_mm      DOUBLE NOT NULL,              -- LPS, patient coordinates
        centre_y_mm      DOUBLE NOT NULL,
        centre_z_mm      DOUBLE NOT NULL,
        link             VARCHAR NOT NULL,             -- how track_id was given (docs/volumes.md)
        PRIMARY KEY (series_uid, model_name, lesion_number)
    )""",
)

# Version 16 (additive, sign-off of AI measurements): the model, version and weights (sha256) of the
# read that wrote a ``source = 'ai'`` measurement, so that every reader can leave out the rows of
# weights the ethics board has not approved (analytics.governance.lifecycle.measurements). NULL on
# every other row, and on AI rows stored before: their read is unknown (withheld when approval is
# required; read the images again to attribute them). Columns, not a link to the read tables: a
# study can hold 2D reads of several models and 3D reads of several series, so a study_uid does
# not name the read behind its one AI value; and a filter on the row's own columns costs the
# readers of tens of millions of rows no join.
V16_AI_MEASUREMENT_STATEMENTS = (
    "ALTER TABLE measurement ADD COLUMN IF NOT EXISTS model_name VARCHAR",
    "ALTER TABLE measurement ADD COLUMN IF NOT EXISTS model_version VARCHAR",
    "ALTER TABLE measurement ADD COLUMN IF NOT EXISTS weights_sha256 VARCHAR",
)
