"""Governance of what the system does: the hash-chained audit trail, accounts and roles, the
store's secret and pseudonyms, subgroup audits, and what the ethics board reads.

May import ``analytics.store`` (and, for the treatment model's subgroup audit, ``analytics.treatment``).
"""
