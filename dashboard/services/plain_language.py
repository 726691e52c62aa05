"""Plain-language summaries of every prediction, built from its figures by templates (no language model).

Why templates: a summary a nurse, a patient advocate or a non-specialist
doctor reads must say exactly what the numbers say, never more. Each sentence
here is a fixed template filled with the prediction's own figures, so it can
be tested for every case and can never invent a finding. Uncertainty is given
in words and in numbers together ("likely (82 %)"), following the IPCC-style
verbal scale below, because words alone are read very differently by
different people.

Pure functions: data in, text out. The pages put the text beside the figure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analytics.survival.constants import HORIZON_5Y_DAYS
from analytics.treatment.horizon import horizon_label
from dashboard.figures import formats

if TYPE_CHECKING:  # a type only: importing the model code would slow every page's first import
    from analytics.treatment.recommend import OptionRanking

# Verbal probability scale (after the IPCC's calibrated language, coarsened): lower bound -> words.
_SCALE = (
    (0.95, "very likely"),
    (0.80, "likely"),
    (0.60, "more likely than not"),
    (0.40, "about as likely as not"),
    (0.20, "unlikely"),
    (0.05, "very unlikely"),
    (0.0, "extremely unlikely"),
)

# The one glossary: every tooltip that defines a term (``help=`` on metrics, captions, widgets) is built from it
# by ``glossary_help``, so a term reads the same on every page. Plain words first; no formula.
GLOSSARY = {
    "AUC": "Area under the ROC curve: how well a model ranks cases with the condition above cases without "
    "it. 0.5 is a coin toss, 1.0 is perfect.",
    "calibrated probability": "A probability adjusted so that, among many reads given 80 %, about 80 % "
    "are right (checked on held-out data).",
    "calibration": "Whether predicted chances come true as often as they say: of patients given 30 %, about "
    "30 % should have the event. Shown as predicted against observed; the diagonal is perfect.",
    "C-index": "Concordance index (Harrell's C): of two patients, how often the model gives the higher risk to "
    "the one whose event came first. 0.5 is a coin toss, 1.0 is perfect.",
    "confidence interval": "The range the true value is expected to lie in, given the data; a 95 % interval "
    "misses it about one time in twenty, if the model's assumptions hold.",
    "hazard ratio": "How much faster events happen in one group than in another; below 1 means fewer "
    "events.",
    "Kaplan–Meier": "The share of patients still free of the event over time, estimated from follow-up that "
    "ends at different times for different patients.",
    "log-rank test": "A test of whether Kaplan–Meier curves differ by more than chance; a small p (below "
    "0.05) says the difference is unlikely to be chance alone, not that it is large or causal.",
    "nadir": "The smallest size a lesion has reached so far; RECIST measures regrowth against it.",
    "numbers at risk": "How many patients were still followed, and event-free, at each time: the curve rests on "
    "them, so it is less certain where they are few.",
    "RECIST": "Response Evaluation Criteria in Solid Tumours (1.1): tumour size is the longest diameter; "
    "growth of at least 20 % and 5 mm over the smallest size seen is progression.",
    "RFS": "Recurrence-free survival: alive and without the cancer coming back.",
    "RMST": "Restricted mean survival time: the average time free of recurrence within the first five years.",
    "saliency": "A heat map of where in the image the model found evidence for its answer. It shows where, "
    "not why, and it is not a finding.",
    "sanity check": "The saliency map is recomputed with the model's learned weights thrown away; if the map "
    "hardly changes, it shows the image rather than the model, and fails the check.",
    "pointing game": "On test images whose lesion is known, how often the strongest point of the map falls "
    "inside the lesion.",
    "SMD": "Standardised mean difference: how far apart two groups are on a characteristic, in units of its "
    "spread, whatever the groups' sizes. Above 0.1 is usually called an imbalance.",
    "SHAP": "Shapley values: how much each of the patient's characteristics moved the prediction from the "
    "average, in the prediction's own units. They explain the model, not the biology.",
    "forecast risk": "The chance of RECIST progression or recurrence in the next six months, from the "
    "tumour-growth model of her measurements (read at the scans she is due in that time) "
    "and the clinic's treatment model.",
}


def likelihood_words(p: float) -> str:
    """'likely', 'very unlikely', ... for a probability in [0, 1]."""
    p = min(max(float(p), 0.0), 1.0)
    return next(words for bound, words in _SCALE if p >= bound)


def pct(p: float) -> str:
    """The one percentage format (``dashboard.figures.formats``): sentences read as the metrics beside them."""
    return formats.pct(p)


def glossary_help(*terms: str, lead: str | None = None) -> str:
    """Tooltip text defining ``terms`` (for Streamlit's ``help=``), after an optional ``lead`` sentence.

    Raises ``KeyError`` for a term not in ``GLOSSARY``, so a tooltip can never define a term ad hoc.
    """
    parts = [lead] if lead else []
    return "\n\n".join([*parts, *(f"**{t}**: {GLOSSARY[t]}" for t in terms)])


def ai_read_summary(
    *,
    finding: str,
    probability: float,
    normal_labels: tuple[str, ...] = ("normal", "no_tumour"),
    uncertain_below: float = 0.7,
    diameter_mm: float | None = None,
    has_saliency: bool = True,
    calibrated: bool = True,
    uncertain_between: tuple[str, str] | None = None,
) -> str:
    """The AI read in two or three sentences a non-specialist can act on.

    ``calibrated``: say "calibrated" only where temperature scaling is applied;
    ``uncertain_between``: the top two classes when they are too close to name one.
    """
    words = likelihood_words(probability)
    label = finding.replace("_", " ")
    cal = ", calibrated" if calibrated else ""
    lead = f"The model rates this image as {words} to show **{label}** ({pct(probability)}{cal})."
    if finding in normal_labels:
        lead = (
            f"The model rates this image as {words} to be **{label}** ({pct(probability)}{cal}); "
            "it found no lesion it would call suspicious."
        )
    if uncertain_between is not None:
        a, b = (x.replace("_", " ") for x in uncertain_between)
        lead = (
            f"The model cannot tell **{a}** from **{b}** for this image: the two are almost "
            "equally likely, so it gives no answer."
        )
    parts = [lead]
    if diameter_mm is not None:
        parts.append(f"The outlined lesion measures {diameter_mm:.0f} mm at its longest (RECIST).")
    if probability < uncertain_below:
        parts.append(
            "The model is not sure: the other possibilities are close. Do not rely on this read."
        )
    if has_saliency and finding not in normal_labels:
        parts.append("The highlighted region is where its evidence lies.")
    parts.append("A radiologist should confirm; this is decision support, not a diagnosis.")
    return " ".join(parts)


def saliency_summary(
    *, method_title: str, sanity: str, pointing_game: float | None, localises: bool | None = None
) -> str:
    """What the heat map can and cannot be trusted for, in words.

    ``localises``: whether the method points at lesions better than a random map on test
    images (``models.saliency.verdict``); a map that passes the randomisation check but does not
    localise is not called trustworthy.
    """
    if sanity == "passed" and localises is False:
        trust = (
            "This map changes when the model's learning is removed, but on test images it does not "
            "point at the lesion better than a random map would. Do not rely on it; prefer another method."
        )
    elif sanity == "failed":
        trust = (
            "This map failed the sanity check: it looks much the same for a model that learned nothing, "
            "so it may show the image's structure rather than the model's reasoning. Prefer another method."
        )
    elif sanity == "passed":
        trust = (
            "This map passed both checks: it changes when the model's learning is removed, and it "
            "points at lesions better than a random map."
            if localises
            else "This map passed the sanity check: it changes when the model's learning is removed."
        )
    else:
        trust = "This map's sanity check has not been measured; read it with care."
    where = ""
    if pointing_game is not None:
        where = (
            f" On test images with known lesions, its strongest point fell inside the lesion "
            f"{pct(pointing_game)} of the time."
        )
    return f"{method_title}: {trust}{where} It shows where the model looked, not why, and it is not a finding."


_NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)


def horizon_words(horizon_days: float) -> str:
    """The model's horizon in a sentence: "five years", "18 months", "one year" (its label in words)."""
    count, unit = horizon_label(horizon_days).split("-", 1)
    n = int(count)
    number = _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else count
    return f"{number} {unit}{'' if n == 1 else 's'}"


# A point within this share of the interval's width from one end is "near one end" (words added)
LOPSIDED = 0.1


def statement(rec: OptionRanking) -> str:
    """``rec.statement`` (the CLI's sentence, which names options by their codes) with the options
    named for people, for the page and the PDF."""
    text = rec.statement
    for code in (rec.best, rec.next_best):
        text = text.replace(code, formats.option(code))
    return text


def recommendation_summary(rec: OptionRanking) -> str:
    """The treatment recommendation (a ``Recommendation`` or its ranking) in words, with how sure it is."""
    best, other = rec.best, rec.next_best
    b, o = rec.option(best), rec.option(other)
    benefit, (lo, hi) = 100 * rec.benefit, (100 * x for x in rec.benefit_ci)
    about, between = formats.number(benefit), formats.interval(lo, hi)
    name = formats.option
    after = horizon_words(float(getattr(rec, "horizon_days", HORIZON_5Y_DAYS)))
    outcome = (
        f"Out of 100 patients like this one, the model expects about {formats.number(100 * b.rfs)} to be free "
        f"of recurrence after {after} with {name(best)} and about {formats.number(100 * o.rfs)} with "
        f"{name(other)}."
    )
    if rec.recommended:
        verdict = (
            f"It favours **{name(best)}**: about {about} more in 100 (plausible range {between})."
        )
    else:
        verdict = (
            f"The difference (about {about} in 100, plausible range {between}) could be "
            "zero, so the model **does not pick an option**."
        )
    lo_pp, hi_pp = 100 * rec.benefit_ci.lo, 100 * rec.benefit_ci.hi
    near_end = hi_pp > lo_pp and min(benefit - lo_pp, hi_pp - benefit) < LOPSIDED * (hi_pp - lo_pp)
    if rec.benefit_ci_widened:
        verdict += (
            " Here the estimate sits at one end of that range: a second, doubly robust estimate put "
            "the difference elsewhere, and the range is stretched to hold both, so treat the size of "
            "the difference as uncertain."
        )
    elif near_end:
        # e.g. +3.1, range +0.3 to +34.6: the range comes from the doubly robust estimate, the
        # point from the outcome model; read as one, it looks like a mistake
        verdict += (
            " The estimate sits near one end of that range: a second, doubly robust estimate, "
            "which sets the range, puts the difference "
            f"{'higher' if hi_pp - benefit > benefit - lo_pp else 'lower'}, so treat the size of the "
            "difference as uncertain."
        )
    return (
        f"{outcome} {verdict} These figures come from this clinic's past patients, whose treatment was "
        "not assigned at random; the ranges show how much the estimate moves with the data, not every "
        "way the model could be wrong. The care team decides with the patient."
    )


def forecast_summary(
    *,
    rfs_6m: float | None = None,
    progression_6m: float | None = None,
    recurrence_6m: float | None = None,
    progression_date: str | None = None,
    progression_observed: str | None = None,
    last_mm: float | None = None,
    forecast_mm: float | None = None,
    forecast_lo: float | None = None,
    forecast_hi: float | None = None,
    horizon: str = "in six months",
) -> str:
    """The progression forecast in words: what is expected, how wide the range is, what it is not.

    ``progression_6m`` / ``recurrence_6m``: the two risks the page shows as metrics, quoted with the same
    rounding; ``rfs_6m``: one combined figure, for callers with no metrics beside the sentence.
    ``progression_observed``: the date a measured progression was seen (then nothing says "no progression").
    """
    parts = []
    if last_mm is not None and forecast_mm is not None:
        change = forecast_mm - last_mm
        trend = (
            "stay about the same"
            if abs(change) < max(2.0, 0.1 * last_mm)
            else ("grow" if change > 0 else "shrink")
        )
        rng = ""
        if forecast_lo is not None and forecast_hi is not None:
            rng = (
                f" (likely between {formats.number(max(forecast_lo, 0.0))} and "
                f"{formats.mm(forecast_hi, 0)})"
            )
        parts.append(
            f"The tumour, last measured at {formats.mm(last_mm, 0)}, is expected to {trend}: about "
            f"{formats.mm(forecast_mm, 0)} {horizon}{rng}."
        )
    if progression_observed:
        parts.append(
            f"RECIST progression was measured on {progression_observed}; the forecast below continues "
            "from her latest readings."
        )
    elif progression_date:
        parts.append(
            f"If it follows this course, it would meet the RECIST definition of progression around "
            f"{progression_date}."
        )
    elif last_mm is not None and forecast_mm is not None:
        parts.append("No RECIST progression is forecast within the forecast window.")
    if progression_6m is not None:
        parts.append(
            f"A RECIST progression at a reading in the next six months is "
            f"{likelihood_words(progression_6m)} ({pct(progression_6m)})."
        )
    if recurrence_6m is not None:
        parts.append(
            f"Recurrence in the next six months is {likelihood_words(recurrence_6m)} "
            f"({pct(recurrence_6m)})."
        )
    if rfs_6m is not None:
        risk = 1.0 - rfs_6m
        parts.append(
            f"Recurrence or progression in the next six months is {likelihood_words(risk)} "
            f"({pct(risk)})."
        )
    if not parts:
        return "There is not enough data for a forecast for this patient."
    parts.append(
        "Forecasts are estimates from this clinic's data and the tumour-growth model; new "
        "measurements change them. They support, not replace, the care team's judgement."
    )
    return " ".join(parts)
