"""A model's reporting checklists filled from its evidence: each item answered (with its source) or missing
(with what would answer it).

Which checklists apply: TRIPOD+AI to the prediction models (treatment, forecast), CLAIM to each
imaging model (2D, and 3D with the answerers of ``volume_answers``), and DECIDE-AI to every model as deployed (its early clinical evaluation is the record
of its use in the store). ``fill`` runs every item's answerer from ``answers``; an answerer that
raises on malformed evidence marks its item missing with the reason, so one odd card field never
hides the rest of the checklist.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from analytics.governance.reporting.answers import ANSWERS, Missing
from analytics.governance.reporting.evidence import IMAGING, VOLUME, Evidence
from analytics.governance.reporting.items import BY_CHECKLIST, CLAIM, DECIDE_AI, TRIPOD_AI, Item
from analytics.governance.reporting.volume_answers import VOLUME_ANSWERS

ANSWERED = "answered"
MISSING = "missing"
COLUMNS = ("checklist", "item", "section", "text", "status", "answer", "source", "needs")


@dataclass(frozen=True)
class ItemAnswer:
    item: Item
    status: str  # ANSWERED or MISSING
    answer: str  # the answer, or "" when missing
    source: str  # where the answer came from; when missing: "" or why it is not answered

    def to_json(self) -> dict[str, str]:
        return {
            "checklist": self.item.checklist,
            "item": self.item.number,
            "section": self.item.section,
            "text": self.item.text,
            "status": self.status,
            "answer": self.answer,
            "source": self.source,
            "needs": "" if self.status == ANSWERED else self.item.needs,
        }


@dataclass(frozen=True)
class Checklist:
    """The filled checklists of one model."""

    model: str
    version: str | None
    answers: tuple[ItemAnswer, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        """Answered and missing per checklist, in the order the checklists apply."""
        out: dict[str, dict[str, int]] = {}
        for a in self.answers:
            c = out.setdefault(a.item.checklist, {ANSWERED: 0, MISSING: 0})
            c[a.status] += 1
        return out

    def missing(self) -> tuple[ItemAnswer, ...]:
        return tuple(a for a in self.answers if a.status == MISSING)

    def get(self, checklist: str, number: str) -> ItemAnswer:
        for a in self.answers:
            if a.item.checklist == checklist and a.item.number == number:
                return a
        raise KeyError(f"{checklist} {number}")

    def rows(self, *, only_missing: bool = False) -> list[dict[str, str]]:
        return [a.to_json() for a in self.answers if not only_missing or a.status == MISSING]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "counts": self.counts(),
            "items": self.rows(),
        }

    def to_csv(self, *, only_missing: bool = False) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows(only_missing=only_missing))
        return buffer.getvalue()


def checklists_for(evidence: Evidence) -> tuple[str, ...]:
    """CLAIM for imaging models (2D and 3D), TRIPOD+AI for prediction models; DECIDE-AI for all
    (as deployed)."""
    return (CLAIM, DECIDE_AI) if evidence.kind in (IMAGING, VOLUME) else (TRIPOD_AI, DECIDE_AI)


def fill(evidence: Evidence) -> Checklist:
    """Answer every item of the checklists that apply to ``evidence``'s model."""
    answers = []
    for name in checklists_for(evidence):
        # a 3D card has its own shape: its answerers (``volume_answers``) replace the 2D ones
        answerers = VOLUME_ANSWERS[name] if evidence.kind == VOLUME else ANSWERS[name]
        for item in BY_CHECKLIST[name]:
            try:
                found = answerers[item.number](evidence)
            except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
                answers.append(
                    ItemAnswer(
                        item,
                        MISSING,
                        "",
                        f"evidence could not be read ({type(exc).__name__}: {exc})",
                    )
                )
                continue
            if found is None:
                answers.append(ItemAnswer(item, MISSING, "", ""))
            elif isinstance(found, Missing):  # not answered, and the evidence says why
                answers.append(ItemAnswer(item, MISSING, "", found.why))
            else:
                answers.append(ItemAnswer(item, ANSWERED, found.text, found.source))
    version = evidence.card.get("version") if evidence.card else None
    if version is None and evidence.model == "forecast":
        w = (evidence.store.get("use") or {}).get("worklist") or {}
        version = f"method {w['method_version']}" if w.get("method_version") is not None else None
    return Checklist(evidence.model, None if version is None else str(version), tuple(answers))
