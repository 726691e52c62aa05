"""Saved cohorts and the cohort's patient list on the Cohorts page ("Build a cohort" tab).

Why a panel of its own: these are the parts of the tab that write (save, delete, audit events)
and that show patients one by one; the builder (``cohort``) stays about conditions and statistics.

- A link ``/cohorts?cohort=ID`` opens saved cohort ID: its conditions and grouping replace the
  builder's, once per session and link (editing afterwards is not undone by the next rerun), and
  the opening is an audit event (``cohort_opened``). Roles are checked by the page itself
  (``auth.require_page``); a definition holds no patient data, and the patients it selects are
  shown to each role as that role may see them.
- Saving stores the definition (not the patients) with the author and the data cut-off
  (``analytics.cohorts.saved``); only the author or an admin deletes. A store not yet migrated
  says so instead of failing.
- The patient list: ids and MRN for roles that treat patients, pseudonyms and diagnosis months
  for the others (``analytics.cohorts.members`` leaves the rest out of the query); shown behind a
  toggle, and each view is an audit event (``cohort_patients_viewed``).
"""

from __future__ import annotations

import streamlit as st

from analytics import store
from analytics.cohorts import saved
from analytics.cohorts.definition import CohortDefinition
from analytics.cohorts.fields import CohortError
from dashboard import resources
from dashboard.session import auth, trail

LOADED_KEY = "oncolens.cohort.loaded"  # dict: the saved cohort opened or saved in this session
NAME_KEY = "cohort_name"


def _loaded(cohort: saved.SavedCohort, via: str) -> dict:
    return {
        "via": via,  # "link" (opened) or "save" (saved in this session)
        "id": str(cohort.cohort_id),
        "definition": cohort.definition.canonical(),
        "name": cohort.name,
        "author": cohort.author,
        "created": cohort.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        "data_cutoff": cohort.data_cutoff,
    }


def link_of(cohort_id: str | int) -> str:
    """The shareable address of a saved cohort, relative to the app's root."""
    return f"/cohorts?cohort={int(cohort_id)}"


def open_from_link(ref: resources.StoreRef, groups_key: str, group_by_key: str, none: str) -> None:
    """Load the saved cohort named by ``?cohort=ID`` into the builder (once per session and link).

    The opening is audited with ``trail.shown``: once per session, and tried again on the next rerun
    when the store could not be written just then (so an opening is never left out).
    """
    link = st.query_params.get("cohort")
    if not link:
        return
    loaded = st.session_state.get(LOADED_KEY)
    if not (loaded and loaded["id"] == str(link)):
        try:
            cohort = resources.saved_cohort(ref, str(link))
        except CohortError as exc:
            st.warning(
                f"The link's saved cohort cannot be opened: {exc}.", icon=":material/link_off:"
            )
            return
        st.session_state[groups_key] = cohort.definition.texts()
        st.session_state[group_by_key] = cohort.definition.group_by or none
        st.session_state[NAME_KEY] = cohort.name
        loaded = st.session_state[LOADED_KEY] = _loaded(cohort, via="link")
    if loaded["via"] == "link":  # not the cohort this user has just saved
        trail.shown(
            ref.path,
            "cohort_opened",
            details={"cohort_id": int(loaded["id"]), "name": loaded["name"], "via": "link"},
        )


def loaded_id(definition: CohortDefinition) -> int | None:
    """The saved cohort on screen, when the builder still holds exactly its definition."""
    loaded = st.session_state.get(LOADED_KEY)
    if loaded and loaded["definition"] == definition.canonical():
        return int(loaded["id"])
    return None


def loaded_banner(definition: CohortDefinition) -> None:
    """Which saved cohort this is, who saved it, at which data cut-off, and its link."""
    loaded = st.session_state.get(LOADED_KEY)
    if not loaded:
        return
    if loaded_id(definition) is None:
        st.caption(
            f"Changed since saved cohort {loaded['id']} ({loaded['name']}) was opened; "
            "save it under a name to keep the change."
        )
        return
    now = resources.store_status().metadata_value("data_cutoff", "not recorded")
    then = loaded["data_cutoff"] or "not recorded"
    moved = "" if then == now else f" The data have changed since: the cut-off is now {now}."
    st.info(
        f"Saved cohort {loaded['id']}, **{loaded['name']}**, saved by {loaded['author']} on "
        f"{loaded['created']} with data cut-off {then}.{moved} Link to share: "
        f"`{link_of(loaded['id'])}` (opens for any role with the Cohorts page; patients are shown "
        "as each role may see them).",
        icon=":material/bookmark:",
    )


