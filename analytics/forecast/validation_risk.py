"""Is the worklist's six-month risk right? The store cut at earlier days, checked against what followed.

The worklist ranks patients by P(RECIST progression on her current line, or a
first recurrence while none is recorded) within six months
(``analytics.worklist.ranking``). To check it without waiting, the store is cut
at ``CUTS`` days six months apart, the latest six months before its cut-off.
At each cut the tumour prior (with its band recalibration) is estimated and the
clinic's outcome learner refitted on what was known then (recurrence-free
survival censored at the cut), every patient checked is given the worklist's
risk as of that day (``worklist.ranking.risks``: her line of therapy current
at the cut, restarted at her RECIST line within it), and the next six months
say what happened (``window_outcomes``). The windows are disjoint and pooled:
one window of the 300-patient test demo held 47 patients.

Who is checked: patients alive and followed at the cut (not diagnosed after
it), with a lesion reading in the six months before it (progression can only
be seen at a reading), recurred ones included: since issue 17 the worklist
ranks them, and in the demo every patient with lesion readings has recurred
(the first version checked only patients without a recurrence, and found
none). The event: a reading in the window that meets RECIST 1.1 progression
against the nadir of her line at the cut, judged line by line as the worklist
judges it (a progression ends a line, its reading opens the next), or death,
or, for a patient with no recurrence recorded, a recurrence. A patient lost to
follow-up inside the window without an event, or with no reading in it, cannot
be scored and is counted, not guessed.

Reported: calibration in five bins of predicted risk (mean predicted against
the observed share, with its Wilson 95 % interval), the logistic calibration
line (intercept 0 and slope 1 when calibrated), the Brier score and the AUC;
each part on its own (progression; recurrence or death, for those not yet
recurred); the same with the raw (not recalibrated) bands; and two baselines a
clinic has without a model: the event rate of the six months before each cut
as everyone's risk in its window (Brier),
and the regrowth ratio latest / nadir (the worklist's RECIST tie-breaker) as a
ranking (AUC).

One diagnostic separates the model from the question: the risk is about her
last reading *expected* in the window (``forecast.expected_reading_day``), the
event about any reading actually taken. ``progression_at_next_reading`` scores
the same fit's probability that her *first* reading in the window meets
progression, against that reading. (Until worklist method version 3 the risk
asked about a reading exactly six months from today, and ran high in the middle
of the scale: a clinic's readings come sooner, when a growing lesion is smaller.)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics.forecast.data import clean, data_cutoff, day_numbers, lesion_frame, restart_at
from analytics.forecast.survival import HALF_YEAR_DAYS
from analytics.forecast.tumour import (
    LesionSeries,
    TGIPrior,
    fit_map,
    progression_threshold,
)
from analytics.survival.constants import Z_95
from analytics.treatment.clinic_data import clinic_training_table
from analytics.treatment.model.learners import make_learner

RISK_BIN_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
NADIR_FLOOR_MM = 1.0  # as the worklist's regrowth ratio
RISK_DRAWS = 400  # as forecast.RISK_DRAWS
CUTS = 4  # six-month windows checked, pooled: the last two years before the cut-off
_EPOCH = np.datetime64("1970-01-01", "D")


def _day(d: dt.date) -> float:
    return float((np.datetime64(d, "D") - _EPOCH).astype(np.int64))


def patient_dates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """person_id, diagnosis, recurrence (the first), death, follow_up_end: days since 1970 (NaN if none)."""
    df = con.execute(
        """
        SELECT p.person_id, c.diagnosis, e.recurrence, e.death, op.end_date AS follow_up_end
        FROM person AS p
        LEFT JOIN (SELECT person_id, min(diagnosis_date) AS diagnosis FROM condition_occurrence GROUP BY ALL) AS c
            USING (person_id)
        LEFT JOIN (SELECT person_id,
                          min(event_date) FILTER (WHERE event_type = 'recurrence') AS recurrence,
                          min(event_date) FILTER (WHERE event_type = 'death') AS death
                   FROM outcome_event GROUP BY ALL) AS e
            USING (person_id)
        LEFT JOIN observation_period AS op USING (person_id)
        ORDER BY p.person_id
        """
    ).df()
    for col in ("diagnosis", "recurrence", "death", "follow_up_end"):
        df[col] = day_numbers(pd.to_datetime(df[col]).to_numpy(dtype="datetime64[D]"))
    return df


def _recist_lines(readings: pd.DataFrame, until: float) -> pd.DataFrame:
    """``worklist.events.progression_segments`` of the readings up to day ``until`` (days since 1970)."""
    # lazy: analytics.worklist imports analytics.forecast at its top; this module is imported lazily too
    from analytics.worklist.events import progression_segments

    day = day_numbers(readings["measurement_date"].to_numpy(dtype="datetime64[D]"))
    return progression_segments(readings[day <= until].reset_index(drop=True))


def window_outcomes(
    readings: pd.DataFrame, dates: pd.DataFrame, start: dt.date, days: float
) -> pd.DataFrame:
    """Who the worklist ranked at ``start`` in active imaging follow-up, and what happened in the next ``days``.

    ``readings``: ``forecast.data.clean`` output of ``lesion_frame(..., as_of=start)`` (each
    patient's line of therapy current at ``start``, its later readings included); ``dates``:
    ``patient_dates``. Checked: alive and followed at ``start`` (not diagnosed after it), with a
    reading in the ``days`` before it; recurred patients included. RECIST 1.1 runs line by line
    through her readings (``worklist.events``: a progression ends the line, its reading opens the
    next), so her nadir at ``start`` is that of her line then.

    Columns: person_id; recurred (a recurrence recorded by ``start``); progression (a reading in
    the window meets progression against the nadir of her line, line by line); recurrence_or_death
    (death in the window, or a first recurrence in it while none was recorded); event (either);
    assessable; regrowth_ratio (the worklist's: latest / nadir at ``start``, floor 1 mm);
    line_start (the first reading of her RECIST line at ``start``; NaT before any progression,
    as the worklist passes it); nadir_mm (of that line at ``start``); first_in_window (days since
    1970 of her first reading in the window, NaN if none), first_in_window_mm.
    """
    t0, t1 = _day(start), _day(start) + days
    cols = ["person_id", "measurement_date", "mm"]
    readings = readings[cols].sort_values(["person_id", "measurement_date"], kind="stable")
    at_cut, at_end = _recist_lines(readings, t0), _recist_lines(readings, t1)
    day = day_numbers(readings["measurement_date"].to_numpy(dtype="datetime64[D]"))
    inside = readings[(day > t0) & (day <= t1)]
    first = inside.groupby("person_id").first()
    out = at_cut.merge(
        at_end[["person_id", "n_progressions"]], on="person_id", suffixes=("", "_end")
    )
    latest = day_numbers(pd.to_datetime(out["latest_date"]).to_numpy(dtype="datetime64[D]"))
    out = out[latest > t0 - days]  # in active imaging follow-up
    out = out.merge(dates, on="person_id", how="inner")
    at_risk = ~(out["diagnosis"] > t0) & ~(out["death"] <= t0) & (out["follow_up_end"] > t0)
    out = out[at_risk].reset_index(drop=True)
    out["regrowth_ratio"] = out["latest_mm"] / np.maximum(out["nadir_mm"], NADIR_FLOOR_MM)
    progressed_last = out["progression"].to_numpy(dtype=bool)  # her latest reading opened a line
    out["nadir_mm"] = np.where(progressed_last, out["latest_mm"], out["nadir_mm"])
    out["recurred"] = out["recurrence"] <= t0
    out["progression"] = out["n_progressions_end"] > out["n_progressions"]
    death = (out["death"] > t0) & (out["death"] <= t1)
    recurrence = ~out["recurred"] & (out["recurrence"] > t0) & (out["recurrence"] <= t1)
    out["recurrence_or_death"] = death | recurrence
    out["event"] = out["progression"] | out["recurrence_or_death"]
    out["line_start"] = pd.to_datetime(out["line_start"]).where(out["n_progressions"] > 0)
    out["first_in_window"] = out["person_id"].map(
        pd.Series(
            day_numbers(first["measurement_date"].to_numpy(dtype="datetime64[D]")),
            index=first.index,
        )
    )
    out["first_in_window_mm"] = out["person_id"].map(first["mm"])
    # progression is seen only at a reading: without one in the window its status is unknown
    imaged = out["first_in_window"].notna()
    out["assessable"] = out["event"] | (imaged & (out["follow_up_end"] >= t1))
    return out[
        [
            "person_id",
            "recurred",
            "progression",
            "recurrence_or_death",
            "event",
            "assessable",
            "regrowth_ratio",
            "line_start",
            "nadir_mm",
            "first_in_window",
            "first_in_window_mm",
        ]
    ]


# --- scores -----------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def calibration_bins(pred: np.ndarray, observed: np.ndarray, edges=RISK_BIN_EDGES) -> list[dict]:
    """Mean predicted against observed share in fixed bins of predicted risk (empty bins left out)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (pred >= lo) & ((pred < hi) if hi < edges[-1] else (pred <= hi))
        if m.any():
            k, n = int(observed[m].sum()), int(m.sum())
            lo_ci, hi_ci = wilson(k, n)
            rows.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "patients": n,
                    "mean_predicted": round(float(pred[m].mean()), 4),
                    "observed": round(k / n, 4),
                    "observed_95ci": [round(lo_ci, 4), round(hi_ci, 4)],
                }
            )
    return rows


