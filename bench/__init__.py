"""Benchmarks: scripts that print tables of measured figures (run with `make bench`)."""
