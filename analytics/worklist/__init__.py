"""The care team's worklist: ranking by forecast risk, the stored ranking and its refresh, reviews.

May import ``analytics.store``, ``analytics.forecast``, ``analytics.cohorts`` and ``analytics.governance``.
"""
