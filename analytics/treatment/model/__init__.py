"""The outcome model itself: learners, the boosted-tree forest, cross-validated metrics, bootstrap
refits, exact SHAP, and the model files (no pickle).

May import ``analytics.treatment.data`` and ``analytics.survival``; never the store.
"""