def saved_list(ref: resources.StoreRef) -> None:
    """The saved cohorts with their links; delete for the author or an admin."""
    with st.expander("Saved cohorts", expanded=bool(st.query_params.get("cohort"))):
        try:
            cohorts = resources.saved_cohorts(ref)
        except saved.SavedCohortsUnavailable as exc:
            st.info(f"{str(exc)[:1].upper()}{str(exc)[1:]}.", icon=":material/upgrade:")
            return
        if not cohorts:
            st.caption("No saved cohorts yet: build one below and save it under a name.")
            return
        frame = saved.saved_frame(cohorts)
        frame.insert(1, "link", [link_of(i) for i in frame["cohort_id"]])
        st.dataframe(
            frame,
            hide_index=True,
            # the short facts first: the definition is long and may be cut (its tooltip shows it all)
            column_order=(
                "cohort_id",
                "link",
                "name",
                "author",
                "created_at",
                "data_cutoff",
                "definition",
            ),
            column_config={
                "cohort_id": st.column_config.NumberColumn("No.", format="%d"),
                "link": st.column_config.LinkColumn("Open", display_text="open"),
                "name": "Name",
                "definition": st.column_config.TextColumn("Definition"),
                "author": "Saved by",
                "created_at": st.column_config.DatetimeColumn(
                    "Saved (UTC)", format="YYYY-MM-DD HH:mm"
                ),
                "data_cutoff": "Data cut-off",
            },
        )
        _delete(ref, cohorts)


def _delete(ref: resources.StoreRef, cohorts: list[saved.SavedCohort]) -> None:
    username, role = auth.actor()
    mine = {c.cohort_id: c for c in cohorts if saved.may_delete(c, username, role)}
    if not mine:
        st.caption("Only a cohort's author or an admin may delete it.")
        return
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    chosen = left.selectbox(
        "Delete a saved cohort" + (" (as admin: any)" if role == saved.ADMIN_ROLE else " (yours)"),
        list(mine),
        format_func=lambda i: f"{i} · {mine[i].name}",
        key="cohort_delete_choice",
    )
    if not right.button("Delete", key="cohort_delete"):
        return
    try:
        saved.delete_saved(
            ref.path, int(chosen), actor=username, role=role, wait_s=resources.READ_WAIT_S
        )
    except CohortError as exc:
        st.error(str(exc))
        return
    except store.StoreError as exc:
        st.error(f"The cohort could not be deleted right now: {exc}")
        return
    loaded = st.session_state.get(LOADED_KEY)
    if loaded and loaded["id"] == str(chosen):
        st.session_state.pop(LOADED_KEY)
        st.query_params.pop("cohort", None)
    st.rerun()


def save_form(ref: resources.StoreRef, definition: CohortDefinition, name: str) -> None:
    """ "Save cohort": the definition under ``name``, audited; then the link that reopens it."""
    if not st.button(
        "Save cohort",
        key="cohort_save",
        help="Stores the definition (the conditions and grouping, not the patients) under the name "
        "above, with you as author and today's data cut-off. Anyone with the Cohorts page can "
        "reopen it by its link.",
    ):
        return
    username, role = auth.actor()
    try:
        cohort = saved.save_cohort(
            ref.path, name, definition, author=username, role=role, wait_s=resources.READ_WAIT_S
        )
    except CohortError as exc:
        st.error(str(exc))
        return
    except store.StoreError as exc:
        st.error(f"The cohort could not be saved right now: {exc}")
        return
    st.session_state[LOADED_KEY] = _loaded(cohort, via="save")
    st.query_params["cohort"] = str(cohort.cohort_id)
    st.rerun()


def patient_list(ref: resources.StoreRef, definition: CohortDefinition) -> None:
    """The cohort's patients as the signed-in role may see them; each view is audited."""
    identified = auth.sees_patient_ids(auth.actor()[1])
    st.markdown("**Patients in the cohort**")
    if not st.toggle(
        "Show the patient list (the view is recorded in the audit trail)", key="cohort_list"
    ):
        st.caption(
            "Store ids and MRN for clinicians; pseudonyms and diagnosis months for other roles."
            if identified
            else "Pseudonyms and diagnosis months only: no names, MRN or exact dates."
        )
        return
    try:
        members = resources.cohort_members(ref, definition, identified)
    except CohortError as exc:
        st.error(str(exc))
        return
    trail.shown(
        ref.path,
        "cohort_patients_viewed",
        details={
            "groups": definition.texts(),
            "patients": members.total,
            "shown": len(members.rows),
            "identified": identified,
            "saved_cohort": loaded_id(definition),
        },
    )
    shown = (
        f"the first {len(members.rows):,} of {members.total:,} patients"
        if members.truncated
        else f"all {members.total:,} patients"
    )
    st.caption(
        (
            f"Showing {shown}, by store id: MRN to find the record; no names."
            if identified
            else f"Showing {shown}, by pseudonym (HMAC under the store's secret, the same as in "
            "exports and the audit views): no names, MRN or exact dates."
        )
        + (" The export holds every patient." if members.truncated else "")
    )
    st.dataframe(
        members.rows,
        hide_index=True,
        column_config={
            "person_id": st.column_config.NumberColumn("Id", format="%d"),
            "mrn": "MRN",
            "pseudonym": "Pseudonym",
            "diagnosis_date": st.column_config.DateColumn("Diagnosed", format="YYYY-MM-DD"),
            "diagnosis_month": "Diagnosed (month)",
            "age_years": st.column_config.NumberColumn("Age", format="%d"),
            "stage": "Stage",
            "grade": "Grade",
            "er_status": "ER",
            "pr_status": "PR",
            "her2_status": "HER2",
            "first_line_regimen": "First-line regimen",
            "rfs_days": st.column_config.NumberColumn(
                "RFS (days)", format="%d", help="Recurrence-free survival or follow-up, in days"
            ),
            "event": st.column_config.CheckboxColumn("Event", help="Recurrence or death"),
        },
    )
