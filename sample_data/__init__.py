"""The demo clinic: a simulated cohort written into a new store, with DICOM studies whose lesions
match the store.

May import ``analytics`` and ``models``; only the CLI, tests and benchmarks import it.
"""
