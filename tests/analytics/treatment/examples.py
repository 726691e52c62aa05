"""A ``Recommendation`` built by hand (numbers chosen, not fitted), for the tests of what reads it."""

from __future__ import annotations

from analytics.treatment.model.shap_values import BenefitWaterfall, Contribution
from analytics.treatment.recommend import Interval, OptionOutcome, Recommendation

CAVEAT = "Decision support for research use, not a medical device: the clinician decides."


def options() -> tuple[OptionOutcome, ...]:
    return (
        OptionOutcome("endocrine", 0.64, Interval(0.52, 0.76), 1500.0, Interval(1400.0, 1600.0)),
        OptionOutcome(
            "chemo_endocrine", 0.71, Interval(0.61, 0.81), 1600.0, Interval(1520.0, 1680.0)
        ),
    )


def recommendation(*, clear: bool = True, person_id: int = 7) -> Recommendation:
    """chemo_endocrine 7 points above endocrine: clearly (interval 2 to 12) or not (-1 to 15)."""
    ci = Interval(0.02, 0.12) if clear else Interval(-0.01, 0.15)
    return Recommendation(
        options=options(),
        best="chemo_endocrine",
        next_best="endocrine",
        benefit=0.07,
        benefit_ci=ci,
        clear=clear,
        person_id=person_id,
        model_version="xgb_pseudo-0123456789ab",
        horizon_days=1826.25,
        shap=BenefitWaterfall(
            better="chemo_endocrine",
            worse="endocrine",
            base_value=0.05,
            contributions=(
                Contribution("Tumour size (mm)", 22.0, 0.03),
                Contribution("Positive lymph nodes (count)", 3.0, -0.01),
            ),
            additivity_error=0.0,
        ),
        caveat=CAVEAT,
    )
