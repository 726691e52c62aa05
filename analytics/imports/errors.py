"""Errors of the imports: shared by the table readers and the FHIR reader, so neither imports the other."""

from __future__ import annotations


class ImportFileError(Exception):
    """A file that cannot be imported at all (wrong type, unreadable, no known table); message for the user."""
