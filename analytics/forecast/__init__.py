"""Progression forecasts: lesion series from the store, tumour-growth trajectories, survival per
option, one patient's forecast and the worklist's risk, and their validation.

May import ``analytics.store``, ``analytics.survival`` and ``analytics.treatment``.
"""
