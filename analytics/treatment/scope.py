"""Whether the treatment model applies to a patient: one scope decision for every door.

Kept apart from ``clinic`` (which loads the model, SHAP and the validation) so that the forecast
and the worklist can ask the same question without importing the model's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from analytics.episodes import CareSetting, care_setting

SCOPE_DECISION = "the adjuvant decision in early breast cancer"


@dataclass(frozen=True)
class Scope:
    """Whether the treatment model applies to a patient today, and why (``recommendation_scope``)."""

    person_id: int
    in_scope: bool
    reason: str
    setting: CareSetting

    @property
    def what_applies(self) -> str:
        """What the page and the report show instead of options, in the patient's own setting."""
        if self.setting.metastatic or self.setting.recurred:
            return (
                "the course and lines of therapy, the lesion trajectory and progression on her "
                "current line"
            )
        return "the course so far and her treatment record; no model of this clinic covers her decision"

    def to_json(self) -> dict:
        """``oncolens recommend --json`` for a patient outside the model's scope (``in_scope`` false)."""
        return {
            "patient_id": self.person_id,
            "in_scope": self.in_scope,
            "reason": self.reason,
            "setting": self.setting.to_json(),
        }


class OutOfScopeError(LookupError):
    """The patient is outside the treatment model's scope; ``scope`` says why and where she is."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope.reason)
        self.scope = scope


def recommendation_scope(
    con: duckdb.DuckDBPyConnection, person_id: int, setting: CareSetting | None = None
) -> Scope:
    """The one scope decision behind the page, the CLI and the report.

    The model was trained for the adjuvant decision (first-line options after a diagnosis of early
    breast cancer, outcome 5-year recurrence-free survival). A patient is in scope while her disease
    is early (adjuvant therapy or surveillance, no recurrence); a recurrence or metastatic disease
    (de novo or after recurrence), neoadjuvant therapy (tumour size and nodes are then no longer
    those of an untreated tumour), a death, or no recorded diagnosis puts her outside it.
    """
    s = setting if setting is not None else care_setting(con, person_id)
    pid = int(person_id)
    if s.setting == "unknown":
        return Scope(
            pid,
            False,
            "no cancer diagnosis is recorded, so the adjuvant decision cannot be judged",
            s,
        )
    if s.died_on is not None:
        return Scope(pid, False, f"the patient died on {s.died_on:%Y-%m-%d}", s)
    if s.metastatic or s.recurred:
        when = (
            "was metastatic at diagnosis (de novo)"
            if s.de_novo
            else f"recurred on {s.recurrence_date:%Y-%m-%d}"
            if s.recurrence_date
            else "is metastatic"
        )
        return Scope(
            pid,
            False,
            f"her disease {when}; the treatment model was trained for {SCOPE_DECISION} (5-year "
            "recurrence-free survival under first-line options) and does not apply to metastatic "
            "disease",
            s,
        )
    if s.neoadjuvant_since is not None:
        return Scope(
            pid,
            False,
            f"she was treated before surgery (neoadjuvant therapy from {s.neoadjuvant_since:%Y-%m-%d}); "
            f"the treatment model was trained for {SCOPE_DECISION} in patients operated first, whose "
            "tumour size and nodes were measured before any systemic therapy",
            s,
        )
    return Scope(pid, True, f"early breast cancer without recurrence: {SCOPE_DECISION}", s)
