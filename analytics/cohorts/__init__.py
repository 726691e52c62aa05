"""Cohorts: the derived per-patient base, the filter catalogue, Table 1, the clinic overview, and the
cohort builder (groups, Kaplan-Meier, log-rank, Cox from ``analytics.survival``).

May import ``analytics.store`` and ``analytics.survival``.
"""
