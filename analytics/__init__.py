"""Patient records: the DuckDB store and everything computed from it.

May import: duckdb, pandas, numpy, the statistics libraries, and ``models`` (only
``analytics.imaging.ingest``, for the AI read of an ingested image). Never imports ``dashboard``
or ``streamlit``.
"""
