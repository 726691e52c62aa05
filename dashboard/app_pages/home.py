"""Home: what OncoLens is, what it is not, where the signed-in role starts, and whether the store is usable."""

from __future__ import annotations

import streamlit as st

from dashboard import resources
from dashboard.session import auth, landing

session = auth.require_page("home")
st.title("OncoLens")
landing.render_intro()

status = resources.store_status()
example = None
if status.ok and status.patients and auth.may_open(session.role, "patient"):
    recent = resources.recent_images(status.ref, 1)
    example = None if recent.empty else int(recent["person_id"].iloc[0])
landing.render_start(session.role, auth.may_open, example_patient=example)

st.subheader("Store")
if not status.ok:
    resources.show_store_problem(status)
else:
    a, b, c, d = st.columns(4)
    a.metric("Patients", f"{status.patients:,}")
    b.metric("Data cut-off", status.metadata_value("data_cutoff"))
    c.metric("Clinic", status.metadata_value("kind"))
    d.metric("Schema version", status.schema_version)
    st.caption(f"Database: `{status.path}`")
    if not status.patients:
        st.info(
            f"This store holds no patients yet: import records with `oncolens import FILE --db {status.path}` "
            "(CSV, Parquet, FHIR), or build the demo clinic with `oncolens demo --db PATH --force`."
        )
