"""A model version's life after training: lineage, approvals, drift.

``lineage``: which model versions exist (the committed imaging cards, the clinic's treatment and
forecast model, and every version the audit trail names) and what each was trained and validated
on (data fingerprint or hash, cohort, row counts, date), by which code and command.
``approvals``: the ethics board approves or rejects a version with a comment, as a chained audit
event; the admin's setting that withholds the output of versions not approved.
``drift`` and ``drift_data``: the inputs each model sees (image statistics and the input guard's
score; patient covariates) and, where outcomes accrue, calibration, per time window against the
validation reference, with alerts that name their test and threshold.
``measurements``: the SQL condition every reader of ``measurement`` adds, so that where approval is
required the AI measurements of weights not approved are read nowhere (schema version 16 names them).
``tables``: the schema-version-12 statements (``analytics.store.migrations`` runs them).

May import ``analytics.store`` and ``analytics.governance``; never ``models`` (the callers pass
cards and reference samples as plain values).
"""
