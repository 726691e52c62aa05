"""What a tumour-board report holds, apart from how it is gathered (``report``) or laid out (``report_pdf``).

Why a module of its own: the gatherer and the PDF layout both need these types; with them in
either one, the two modules imported each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from analytics.treatment.recommend import Recommendation

SECTIONS = (
    "Patient summary",
    "Key images and saliency",
    "AI findings and measurements",
    "Timeline and forecasts",
    "Treatment recommendation",  # "Treatment options" when the model picks none (report_pdf)
    "Model versions",
    "Decision support disclaimer",
)
DISCLAIMER = (
    "OncoLens is decision support for research use, not a medical device. Every figure in this report is a "
    "model's output on a synthetic-trained model and must be checked by the clinicians; the tumour board decides. "
    "Treatment was not randomised in the data behind the recommendation."
)


@dataclass
class KeyImage:
    caption: str
    png: bytes


@dataclass
class ReportData:
    person_id: int
    header: list[tuple[str, str]]
    summary_rows: list[tuple[str, str]]
    findings: pd.DataFrame
    key_images: list[KeyImage]
    timeline_png: bytes | None
    forecast_lines: list[str]
    recommendation: Recommendation | None  # what the recommendation lines and the waterfall show
    recommendation_lines: list[str]
    waterfall_png: bytes | None
    model_rows: list[tuple[str, str]]
    generated_by: str
    generated_at: dt.datetime
    renderer: str
    notes: list[str] = field(default_factory=list)
    decision_lines: list[str] = field(
        default_factory=list
    )  # the clinicians' recorded decisions, newest first (roles that see recommendations only)
    # the ethics board's sign-off of each model version whose output is in the report, or why an
    # output is withheld (issue 22); printed under the title
    signoff_lines: list[str] = field(default_factory=list)


def without_other_options(forecast):
    """The forecast without survival curves under options she did not receive.

    Curves per option are the recommendation's substance (the best one is the recommended one), so
    roles that are not shown recommendations see only the received option's curve (or none).
    """
    survival = forecast.survival
    if survival is None:
        return forecast
    kept = {o: f for o, f in survival.curves.items() if o == forecast.received_option}
    return dataclasses.replace(
        forecast, survival=dataclasses.replace(survival, curves=kept) if kept else None
    )
