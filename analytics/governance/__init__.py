"""Governance of what the system does: the hash-chained audit trail, accounts and roles, the
store's secret and pseudonyms, subgroup audits, and what the ethics board reads.

May import ``analytics.store`` (and, for the treatment model's subgroup audit, ``analytics.treatment``).
"""

ROLES = ("oncologist", "care_team", "ethics_board", "admin")
"""The accounts' roles (``analytics.governance.users``). Here, not in ``users``, so that building
the ``oncolens`` parser (``users add --role``) imports no store, DuckDB or pandas: a second of
every command's start (issue 23)."""
