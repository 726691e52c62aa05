"""Treatment personalisation: survival data per option, the clinic's outcome model, recommendations,
SHAP reasons, similar patients, decisions, policy checks and validation reports.

May import ``analytics.store``, ``analytics.survival``, ``analytics.cohorts`` and, for the lineage a
training writes into its card, ``analytics.governance.lifecycle.provenance``.
"""
