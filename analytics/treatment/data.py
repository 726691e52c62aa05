"""Survival data for the treatment models: covariates, the option each patient received, RFS.

One shape for every source (GBSG2, the demo clinic's store, a user's trial CSV):
a ``SurvivalTable`` of numeric covariates with clinical names and units, the
treatment option actually received, follow-up time in days and an event flag.
Learners, validation and SHAP all take this shape, so the same code path runs
on the trial data set and on the clinic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


class TreatmentDataError(ValueError):
    """Data that cannot be used for a treatment model; the message says what to fix."""


@dataclass(frozen=True)
class Feature:
    """One model input: its column name and how a clinician reads it (name with unit)."""

    column: str
    label: str


@dataclass(frozen=True, eq=False)
class SurvivalTable:
    """Patients with covariates, the option received and recurrence-free survival.

    ``covariates``: one numeric column per feature (in ``features`` order), no
    missing values; ``treatment``: the option received (strings, one of
    ``options``); ``time_days`` > 0; ``event``: recurrence or death observed.
    """

    covariates: pd.DataFrame
    treatment: np.ndarray
    time_days: np.ndarray
    event: np.ndarray
    options: tuple[str, ...]
    features: tuple[Feature, ...]
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        n = len(self.covariates)
        if not (len(self.treatment) == len(self.time_days) == len(self.event) == n):
            raise TreatmentDataError("covariates, treatment, time and event differ in length")
        if list(self.covariates.columns) != [f.column for f in self.features]:
            raise TreatmentDataError("covariate columns and feature list differ")

    @property
    def n(self) -> int:
        return len(self.covariates)

    @property
    def feature_labels(self) -> list[str]:
        return [f.label for f in self.features]

    def subset(self, rows: np.ndarray) -> SurvivalTable:
        return SurvivalTable(
            self.covariates.iloc[rows].reset_index(drop=True),
            self.treatment[rows],
            self.time_days[rows],
            self.event[rows],
            self.options,
            self.features,
            self.source,
            self.notes,
        )


GBSG2_FEATURES = (
    Feature("age", "Age (years)"),
    Feature("postmenopausal", "Postmenopausal (1 = yes)"),
    Feature("tsize", "Tumour size (mm)"),
    Feature("tgrade", "Tumour grade (1-3)"),
    Feature("pnodes", "Positive lymph nodes (count)"),
    Feature("progrec", "Progesterone receptor (fmol/mg)"),
    Feature("estrec", "Oestrogen receptor (fmol/mg)"),
)
GBSG2_OPTIONS = ("no hormonal therapy", "hormonal therapy")
GBSG2_CAVEAT = (
    "GBSG2's hormonal therapy was not randomised for all patients (randomised only for part "
    "of the trial), so followed-vs-not comparisons are associations, not treatment effects."
)


def gbsg2_table() -> SurvivalTable:
    """GBSG2 (686 node-positive women; ships inside lifelines, no download), as a SurvivalTable."""
    # lazy: lifelines is imported only when this is used (start-up time)
    from lifelines.datasets import load_gbsg2

    raw = load_gbsg2()
    cov = pd.DataFrame(
        {
            "age": raw["age"].astype(float),
            "postmenopausal": (raw["menostat"] == "Post").astype(float),
            "tsize": raw["tsize"].astype(float),
            "tgrade": raw["tgrade"].map({"I": 1.0, "II": 2.0, "III": 3.0}),
            "pnodes": raw["pnodes"].astype(float),
            "progrec": raw["progrec"].astype(float),
            "estrec": raw["estrec"].astype(float),
        }
    )
    treatment = np.where(raw["horTh"] == "yes", GBSG2_OPTIONS[1], GBSG2_OPTIONS[0]).astype(object)
    return SurvivalTable(
        cov,
        treatment,
        raw["time"].to_numpy(dtype=float),
        raw["cens"].to_numpy() == 1,
        GBSG2_OPTIONS,
        GBSG2_FEATURES,
        source="GBSG2 (lifelines.datasets.load_gbsg2)",
        notes=(GBSG2_CAVEAT,),
    )


# --- a user's trial data set ------------------------------------------------------


def _numeric_covariate(name: str, values: pd.Series) -> pd.DataFrame:
    """A numeric column as is; a yes/no or two-level column as 0/1; more levels as indicators."""
    if pd.api.types.is_bool_dtype(values):
        return pd.DataFrame({name: values.astype(float)})
    if pd.api.types.is_numeric_dtype(values):
        return pd.DataFrame({name: values.astype(float)})
    levels = sorted(values.dropna().astype(str).unique())
    if len(levels) > 20:
        raise TreatmentDataError(
            f"covariate {name!r} is text with {len(levels)} different values; "
            "give a numeric or categorical column (at most 20 levels)"
        )
    text = values.astype("string")
    if len(levels) <= 2:
        top = levels[-1] if levels else ""
        out = (text == top).astype(float).where(text.notna())
        return pd.DataFrame({f"{name}={top}": out})
    return pd.DataFrame(
        {f"{name}={lvl}": (text == lvl).astype(float).where(text.notna()) for lvl in levels[1:]}
    )


def _event_flags(name: str, values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=bool)
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.isna().any() or not set(numeric.unique()) <= {0, 1}:
        bad = values[numeric.isna() | ~numeric.isin([0, 1])].iloc[0]
        raise TreatmentDataError(
            f"event column {name!r} must hold 0/1 (1 = recurrence or death observed); found {bad!r}"
        )
    return numeric.to_numpy() == 1


def table_from_frame(
    frame: pd.DataFrame,
    *,
    treatment: str,
    time: str,
    event: str,
    covariates: list[str] | None = None,
    source: str = "",
) -> SurvivalTable:
    """A user's trial data as a SurvivalTable; every mismatch is a ``TreatmentDataError``.

    Covariates default to every column other than treatment, time and event.
    Rows with a missing value in a used column are refused, not silently dropped
    (the message counts them), because which patients drop out changes the result.
    """
    columns = list(frame.columns)
    named = {"--treatment": treatment, "--time": time, "--event": event}
    missing = [f"{flag} {col!r}" for flag, col in named.items() if col not in columns]
    if covariates:
        missing += [f"covariate {c!r}" for c in covariates if c not in columns]
    if missing:
        raise TreatmentDataError(
            f"column(s) not in the file: {', '.join(missing)}; the file has: {', '.join(map(str, columns))}"
        )
    if len({treatment, time, event}) < 3:
        raise TreatmentDataError("--treatment, --time and --event must be three different columns")
    cov_names = covariates or [c for c in columns if c not in (treatment, time, event)]
    clash = [c for c in cov_names if c in (treatment, time, event)]
    if clash:
        raise TreatmentDataError(
            f"covariate(s) {clash} are also the treatment, time or event column"
        )
    if not cov_names:
        raise TreatmentDataError(
            "no covariate columns: give --covariates or a file with more columns"
        )
    used = frame[[treatment, time, event, *cov_names]]
    incomplete = used.isna().any(axis=1)
    if incomplete.any():
        cols = [c for c in used.columns if used[c].isna().any()]
        raise TreatmentDataError(
            f"{int(incomplete.sum())} row(s) have missing values (in {', '.join(cols)}); "
            "remove or complete them first"
        )
    times = pd.to_numeric(frame[time], errors="coerce")
    if times.isna().any() or (times <= 0).any():
        raise TreatmentDataError(
            f"time column {time!r} must hold positive numbers (days unless --time-unit says otherwise)"
        )
    options = tuple(sorted(frame[treatment].astype(str).unique()))
    if len(options) < 2:
        raise TreatmentDataError(
            f"treatment column {treatment!r} has {len(options)} option(s); at least two are needed"
        )
    if len(options) > 10:
        raise TreatmentDataError(
            f"treatment column {treatment!r} has {len(options)} different values; is it the right column?"
        )
    parts = [_numeric_covariate(c, frame[c]) for c in cov_names]
    cov = pd.concat(parts, axis=1).reset_index(drop=True)
    features = tuple(Feature(c, c) for c in cov.columns)
    return SurvivalTable(
        cov,
        frame[treatment].astype(str).to_numpy(dtype=object),
        times.to_numpy(dtype=float),
        _event_flags(event, frame[event]),
        options,
        features,
        source=source,
        notes=(
            "Whether treatment was randomised is not known to OncoLens: read the "
            "followed-vs-not comparison as an association unless it was.",
        ),
    )


def read_trial_file(path: Path) -> pd.DataFrame:
    """A CSV (or Parquet) file as a DataFrame, with a plain error when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise TreatmentDataError(f"no file at {path}")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise TreatmentDataError(f"{path} cannot be read as CSV: {exc}") from exc