def _auc(score: np.ndarray, label: np.ndarray) -> float | None:
    # lazy: sklearn is imported only when this is used (start-up time)
    from sklearn.metrics import roc_auc_score

    return None if label.all() or not label.any() else round(float(roc_auc_score(label, score)), 4)


def calibration_line(pred: np.ndarray, observed: np.ndarray) -> dict:
    """Logistic recalibration observed ~ a + b logit(predicted) (Cox 1958): a = 0, b = 1 when calibrated."""
    # lazy: sklearn is imported only when this is used (start-up time)
    from sklearn.linear_model import LogisticRegression

    if observed.all() or not observed.any():
        return {"intercept": None, "slope": None}
    p = np.clip(pred, 1e-4, 1 - 1e-4)
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(np.log(p / (1 - p))[:, None], observed)
    return {
        "intercept": round(float(fit.intercept_[0]), 3),
        "slope": round(float(fit.coef_[0, 0]), 3),
    }


def score(pred: np.ndarray, observed: np.ndarray) -> dict:
    """Patients, events, mean predicted, observed share, Brier score, AUC, calibration bins and line."""
    return {
        "patients": int(pred.size),
        "events": int(observed.sum()),
        "mean_predicted": round(float(pred.mean()), 4),
        "observed_rate": round(float(observed.mean()), 4),
        "brier": round(float(np.mean((pred - observed) ** 2)), 4),
        "auc": _auc(pred, observed),
        "calibration_line": calibration_line(pred, observed),
        "bins": calibration_bins(pred, observed),
    }


