"""Governance: schema version, data provenance, table sizes and the recent audit trail."""

from __future__ import annotations

import streamlit as st

from dashboard import resources

ref = resources.require_store()
st.title("Governance")
snapshot = resources.governance_snapshot(ref)
metadata = dict(zip(snapshot.metadata["key"], snapshot.metadata["value"], strict=True))

a, b, c, d = st.columns(4)
a.metric("Schema version", snapshot.schema_version)
b.metric("Data cut-off", metadata.get("data_cutoff", "unknown"))
c.metric("Clinic", metadata.get("kind", "unknown"))
d.metric("Generator version", metadata.get("generator_version", "n/a"))

left, right = st.columns(2)
with left:
    st.subheader("Data provenance")
    st.dataframe(snapshot.metadata, hide_index=True)
    st.subheader("Table row counts")
    st.dataframe(snapshot.table_counts, hide_index=True)
    st.caption(
        "Tables under `truth.` hold the simulation's ground truth (outcomes under every "
        "option). They are counted here and read only by validation code, never by a page "
        "or a model."
    )
with right:
    st.subheader("Recent audit events")
    st.caption(
        "Interim append-only trail: who opened which patient (by id, never by name), when. "
        "Hash chaining and verification come with the governance issue."
    )
    if snapshot.audit_events.empty:
        st.write("No audit events yet.")
    else:
        st.dataframe(snapshot.audit_events, hide_index=True)
