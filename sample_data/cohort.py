"""Vectorised simulation of the synthetic breast-oncology demo clinic.

Why simulated: no real patient record may ship with the project, and only a
simulation knows the outcome each patient *would* have had under every
treatment option, which is what lets us measure whether a recommendation is
right (see ../shared/CLINICAL.md and docs/demo-data.md).

Every quantity is drawn for all patients at once with NumPy (no Python loop
over patients), so a million patients take well under a minute on two cores.
Returned arrays are plain NumPy; ``sample_data.demo`` turns them into tables.

Model, in short:
- baseline covariates drawn to resemble GBSG2 (age, menopausal status, tumour
  size, grade, positive nodes, oestrogen/progesterone receptors), plus HER2,
  site and diagnosis date within ten years of the data cut-off;
- first-line regimen assigned with confounding by indication (receptor-positive
  patients get endocrine therapy more often, high-risk ones chemotherapy);
- recurrence-free survival from a Weibull proportional-hazards model whose
  treatment effects differ between patients (endocrine therapy helps
  receptor-positive patients, chemotherapy helps high-grade or >=4-node ones,
  anti-HER2 therapy comes with chemotherapy for HER2-positive ones); one
  exponential draw per patient is shared by all options, so the potential
  outcomes are coupled and the observed one is the assigned option's;
- lesion size follows the tumour growth-inhibition model of Stein et al.,
  f(t) = f0 (exp(-d t) + exp(g t) - 1), with per-patient decay d (response to
  the assigned regimen) and growth g (linked to prognosis);
- censoring at the data cut-off and by loss to follow-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gamma as gamma_fn
from scipy.special import gammainc

from sample_data import records
from sample_data.metastatic import (
    LINE_AGENT_NAMES,
    LINE_AGENTS,
    LINE_CLASSES,
    MAX_LINES,
    simulate_course,
    subtype_of,
)

OPTIONS = ("endocrine", "chemotherapy", "chemo_endocrine")
SITES = ("North", "Central", "South")
DAYS_PER_YEAR = 365.25
HORIZON_5Y_DAYS = 5 * DAYS_PER_YEAR

# Weibull baseline (days); chosen so that 5-year RFS is about 60 % overall,
# in GBSG2's range (GBSG2 is node-positive only, 5-year RFS about 50 %).
WEIBULL_SHAPE = 1.1
WEIBULL_SCALE_DAYS = 2100.0

VISIT_MIN_DAYS, VISIT_MAX_DAYS = 80, 130  # follow-up imaging every few months
MAX_VISITS = 21  # baseline + five years of visits

GIVEN_NAMES = np.array(
    "Anna Maria Sofia Emma Laura Julia Clara Elena Nora Lea Ingrid Petra Greta Hanna Ida "
    "Amelia Olivia Grace Chloe Zoe Aisha Fatima Priya Mei Yuki Ana Lucia Carmen Rosa Ines "
    "Helen Ruth Esther Naomi Miriam Sara Leila Noor Amara Chiara".split()
)
FAMILY_NAMES = np.array(
    "Schmidt Muller Weber Fischer Wagner Becker Hoffmann Koch Richter Klein Wolf Neumann "
    "Schwarz Braun Zimmermann Hartmann Krause Lange Werner Lehmann Smith Jones Brown Garcia "
    "Rossi Bianchi Dubois Martin Silva Santos Kowalski Novak Nagy Horvat Jensen Nielsen "
    "Larsen Berg Andersson Virtanen Okafor Mensah Haddad Khan Patel Tanaka Kim Nguyen Chen Li".split()
)


@dataclass(frozen=True)
class SimulatedClinic:
    """All arrays of one simulated clinic; per-patient arrays have length ``n``.

    Day numbers are days since 1970-01-01 (int32) so that tables can turn them
    into DATEs without Python date objects.
    """

    n: int
    seed: int
    cutoff_day: int
    patient: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]  # per patient x option, hidden
    treatments: dict[str, np.ndarray]
    visits: dict[str, np.ndarray]  # one row per clinic visit (labs)
    events: dict[str, np.ndarray]
    studies: dict[str, np.ndarray]  # one row per imaging study (STUDY_KINDS), with its lesion read
    episodes: dict[str, np.ndarray]  # disease settings and lines of therapy (EPISODE_* codes)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def treatment_log_hazard_ratios(
    er_positive: np.ndarray,
    pr_positive: np.ndarray,
    her2_positive: np.ndarray,
    grade: np.ndarray,
    positive_nodes: np.ndarray,
    age: np.ndarray,
    er_fmol: np.ndarray,
) -> np.ndarray:
    """Log hazard ratio of each option against no systemic therapy, shape (n, 3).

    This is the heterogeneity the recommender must find: endocrine therapy works
    only for hormone-receptor-positive disease (more with more receptor), chemo
    works best for grade III or >= 4 nodes or receptor-negative disease, and
    anti-HER2 therapy (given with chemotherapy) helps HER2-positive patients.
    Combining both costs a little (toxicity, competing delays), so for low-risk
    receptor-positive patients chemo adds nothing: a true "no clear difference".
    """
    hr_pos = er_positive | pr_positive
    endo = np.where(hr_pos, -0.25 - 0.08 * np.log1p(er_fmol), 0.05)
    chemo = (
        -0.15
        - 0.40 * (grade == 3)
        - 0.30 * (positive_nodes >= 4)
        - 0.25 * (~hr_pos)
        + 0.15 * (age >= 65)
        - 0.35 * her2_positive
    )
    combo = endo + chemo + 0.15
    return np.stack([endo, chemo, combo], axis=1)


def weibull_survival(t_days: float | np.ndarray, log_hazard: np.ndarray) -> np.ndarray:
    return np.exp(
        -((np.asarray(t_days) / WEIBULL_SCALE_DAYS) ** WEIBULL_SHAPE) * np.exp(log_hazard)
    )


def weibull_rmst(tau_days: float, log_hazard: np.ndarray) -> np.ndarray:
    """Restricted mean survival time, closed form: int_0^tau exp(-c t^k) dt."""
    k = WEIBULL_SHAPE
    c = np.exp(log_hazard) / WEIBULL_SCALE_DAYS**k
    a = 1.0 / k
    return a * c ** (-a) * gamma_fn(a) * gammainc(a, c * tau_days**k)


def simulate_clinic(n: int, seed: int = 20261125, cutoff_day: int | None = None) -> SimulatedClinic:
    """Draw a whole clinic; the same ``(n, seed, cutoff_day)`` always gives the same arrays."""
    if n < 1:
        raise ValueError("the number of patients must be at least 1")
    if cutoff_day is None:
        cutoff_day = int(np.datetime64("2026-06-30", "D").astype(np.int64))
    rng = np.random.default_rng(seed)
    person_id = np.arange(1, n + 1, dtype=np.int64)

    # --- baseline covariates (GBSG2-like) -----------------------------------
    age = np.clip(np.round(rng.normal(53.0, 10.0, n)), 21, 80).astype(np.int16)
    post = rng.random(n) < 1.0 / (1.0 + np.exp(-(age - 50.0) / 2.5))
    tsize = np.clip(np.round(rng.lognormal(np.log(25.0), 0.45, n)), 3, 120)
    grade = rng.choice(np.array([1, 2, 3], dtype=np.int8), size=n, p=[0.118, 0.647, 0.235])
    nodes = (1 + rng.negative_binomial(0.9, 0.9 / (0.9 + 4.0), n)).clip(max=51).astype(np.int16)
    z_er = rng.normal(0.0, 1.0, n) - 0.35 * (grade - 2)
    z_pr = 0.6 * z_er + 0.8 * rng.normal(0.0, 1.0, n)
    er_fmol = np.round(np.clip(np.exp(3.6 + 1.45 * z_er) - 2.0, 0, 2500))
    pr_fmol = np.round(np.clip(np.exp(3.4 + 1.70 * z_pr) - 2.0, 0, 2500))
    er_pos = er_fmol >= 10
    pr_pos = pr_fmol >= 10
    her2 = rng.random(n) < np.where(er_pos, 0.12, 0.30)
    site_idx = rng.choice(len(SITES), size=n, p=[0.40, 0.35, 0.25]).astype(np.int8)
    laterality_left = rng.random(n) < 0.52

    dx_day = cutoff_day - rng.integers(30, int(10 * DAYS_PER_YEAR), n)
    birth_day = dx_day - np.round(age * DAYS_PER_YEAR + rng.uniform(0, 364, n)).astype(np.int64)

    t_cat = np.where(tsize <= 20, 1, np.where(tsize <= 50, 2, 3))
    stage = np.where((nodes >= 4) | (t_cat == 3), 3, 2).astype(
        np.int8
    )  # AJCC anatomic, node-positive

    # --- confounded treatment assignment ------------------------------------
    hr_pos = er_pos | pr_pos
    high_risk = (grade == 3) | (nodes >= 4) | (age < 40)
    logits = np.stack(
        [
            1.3 * hr_pos - 0.9 * high_risk + 0.03 * (age - 53),
            -1.1 * hr_pos + 0.9 * high_risk - 0.2 + 0.8 * her2,
            0.5 * hr_pos + 0.9 * high_risk - 0.3 + 0.5 * her2,
        ],
        axis=1,
    )
    probs = 0.85 * _softmax(logits) + 0.05  # positivity: every option >= 5 %
    assigned = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).astype(np.int8)

    # --- outcomes: Weibull PH with heterogeneous effects --------------------
    prognostic = (
        0.008 * (tsize - 25)
        + 0.35 * (grade - 2)
        + 0.50 * (np.log1p(nodes) - np.log(4.0))
        - 0.10 * (np.log1p(pr_fmol) - 3.4)
        - 0.008 * (age - 53)
        + 0.25 * her2
    )
    log_hr = treatment_log_hazard_ratios(er_pos, pr_pos, her2, grade, nodes, age, er_fmol)
    log_hazard = prognostic[:, None] + log_hr  # (n, 3)
    shared_exp = rng.exponential(1.0, n)
    rfs_potential = WEIBULL_SCALE_DAYS * (shared_exp[:, None] / np.exp(log_hazard)) ** (
        1 / WEIBULL_SHAPE
    )
    rfs_5y = weibull_survival(HORIZON_5Y_DAYS, log_hazard)
    rmst_5y = weibull_rmst(HORIZON_5Y_DAYS, log_hazard)
    best = rfs_5y.argmax(axis=1).astype(np.int8)

    rows = np.arange(n)
    rfs_true = rfs_potential[rows, assigned]
    recurrence_first = rng.random(n) < 0.85  # else death without recurrence
    rng.exponential(3.0 * DAYS_PER_YEAR, n)  # was the time to death; kept so later draws stay put
    # After a recurrence: lines of therapy until progression, then best supportive care
    # (sample_data.metastatic), drawn from a stream of its own.
    rng_course = np.random.default_rng([seed, 17])
    met_rows = np.flatnonzero(recurrence_first)
    rec_all = dx_day + np.floor(rfs_true).astype(np.int64)
    course = simulate_course(
        rng_course, rec_all[met_rows], subtype_of(er_pos | pr_pos, her2)[met_rows]
    )
    death_true = rfs_true.copy()
    death_true[met_rows] = (course.death_day - dx_day[met_rows]).astype(np.float64)

    admin_censor = (cutoff_day - dx_day).astype(np.float64)
    lost = rng.exponential(40 * DAYS_PER_YEAR, n)
    censor = np.minimum(admin_censor, lost)
    follow_up_end = np.minimum(censor, death_true)
    end_reason = np.where(death_true <= censor, 2, np.where(lost < admin_censor, 1, 0)).astype(
        np.int8
    )
    recurrence_seen = recurrence_first & (rfs_true <= censor)
    death_seen = death_true <= censor

    # --- treatment lines -----------------------------------------------------
    surgery_day = dx_day + rng.integers(14, 43, n)
    fu_end_day = dx_day + np.floor(follow_up_end).astype(np.int64)
    rec_day = dx_day + np.floor(rfs_true).astype(np.int64)
    line1_start = surgery_day + rng_course.integers(28, 50, n)  # adjuvant therapy after surgery
    chemo_in = assigned != 0
    endo_in = assigned != 1
    t_person, t_class, t_agent, t_line, t_regimen, t_start, t_end = [], [], [], [], [], [], []

    def add(mask, cls, agent, line, regimen, start, end):
        idx = np.flatnonzero(mask)
        t_person.append(person_id[idx])
        t_class.append(np.full(idx.size, cls, dtype=np.int8))
        t_agent.append(
            np.asarray(agent)[idx] if np.ndim(agent) else np.full(idx.size, agent, dtype=np.int8)
        )
        t_line.append(np.full(idx.size, line, dtype=np.int8))
        t_regimen.append(
            np.asarray(regimen)[idx]
            if np.ndim(regimen)
            else np.full(idx.size, regimen, dtype=np.int8)
        )
        t_start.append(start[idx])
        t_end.append(end[idx])

    started = line1_start <= fu_end_day
    chemo_end = np.minimum(line1_start + 168, fu_end_day)
    add(started & chemo_in, 1, AGENT_CODES["AC-T"], 1, assigned, line1_start, chemo_end)
    endo_start = np.where(chemo_in, line1_start + 182, line1_start)
    endo_stop = np.minimum.reduce(
        [
            endo_start + int(5 * DAYS_PER_YEAR),
            fu_end_day,
            np.where(recurrence_seen, rec_day, np.iinfo(np.int64).max),
        ]
    )
    endo_agent = np.where(post, AGENT_CODES["letrozole"], AGENT_CODES["tamoxifen"])
    add(
        started & endo_in & (endo_start < endo_stop),
        2,
        endo_agent,
        1,
        assigned,
        endo_start,
        endo_stop,
    )
    her2_end = np.minimum(line1_start + 365, fu_end_day)
    add(
        started & chemo_in & her2, 4, AGENT_CODES["trastuzumab"], 1, assigned, line1_start, her2_end
    )
    rt_start = np.where(chemo_in, line1_start + 196, line1_start + 42)
    rt_end = np.minimum(rt_start + 35, fu_end_day)
    gets_rt = (rng.random(n) < 0.7) & (rt_start < fu_end_day)
    add(gets_rt, 3, AGENT_CODES["whole-breast radiotherapy"], 1, -1, rt_start, rt_end)
    add(
        surgery_day <= fu_end_day, 0, AGENT_CODES["breast surgery"], 1, -1, surgery_day, surgery_day
    )
    # metastatic lines: treatment_exposure's line_of_therapy 2.. (line 1 is the early-disease treatment)
    met_fu_end = fu_end_day[met_rows]
    for k in range(MAX_LINES):
        has = (course.n_lines > k) & (course.line_start[:, k] <= met_fu_end)
        idx = np.flatnonzero(has)
        if idx.size == 0:
            continue
        codes = line_agent_codes()[course.subtype[idx], k]
        classes = LINE_CLASSES[course.subtype[idx], k]
        full_agent = np.zeros(n, dtype=np.int8)
        full_class = np.zeros(n, dtype=np.int8)
        full_agent[met_rows[idx]] = codes
        full_class[met_rows[idx]] = classes
        mask = np.zeros(n, dtype=bool)
        mask[met_rows[idx]] = True
        start_k = np.zeros(n, dtype=np.int64)
        end_k = np.zeros(n, dtype=np.int64)
        start_k[met_rows[idx]] = course.line_start[idx, k]
        end_k[met_rows[idx]] = np.minimum(course.line_detect[idx, k], met_fu_end[idx])
        for cls in np.unique(classes):
            add(mask & (full_class == cls), int(cls), full_agent, k + 2, -1, start_k, end_k)

    treatments = {
        "person_id": np.concatenate(t_person),
        "class": np.concatenate(t_class),
        "agent": np.concatenate(t_agent).astype(np.int8),
        "line": np.concatenate(t_line),
        "regimen": np.concatenate(t_regimen).astype(np.int8),
        "start_day": np.concatenate(t_start).astype(np.int32),
        "end_day": np.concatenate(t_end).astype(np.int32),
    }
    # early-disease treatment stops at a recurrence: nothing of line 1 starts on or after it
    rec_of = np.where(recurrence_seen, rec_day, np.iinfo(np.int64).max)[treatments["person_id"] - 1]
    early = treatments["line"] == 1
    keep = ~early | (treatments["start_day"] < rec_of)
    treatments = {k: v[keep] for k, v in treatments.items()}
    early, rec_of = early[keep], rec_of[keep]
    treatments["end_day"] = np.where(
        early, np.minimum(treatments["end_day"], rec_of), treatments["end_day"]
    ).astype(np.int32)
    # ongoing at the cut-off: no end date yet
    treatments["ongoing"] = treatments["end_day"] >= cutoff_day
    order = np.lexsort((treatments["start_day"], treatments["person_id"]))
    treatments = {k: v[order] for k, v in treatments.items()}

    # --- clinic visits with labs, every three to four months over five years --------
    span = np.minimum(follow_up_end, 5 * DAYS_PER_YEAR)
    n_visits = np.minimum(
        1 + np.floor(span / ((VISIT_MIN_DAYS + VISIT_MAX_DAYS) / 2)), MAX_VISITS
    ).astype(np.int64)
    total = int(n_visits.sum())
    v_patient = np.repeat(rows, n_visits)
    first_of = np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    v_index = np.arange(total) - first_of
    gaps = rng.integers(VISIT_MIN_DAYS, VISIT_MAX_DAYS + 1, total)
    gaps[v_index == 0] = 0
    # one cumsum over all visits, restarted per patient by subtracting its value at the first visit
    csum = np.cumsum(gaps)
    offset = csum - csum[first_of]
    v_day = dx_day[v_patient] + offset
    keep = v_day <= fu_end_day[v_patient]
    v_patient, v_index, v_day = v_patient[keep], v_index[keep], v_day[keep]

    # the true tumour kinetics of the early-disease regimen (hidden truth, truth.patient_parameters)
    response = -log_hr[rows, assigned]  # bigger benefit, faster shrinkage
    decay = 0.0015 + 0.006 * np.clip(response, 0, None) * rng.lognormal(0, 0.3, n)
    growth = 0.0006 * np.exp(0.8 * prognostic + rng.normal(0, 0.35, n))

    on_chemo = np.zeros(v_day.size, dtype=bool)
    chemo_mask = chemo_in[v_patient]
    on_chemo[chemo_mask] = (v_day[chemo_mask] >= line1_start[v_patient][chemo_mask]) & (
        v_day[chemo_mask] <= line1_start[v_patient][chemo_mask] + 168
    )
    metastatic_now = recurrence_seen[v_patient] & (v_day >= rec_day[v_patient])
    ca15_3 = np.round(
        14.0 * rng.lognormal(0, 0.25, v_day.size)
        + metastatic_now * 30.0 * rng.lognormal(0, 0.6, v_day.size),
        1,
    )
    haemoglobin = np.round(13.4 - 1.6 * on_chemo + rng.normal(0, 0.6, v_day.size), 1)
    neutrophils = np.round(
        np.clip(4.6 - 2.3 * on_chemo + rng.normal(0, 0.8, v_day.size), 0.2, None), 2
    )
    visits = {
        "person_id": person_id[v_patient],
        "visit_index": v_index.astype(np.int16),
        "day": v_day.astype(np.int32),
        "ca15_3": ca15_3,
        "haemoglobin": haemoglobin,
        "neutrophils": neutrophils,
    }

    studies = records.studies(
        rng_course, person_id, dx_day, fu_end_day, rec_day, recurrence_seen, met_rows, course
    )
    episodes = records.episodes(
        person_id=person_id,
        dx_day=dx_day,
        cutoff_day=cutoff_day,
        fu_end_day=fu_end_day,
        rec_day=rec_day,
        recurrence_seen=recurrence_seen,
        death_day=dx_day + np.floor(death_true).astype(np.int64),
        death_seen=death_true <= censor,
        started=started,
        adjuvant_start=line1_start,
        adjuvant_planned_end=np.maximum.reduce(
            [
                np.where(chemo_in, line1_start + 168, line1_start),
                np.where(endo_in, endo_start + int(5 * DAYS_PER_YEAR), line1_start),
                np.where(chemo_in & her2, line1_start + 365, line1_start),
                np.where(gets_rt, rt_start + 35, line1_start),
            ]
        ),
        met_rows=met_rows,
        course=course,
    )

    ev_person = np.concatenate([person_id[recurrence_seen], person_id[death_seen]])
    ev_type = np.concatenate(
        [np.zeros(recurrence_seen.sum(), np.int8), np.ones(death_seen.sum(), np.int8)]
    )
    ev_day = np.concatenate(
        [rec_day[recurrence_seen], (dx_day + np.floor(death_true).astype(np.int64))[death_seen]]
    )
    order = np.lexsort((ev_type, ev_person))
    events = {
        "person_id": ev_person[order],
        "type": ev_type[order],
        "day": ev_day[order].astype(np.int32),
    }

    patient = {
        "person_id": person_id,
        "given_idx": rng.integers(0, GIVEN_NAMES.size, n).astype(np.int16),
        "family_idx": rng.integers(0, FAMILY_NAMES.size, n).astype(np.int16),
        "birth_day": birth_day.astype(np.int32),
        "dx_day": dx_day.astype(np.int32),
        "age": age,
        "post": post,
        "site": site_idx,
        "laterality_left": laterality_left,
        "stage": stage,
        "grade": grade,
        "tsize_mm": tsize,
        "nodes": nodes,
        "er_fmol": er_fmol,
        "pr_fmol": pr_fmol,
        "er_pos": er_pos,
        "pr_pos": pr_pos,
        "her2": her2,
        "fu_end_day": fu_end_day.astype(np.int32),
        "end_reason": end_reason,
        "assigned": assigned,
        "best": best,
        "prognostic": prognostic,
        "growth": growth,
        "decay": decay,
        "rfs_observed_days": np.minimum(rfs_true, censor),
        "rfs_event": (rfs_true <= censor),
    }
    patient["subtype"] = subtype_of(er_pos | pr_pos, her2)
    truth = {"rfs_days": rfs_potential, "rfs_5y": rfs_5y, "rmst_5y": rmst_5y}
    return SimulatedClinic(
        n, seed, cutoff_day, patient, truth, treatments, visits, events, studies, episodes
    )


_EARLY_AGENTS = (
    ("AC-T", "AC-T (doxorubicin, cyclophosphamide, paclitaxel)"),
    ("tamoxifen", "tamoxifen"),
    ("letrozole", "letrozole"),
    ("trastuzumab", "trastuzumab"),
    ("whole-breast radiotherapy", "whole-breast radiotherapy"),
    ("breast surgery", "breast surgery (lumpectomy or mastectomy)"),
)
_LATER = tuple(a for a in LINE_AGENT_NAMES if a not in {k for k, _ in _EARLY_AGENTS})
AGENTS = tuple(name for _, name in _EARLY_AGENTS) + _LATER
AGENT_CODES = {key: i for i, (key, _) in enumerate(_EARLY_AGENTS)} | {
    a: len(_EARLY_AGENTS) + i for i, a in enumerate(_LATER)
}


def line_agent_codes() -> np.ndarray:
    """AGENTS index of each metastatic line's agent, shape (subtypes, lines)."""
    return np.array([[AGENT_CODES[a] for a, _ in sub] for sub in LINE_AGENTS], dtype=np.int8)


TREATMENT_CLASSES = ("surgery", "chemotherapy", "endocrine", "radiotherapy", "anti_her2")