# --- the check --------------------------------------------------------------------------------


def _model_at(con: duckdb.DuckDBPyConnection, cut: dt.date, dates: pd.DataFrame, seed: int):
    """The clinic's outcome learner refitted on what was known at ``cut`` (RFS censored there), point only."""
    # lazy: at the top, importing analytics.forecast.validation_risk took 1444 ms instead of 640 ms
    from analytics.treatment.clinic import ClinicModel

    # lazy: at the top, importing analytics.forecast.validation_risk took 1444 ms instead of 640 ms
    from analytics.treatment.model.outcome_model import OutcomeModel

    table, ids = clinic_training_table(con)
    known_for = _day(cut) - dates.set_index("person_id").loc[ids, "diagnosis"].to_numpy()
    rows = np.flatnonzero(known_for > 0)  # diagnosed before the cut
    time = np.minimum(table.time_days, known_for)
    event = table.event & (table.time_days <= known_for)
    table = replace(table.subset(rows), time_days=time[rows], event=event[rows])
    model = OutcomeModel(seed=seed)  # the worklist ranks on point curves only,
    model.options_, model.features_ = table.options, table.features  # so no bootstrap refits
    model.main_ = make_learner(model.learner, seed).fit(table)
    return ClinicModel(
        model, {"version": f"refit at {cut.isoformat()}"}, explainer=None, folder=Path(".")
    )


