"""Survival statistics written once: Kaplan-Meier, log-rank, Cox, pseudo-observations, and the
shared constants (days per year, z-values).

Imports nothing else of OncoLens: numpy, pandas, scipy only.
"""
