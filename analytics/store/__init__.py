"""The DuckDB store: connections (``connection``), the schema (``schema``) and its migrations
(``migrations``), the store's errors (``errors``).

Why one package owns the schema: the app, the CLI and the demo generator must agree
on one set of tables and constraints, and a hospital's file written by an older
version must be brought forward by the same code (``migrate``), never by hand.

The public surface is re-exported here, so callers write ``from analytics.store import
open_store``. May import ``analytics.governance.chain``, ``analytics.governance.pseudonyms`` and
``analytics.cohorts.base`` (migration data steps that take a connection); nothing else of OncoLens.
"""

from analytics.store.connection import (
    connect,
    default_db_path,
    has_table,
    one_row,
    open_store,
    table_counts,
)
from analytics.store.errors import (
    MissingDatabaseError,
    NotADatabaseError,
    StoreBusyError,
    StoreError,
)
from analytics.store.migrations import (
    MIGRATIONS,
    Migration,
    current_version,
    migrate,
    schema_version,
)
from analytics.store.schema import SCHEMA_VERSION, TREATMENT_OPTIONS

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TREATMENT_OPTIONS",
    "Migration",
    "MissingDatabaseError",
    "NotADatabaseError",
    "StoreBusyError",
    "StoreError",
    "connect",
    "current_version",
    "default_db_path",
    "migrate",
    "one_row",
    "open_store",
    "schema_version",
    "has_table",
    "table_counts",
]
