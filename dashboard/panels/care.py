"""The Patient page's setting banner and "Course and lines of therapy" section.

Why on every patient: which models and charts apply depends on where she is in her course
(docs/clinical-settings.md). The banner says it first: setting, line or phase, since when,
from ``analytics.episodes.care_setting`` (the same answer ``oncolens recommend`` and the report
use for the treatment model's scope). The section lists the course so far, the lines of therapy
with why each ended, and, on a metastatic line, how this clinic's patients on the same line
fared (observed progression-free survival, not a model of her).

Store text (regimens, notes) is shown escaped, never as markup.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analytics.episodes import CareSetting, LineProgressionRisk
from analytics.treatment.scope import Scope
from dashboard import resources
from dashboard.figures import formats


def banner(setting: CareSetting, scope: Scope) -> None:
    """One line at the top of the page: where she is, and whether the treatment model applies."""
    icon = ":material/timeline:"
    text = f"**{formats.markdown_plain(setting.headline)}**"
    if not setting.recorded:
        text += "  \nDerived from the diagnosis and outcome events (no episodes recorded)."
    if not scope.in_scope:
        text += "  \nTreatment model: out of scope."
    if setting.metastatic or setting.recurred:
        st.warning(text, icon=icon)
    else:
        st.info(text, icon=icon)


def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{100 * p:.0f}%"


def lines_table(setting: CareSetting) -> pd.DataFrame:
    """The lines of therapy as a table a clinician reads (no empty cells shown as None)."""
    return pd.DataFrame(
        [
            {
                "line": line.number,
                "regimen": line.regimen or "not recorded",
                "started": line.start_date.isoformat(),
                "ended": line.end_date.isoformat() if line.end_date else "ongoing",
                "why it ended": (line.end_reason or "not recorded") if line.end_date else "",
                "months": round(
                    ((line.end_date or setting.as_of) - line.start_date).days / 30.44, 1
                ),
            }
            for line in setting.lines
        ]
    )


def course(ref: resources.StoreRef, setting: CareSetting) -> None:
    """The course so far, the lines of therapy, and progression on the current line."""
    st.subheader("Course and lines of therapy")
    if setting.setting == "unknown":
        st.info("No cancer diagnosis recorded: the course cannot be shown.")
        return
    episodes = resources.patient_episodes(ref, setting.person_id)
    if setting.lines:
        st.dataframe(lines_table(setting), hide_index=True)
    elif setting.metastatic:
        st.info("Metastatic disease without a recorded line of therapy.")
    elif setting.phase == "neoadjuvant":
        st.caption(
            "Early breast cancer treated before surgery: her primary tumour is measurable while "
            "the neoadjuvant therapy works, so its size on imaging is what is followed (Timeline "
            "and forecast, below); the response is judged at surgery. The treatment model's "
            "recurrence-free survival does not apply (it was built for patients operated first)."
        )
    else:
        st.caption(
            "Early breast cancer: after surgery there is no measurable tumour to follow; she is "
            "followed by clinic visits and surveillance mammograms, and recurrence-free survival is "
            "the forecast that applies (Timeline and forecast, below). Lines of therapy begin only "
            "if the disease recurs."
        )
    risk = resources.line_risk(ref, setting.person_id)
    if risk is not None:
        _line_risk(risk)
    if not episodes.empty:
        with st.expander(f"Every episode of her course ({len(episodes)})"):
            shown = formats.fill_missing(episodes)  # no cell reads "None"
            st.dataframe(shown, hide_index=True)
    for note in setting.notes:
        st.caption(f"Note: {formats.markdown_plain(note)}.")


def _line_risk(risk: LineProgressionRisk) -> None:
    a, b, c = st.columns(3)
    a.metric(f"Months on line {risk.line}", f"{risk.days_on_line / 30.44:.1f}")
    b.metric(
        "Progression within 6 months",
        _pct(risk.risk_6m),
        help="Observed in this clinic: of the patients of her subtype on the same line who were "
        "still progression-free after as long as she has been on it, the share who progressed "
        "(or died) within the next six months (Kaplan-Meier).",
    )
    c.metric(
        "Median PFS on this line",
        "n/a" if risk.median_pfs_days is None else f"{risk.median_pfs_days / 30.44:.1f} months",
        help="Kaplan-Meier median progression-free survival of the same patients.",
    )
    if risk.risk_6m is None:
        st.caption(
            f"Too few patients of her subtype ({risk.subtype}) on line {risk.line} in this clinic "
            f"({risk.patients}) to estimate progression."
        )
    else:
        st.caption(
            f"Progression-free survival on line {risk.line} of {risk.patients} other {risk.subtype} "
            f"patients of this clinic ({risk.events} progressed or died): what happened to patients "
            "like her, not a model of her. Decision support for research use; the clinician decides."
        )
