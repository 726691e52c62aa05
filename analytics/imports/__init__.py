"""A hospital's own records into the store: CSV and Parquet tables, FHIR R4 bundles, the rules of
episode files (episode_rows), their errors.

May import ``analytics.store``, ``analytics.cohorts.base`` and ``analytics.worklist`` (refreshes after an import).
"""
