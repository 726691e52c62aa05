"""What OncoLens is, the demo accounts, and where each role starts: the sign-in page and Home say it once.

Why one module: the signed-out page (``auth``'s sign-in form) and the signed-in
Home page must describe the product, its limits and the roles in the same
words. The role guide (``START``) lists, per role, the pages to open first in
the order a new user needs them; Home turns it into ``st.page_link`` buttons,
the sign-in page into one line per demo account.

Demo passwords are shown only while they still work (``users.demo_accounts_in_use``):
a store whose demo accounts were removed or re-passworded shows none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

WHAT_IT_IS = (
    "OncoLens puts one patient's imaging, AI reads with their explanations, history, progression forecast and "
    "treatment options on one screen; ranks the care team's worklist by forecast risk; builds research "
    "cohorts with Kaplan–Meier curves and exports; and keeps the audit trail of what the system showed to "
    "whom, for the ethics board. Everything runs on this machine from one DuckDB file."
)
NOT_A_DEVICE = (
    "**Research and decision support, not a medical device.** OncoLens is not certified for diagnosis or "
    "treatment decisions. Every output is advice for a qualified clinician, who decides. The demo clinic is "
    "simulated: no real patient is shown."
)


@dataclass(frozen=True)
class Start:
    """One step of a role's start: the page (file stem in ``app_pages/``), a button label, what it is for."""

    page: str
    label: str
    what: str
    icon: str


ROLE_NAMES = {
    "oncologist": "oncologist",
    "care_team": "care team",
    "ethics_board": "ethics board",
    "admin": "administrator",
}
START: dict[str, tuple[Start, ...]] = {
    "oncologist": (
        Start(
            "patient",
            "Open a patient",
            "find her by id or MRN in the sidebar: record, timeline and forecast, "
            "treatment options with their SHAP reasons",
            ":material/person:",
        ),
        Start(
            "imaging",
            "Read an image",
            "the AI read, lesion size (RECIST) and saliency map of a study, an "
            "upload or a PACS study",
            ":material/radiology:",
        ),
        Start(
            "worklist",
            "See who needs review",
            "patients ranked by forecast risk over the next six months",
            ":material/checklist:",
        ),
        Start(
            "cohorts",
            "Build a cohort",
            "filters, Kaplan–Meier curves, Table 1, CSV / Parquet export",
            ":material/groups:",
        ),
    ),
    "care_team": (
        Start(
            "worklist",
            "Review the worklist",
            "patients ranked by forecast risk over the next six months; "
            "select a row to open her record",
            ":material/checklist:",
        ),
        Start(
            "patient",
            "Open a patient",
            "record, timeline and forecasts (treatment recommendations are shown to oncologists)",
            ":material/person:",
        ),
    ),
    "ethics_board": (
        Start(
            "governance",
            "Review the models",
            "model cards, subgroup audits, calibration, saliency sanity "
            "checks, the audit trail and accept / override rates",
            ":material/policy:",
        ),
        Start(
            "cohorts",
            "Look at the clinic",
            "cohort curves and the treatment model across the clinic (patient ids pseudonymised)",
            ":material/groups:",
        ),
    ),
    "admin": (
        Start(
            "governance",
            "Check the audit trail",
            "who saw what, exports, and the data provenance; "
            "`oncolens audit verify` checks the hash chain",
            ":material/policy:",
        ),
        Start(
            "cohorts",
            "Look at the clinic",
            "cohort curves and exports (patient ids pseudonymised)",
            ":material/groups:",
        ),
    ),
}


# One short line per role for the sign-in page's table (fits one row at 1366 px).
FIRST_STOP = {
    "oncologist": "Patient: record, images, treatment options",
    "care_team": "Worklist: patients ranked by forecast risk",
    "ethics_board": "Governance: model cards, subgroup audits, audit trail",
    "admin": "Governance: audit trail and data provenance",
}


def first_stop(role: str) -> str:
    """One line: where ``role`` starts, e.g. "Worklist: patients ranked by forecast risk"."""
    return FIRST_STOP[role]


def render_intro() -> None:
    """The paragraph on what OncoLens is, and what it is not."""
    st.markdown(WHAT_IT_IS)
    st.warning(NOT_A_DEVICE, icon=":material/info:")


def render_accounts(accounts: list[tuple[str, str, str]]) -> None:
    """The sign-in page's guide: the demo accounts still in use (with their start), else the roles' starts."""
    st.markdown("#### Where to start")
    if accounts:
        lines = ["| username | password | role | starts on |", "| --- | --- | --- | --- |"]
        lines += [
            f"| `{name}` | `{password}` | {ROLE_NAMES[role]} | {first_stop(role)} |"
            for name, role, password in accounts
        ]
        st.markdown("\n".join(lines))
        st.caption(
            "Demo accounts with published passwords (README). Remove them "
            "(`oncolens users remove NAME`) before this store holds real patients."
        )
    else:
        lines = ["| role | starts on |", "| --- | --- |"]
        lines += [f"| {ROLE_NAMES[role]} | {first_stop(role)} |" for role in START]
        st.markdown("\n".join(lines))
        st.caption("Ask your administrator for an account (`oncolens users add NAME --role ROLE`).")


def render_start(
    role: str, may_open: Callable[[str, str], bool], example_patient: int | None = None
) -> None:
    """Home's start panel for ``role``: a link per page it starts on, with what to do there."""
    with st.container(border=True):
        st.markdown(f"#### Start here, as {ROLE_NAMES.get(role, role)}")
        steps = [s for s in START.get(role, ()) if may_open(role, s.page)]
        if not steps:
            st.info(
                "Your role opens no page beyond this one; ask an administrator to check your account."
            )
            return
        for column, step in zip(st.columns(len(steps)), steps, strict=True):
            with column:
                st.page_link(
                    f"app_pages/{step.page}.py",
                    label=f"**{step.label}**",
                    icon=step.icon,
                    help=step.what,
                )
                st.caption(step.what)
        if example_patient is not None and may_open(role, "patient"):
            st.page_link(
                "app_pages/patient.py",
                label=f"Or try an example: patient {example_patient}, who has images",
                icon=":material/arrow_forward:",
                query_params={"patient": str(example_patient)},
            )
