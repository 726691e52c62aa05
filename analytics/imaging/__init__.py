"""Imaging in the store: DICOM ingest (through the public read of ``models``) and image queries.

The only part of ``analytics`` that imports ``models``.
"""