def _next_reading(
    readings: pd.DataFrame, d: pd.DataFrame, prior: TGIPrior, cut: dt.date, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """P(her first reading in the window meets progression against her line's nadir at the cut),
    and whether it did: (predicted, observed). The same series as the risk (her line then,
    restarted at her RECIST line)."""
    d = d[d["first_in_window"].notna()]
    early = readings[
        readings["person_id"].isin(d["person_id"])
        & (pd.to_datetime(readings["measurement_date"]) <= pd.Timestamp(cut))
    ]
    early, _ = clean(restart_at(early, _line_starts(d)), cut)
    if early.empty:
        return np.zeros(0), np.zeros(0, dtype=bool)
    series = LesionSeries.from_long(early)
    fit = fit_map(series, prior)
    origin = (
        (early["measurement_date"] - pd.to_timedelta(early["t_days"], unit="D"))
        .groupby(early["person_id"])
        .first()
        .loc[series.person_id]
    )
    at = d.set_index("person_id").loc[series.person_id]
    t = at["first_in_window"].to_numpy() - day_numbers(
        pd.to_datetime(origin).to_numpy(dtype="datetime64[D]")
    )
    nadir = np.min(np.where(series.mask, series.mm, np.inf), axis=1)
    threshold = progression_threshold(nadir)
    pred = fit.exceedance(t[:, None], threshold, RISK_DRAWS, seed)[:, 0]
    return pred, at["first_in_window_mm"].to_numpy() >= threshold


def _line_starts(d: pd.DataFrame) -> pd.Series:
    """Per person_id, the start of her RECIST line at the cut, for those with a progression
    (``worklist.ranking.line_starts``)."""
    after = d[d["line_start"].notna()]
    return pd.Series(pd.to_datetime(after["line_start"]).to_numpy(), index=after["person_id"])


def _at_cut(
    con: duckdb.DuckDBPyConnection,
    cut: dt.date,
    cutoff: dt.date,
    dates: pd.DataFrame,
    seed: int,
    with_model: bool,
) -> tuple[pd.DataFrame, int, tuple[np.ndarray, np.ndarray]]:
    """One cut: the assessable patients with their risks as of ``cut`` (the worklist's, refitted on
    what was known then) and outcomes; how many could not be assessed; the next-reading check."""
    from analytics.forecast.patient import (  # lazy: at the top, importing analytics.forecast.validation_risk took 1444 ms instead of 640 ms
        estimate_prior,
    )

    # lazy: analytics.worklist imports analytics.forecast at its top (the risks the worklist ranks by)
    from analytics.worklist.ranking import risks

    # her line of therapy current at the cut, read to the store's cut-off: a line started in the
    # window does not change which line she was on
    readings = lesion_frame(con, "all", as_of=cut)
    now = window_outcomes(clean(readings, cutoff)[0], dates, cut, HALF_YEAR_DAYS)
    lost = int((~now["assessable"]).sum())
    now = now[now["assessable"]].reset_index(drop=True)
    if now.empty:
        return now, lost, (np.zeros(0), np.zeros(0, dtype=bool))
    prior = estimate_prior(con, as_of=cut)
    clinic = _model_at(con, cut, dates, seed) if with_model else None
    ids = now["person_id"].to_numpy()
    kwargs = {
        "line_start": _line_starts(now),
        "recurred": now.loc[now["recurred"], "person_id"].to_numpy(dtype=np.int64),
    }
    risk = risks(con, ids, prior, clinic, cut, **kwargs)
    raw = risks(con, ids, replace(prior, calibration=None), clinic, cut, **kwargs)
    d = now.merge(risk, on="person_id").merge(
        raw[["person_id", "risk_6m"]], on="person_id", suffixes=("", "_raw")
    )
    return d.assign(cut=cut.isoformat()), lost, _next_reading(readings, d, prior, cut, seed)


def validate_risk(
    con: duckdb.DuckDBPyConnection, seed: int, with_model: bool = True, cuts: int = CUTS
) -> dict:
    """The worklist's six-month risk forecast at ``cuts`` earlier days, against what followed."""
    cutoff = data_cutoff(con)
    if cutoff is None:
        raise ValueError("the store records no data cut-off: the six-month risk check needs one")
    half_year = dt.timedelta(days=round(HALF_YEAR_DAYS))
    days = [cutoff - k * half_year for k in range(1, cuts + 1)]
    dates = patient_dates(con)
    # the base rate of a window: the events of the window before it (one more cut, outcomes only)
    earliest = days[-1] - half_year
    before = window_outcomes(
        clean(lesion_frame(con, "all", as_of=earliest), cutoff)[0],
        dates,
        earliest,
        HALF_YEAR_DAYS,
    )
    before = before[before["assessable"]]
    frames, lost, next_pred, next_obs = [], 0, [], []
    for cut in days:
        d, n_lost, (p, o) = _at_cut(con, cut, cutoff, dates, seed, with_model)
        frames.append(d)
        lost += n_lost
        next_pred.append(p)
        next_obs.append(o)
    pooled = [f for f in frames if not f.empty]
    d = pd.concat(pooled, ignore_index=True) if pooled else frames[0]
    n_events = int(d["event"].sum()) if len(d) else 0
    if len(d) < 50 or n_events < 5 or before.empty:
        raise ValueError(
            f"too few patients to check the six-month risk ({len(d)} assessable over {cuts} cuts, "
            f"{n_events} events; at least 50 and 5 are needed)"
        )
    # a window's base rate: the share of events in the six months before it
    rates = {days[k]: float(f["event"].mean()) for k, f in enumerate(frames[1:]) if len(f)}
    rates[days[-1]] = float(before["event"].mean())
    unscored = int(d["risk_6m"].isna().sum())
    d = d[d["risk_6m"].notna()].reset_index(drop=True)
    pred, observed = d["risk_6m"].to_numpy(dtype=float), d["event"].to_numpy(dtype=bool)
    base = (
        d["cut"]
        .map({c.isoformat(): r for c, r in rates.items()})
        .fillna(float(before["event"].mean()))
    )
    model = score(pred, observed)
    base_brier = float(np.mean((base.to_numpy(dtype=float) - observed) ** 2))
    parts = {}
    for part, column, outcome in (
        ("progression", "p_progression_6m", "progression"),
        ("recurrence_or_death", "p_recurrence_6m", "recurrence_or_death"),
    ):
        has = d[column].notna().to_numpy()
        if has.sum() >= 20:
            parts[part] = score(
                d.loc[has, column].to_numpy(dtype=float), d.loc[has, outcome].to_numpy(dtype=bool)
            )
    cut = days[0]
    return {
        "design": (
            f"the store cut at {cuts} days six months apart, the latest {cut.isoformat()} (six months "
            f"before its cut-off {cutoff.isoformat()}), each followed by its six months (disjoint "
            "windows, pooled); at each cut the tumour prior (with its band recalibration) and the outcome "
            "learner refitted on what was known then; patients alive and followed then with a lesion "
            "reading in the six months before the cut (recurred ones included), each given the "
            "worklist's risk as of the cut (her line of therapy then, her RECIST line within it); "
            "event: a reading in the next six months meeting RECIST 1.1 progression against the nadir "
            "of her line then (line by line), or death, or (not yet recurred) a recurrence"
        ),
        "cut": cut.isoformat(),
        "cuts": [c.isoformat() for c in days],
        "patients_per_cut": {f["cut"].iloc[0]: len(f) for f in pooled},
        "recurred_at_cut": int(d["recurred"].sum()),
        "not_scored": {"lost_to_follow_up_or_no_reading_in_window": lost, "no_risk_part": unscored},
        "risk_parts": {k: int(v) for k, v in d["risk_parts"].value_counts().items()},
        "model": {**model, "brier_skill_vs_base_rate": round(1 - model["brier"] / base_brier, 4)},
        "uncalibrated_bands": score(d["risk_6m_raw"].to_numpy(dtype=float), observed),
        "baselines": {
            "base_rate": {
                "value": round(float(base.mean()), 4),
                "from": "each window's events in the six months before its cut",
                "brier": round(base_brier, 4),
                "auc": 0.5,
            },
            "regrowth_ratio": {"auc": _auc(d["regrowth_ratio"].to_numpy(dtype=float), observed)},
        },
        "components": parts,
        "progression_at_next_reading": score(np.concatenate(next_pred), np.concatenate(next_obs)),
    }
