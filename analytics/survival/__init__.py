"""Survival statistics written once: Kaplan-Meier, log-rank, Cox, pseudo-observations, and the
shared constants (days per year, the 5-year horizon, z-values).

- ``constants``: DAYS_PER_YEAR, HORIZON_5Y_DAYS, Z_95;
- ``kaplan_meier``: the one Kaplan-Meier (counts, product-limit, Greenwood, log(-log) band,
  evaluation at given times, median), from one row per patient or from aggregated counts;
- ``logrank``: the multivariate log-rank test from per-group counts;
- ``cox``: Cox model of a group alone (Efron ties) from the same counts;
- ``pseudo_values``: jackknife pseudo-observations of the Kaplan-Meier curve.

Imports nothing else of OncoLens (numpy, pandas, scipy only; an import-linter contract in
pyproject.toml keeps it so), so every part of the app can use it and lifelines stays an
independent reference in the tests.
"""
