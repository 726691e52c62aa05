"""The store's errors: each message is meant for the user (pages show it, the CLI prints it)."""

from __future__ import annotations


class StoreError(Exception):
    """A store that cannot be opened or used; the message is meant for the user."""


class StoreBusyError(StoreError):
    """Another process held the database file for longer than we were willing to wait."""


class NotADatabaseError(StoreError):
    """The file exists but is not a DuckDB database (or is damaged)."""


class MissingDatabaseError(StoreError):
    """No database file at the given path."""
