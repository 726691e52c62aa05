"""The demo clinic after a recurrence: metastatic disease, lines of therapy, restaging scans, brain metastases.

Why a course of its own: after a distant recurrence a patient no longer has "a first-line option";
she has a sequence of lines of therapy, each ended by progression (RECIST 1.1 on restaging CT
every 8-12 weeks) and followed by the next line or by best supportive care. Progression-free
survival (PFS) per line and overall survival (OS) are drawn to fall in published ranges per
subtype (docs/demo-data.md cites them); on each line the target lesion follows the tumour
growth-inhibition model from the line's baseline, and RECIST 1.1 applied to the noisy readings
decides the scan that ends the line, so the record and the readings always agree.

Everything is vectorised over patients; the only Python loop is over the (at most five) lines.
Day numbers are days since 1970-01-01, as in ``sample_data.cohort``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUBTYPES = ("HR+/HER2-", "HER2+", "triple-negative")
MAX_LINES = 5
# Median PFS in days per subtype (rows) and metastatic line (columns), before the per-patient
# frailty; docs/demo-data.md gives the trials each comes from.
PFS_MEDIAN_DAYS = np.array(
    [
        [860.0, 200.0, 150.0, 110.0, 90.0],  # HR+/HER2-: ET + CDK4/6i, fulvestrant, chemo...
        [565.0, 300.0, 180.0, 120.0, 90.0],  # HER2+: THP, T-DXd, tucatinib...
        [120.0, 90.0, 70.0, 60.0, 50.0],  # triple-negative: taxane, sacituzumab, eribulin...
    ]
)
PFS_WEIBULL_SHAPE = 1.3
MIN_PFS_DAYS = 42  # nobody is judged progressed before the first restaging scan
# Probability of another line after progression on line k (else best supportive care), per subtype.
NEXT_LINE_PROB = np.array(
    [
        [0.85, 0.75, 0.65, 0.5, 0.0],
        [0.85, 0.75, 0.65, 0.5, 0.0],
        [0.70, 0.55, 0.45, 0.35, 0.0],  # triple-negative: fewer patients fit for later lines
    ]
)
BSC_MEAN_DAYS = 110.0  # survival on best supportive care after the last line
BRAIN_MET_PROB = np.array([0.12, 0.40, 0.35])  # over the metastatic course, per subtype
SCAN_MIN_DAYS, SCAN_MAX_DAYS = 56, 84  # restaging CT every 8-12 weeks
MAX_SCANS = 66  # ten years at the shortest interval: the demo's whole window after diagnosis
BRAIN_MR_EVERY_DAYS = (84, 105)
MAX_BRAIN_MR = 8
MAX_FOLLOWED_MM = (
    150.0  # a target lesion past this is no longer followed (clinically: progression long before)
)

# Agent (as written in treatment_exposure) and treatment class code (cohort.TREATMENT_CLASSES)
# of each metastatic line, per subtype.
LINE_AGENTS = (
    (
        ("letrozole + palbociclib", 2),
        ("fulvestrant", 2),
        ("capecitabine", 1),
        ("paclitaxel", 1),
        ("eribulin", 1),
    ),
    (
        ("docetaxel + trastuzumab + pertuzumab", 4),
        ("trastuzumab deruxtecan", 4),
        ("tucatinib + trastuzumab + capecitabine", 4),
        ("eribulin", 1),
        ("vinorelbine", 1),
    ),
    (
        ("paclitaxel", 1),
        ("sacituzumab govitecan", 1),
        ("eribulin", 1),
        ("capecitabine", 1),
        ("vinorelbine", 1),
    ),
)
LINE_CLASSES = np.array([[c for _, c in sub] for sub in LINE_AGENTS], dtype=np.int8)
LINE_AGENT_NAMES = tuple(sorted({a for sub in LINE_AGENTS for a, _ in sub}))


@dataclass(frozen=True)
class MetastaticCourse:
    """Per metastatic patient (rows of the arrays, in the order given) and per line (columns).

    ``line_start`` / ``line_detect`` hold day numbers; columns past ``n_lines`` are unused.
    ``line_detect`` is the restaging scan that showed progression (the line's end).
    """

    subtype: np.ndarray  # index into SUBTYPES
    n_lines: np.ndarray
    line_start: np.ndarray  # (m, MAX_LINES)
    line_detect: np.ndarray  # (m, MAX_LINES)
    death_day: np.ndarray
    brain_line: np.ndarray  # line whose progression was a new brain metastasis; -1: none
    scan_day: np.ndarray  # (m, MAX_SCANS) restaging CT grid from the recurrence
    scan_mm: (
        np.ndarray
    )  # (m, MAX_SCANS) the read target-lesion diameter at each scan, NaN when not followed


def subtype_of(hr_positive: np.ndarray, her2_positive: np.ndarray) -> np.ndarray:
    """0: HR+/HER2-, 1: HER2+, 2: triple-negative."""
    return np.where(her2_positive, 1, np.where(hr_positive, 0, 2)).astype(np.int8)


def _trajectory(base, decay, growth, t) -> np.ndarray:
    """Diameter on a line: the tumour growth-inhibition model of Stein et al.,
    f(t) = f0 (exp(-d t) + exp(g t) - 1), from the line's baseline ``base`` (t in days from its start)."""
    t = np.maximum(t, 0.0)
    return base * (np.exp(-decay * t) + np.exp(growth * t) - 1.0)


def _rates(base, depth, pfs) -> tuple[np.ndarray, np.ndarray]:
    """Decay d and growth g of a line whose shrinkage is about ``depth`` and whose regrowth reaches
    RECIST progression over the nadir (>= 20 % and >= 5 mm, a little past it) about ``pfs`` days in.

    d: the shrinkage of the sensitive part by the nadir time (half the PFS, at most 120 days);
    g: from f(T) = target with the decay term at T kept (closed form, no search).
    """
    t_nadir = np.minimum(0.5 * pfs, 120.0)
    decay = -np.log(1.0 - depth) / t_nadir
    nadir = 1.0 - depth  # relative to the baseline
    target = 1.05 * np.maximum(1.2 * nadir, nadir + 5.0 / base)
    growth = np.log(np.maximum(target + 1.0 - np.exp(-decay * pfs), 1.0 + 1e-6)) / pfs
    return decay, growth


def simulate_course(
    rng: np.random.Generator, recurrence_day: np.ndarray, subtype: np.ndarray
) -> MetastaticCourse:
    """Lines of therapy, death, brain metastases and restaging readings after each recurrence."""
    m = recurrence_day.size
    rows = np.arange(m)
    gaps = rng.integers(SCAN_MIN_DAYS, SCAN_MAX_DAYS + 1, (m, MAX_SCANS))
    gaps[:, 0] = 0
    scan_day = recurrence_day[:, None] + np.cumsum(gaps, axis=1)  # scan 0: restaging at recurrence

    frailty = rng.lognormal(0.0, 0.35, m)
    pfs = (
        PFS_MEDIAN_DAYS[subtype]
        * (rng.exponential(1.0, (m, MAX_LINES)) / np.log(2.0)) ** (1.0 / PFS_WEIBULL_SHAPE)
        * frailty[:, None]
    )
    pfs = np.maximum(pfs, MIN_PFS_DAYS)
    another = rng.random((m, MAX_LINES)) < NEXT_LINE_PROB[subtype]
    depth = rng.beta(2.0, 3.0, (m, MAX_LINES)) * np.array([1.0, 0.75, 0.6, 0.5, 0.45])
    base = np.clip(rng.lognormal(np.log(30.0), 0.4, m), 12.0, 90.0)  # measurable: >= 10 mm

    big = np.iinfo(np.int64).max // 4
    line_start = np.full((m, MAX_LINES), big, dtype=np.int64)
    line_detect = np.full((m, MAX_LINES), big, dtype=np.int64)
    n_lines = np.zeros(m, dtype=np.int64)
    readings = np.full((m, MAX_SCANS), np.nan, dtype=np.float32)  # float32: half the memory traffic
    noise = rng.standard_normal((m, MAX_SCANS), dtype=np.float32)
    scan_index = np.arange(MAX_SCANS)
    baseline_scan = np.zeros(m, dtype=np.int64)  # line 1's baseline: the restaging at recurrence
    on = np.ones(m, dtype=bool)
    start = recurrence_day + rng.integers(14, 29, m)
    size = base.copy()
    for k in range(MAX_LINES):
        idx = np.flatnonzero(on)
        if idx.size == 0:
            break
        line_start[idx, k] = start[idx]
        decay, growth = _rates(size[idx], depth[idx, k], pfs[idx, k])
        t = (scan_day[idx] - start[idx, None]).astype(np.float32)
        true_mm = _trajectory(
            size[idx, None].astype(np.float32),
            decay[:, None].astype(np.float32),
            growth[:, None].astype(np.float32),
            t,
        )
        raw = np.clip(true_mm + noise[idx] * (0.4 + 0.015 * true_mm), 0.0, None)
        read = np.round(raw.astype(np.float64), 1)  # RECIST decided on the values the store keeps
        # RECIST 1.1 on the readings themselves: the first scan after the baseline that is >= 20 %
        # and >= 5 mm over the smallest reading so far on this line ends the line
        valid = scan_index[None, :] >= baseline_scan[idx, None]
        running = np.minimum.accumulate(np.where(valid, read, np.inf), axis=1)
        before = np.concatenate([np.full((idx.size, 1), np.inf), running[:, :-1]], axis=1)
        progressed = (
            valid
            & (scan_index[None, :] > baseline_scan[idx, None])
            & (read >= 1.2 * before)
            & (read - before >= 5.0)
        )
        has = progressed.any(axis=1)
        first = np.where(has, progressed.argmax(axis=1), MAX_SCANS - 1)
        detect = np.where(
            has, scan_day[idx, first], np.ceil(start[idx] + pfs[idx, k]).astype(np.int64)
        )
        line_detect[idx, k] = detect
        n_lines[idx] += 1
        # the line's readings: from the scan after its baseline (line 1: the baseline too) to the
        # scan that showed progression
        first_own = baseline_scan[idx] + (k > 0)
        own = (scan_index[None, :] >= first_own[:, None]) & (scan_index[None, :] <= first[:, None])
        block = readings[idx]
        block[own] = read[own]
        readings[idx] = block
        size[idx] = true_mm[np.arange(idx.size), first]
        baseline_scan[idx] = first
        progressed_now = np.zeros(m, dtype=bool)
        progressed_now[idx[has]] = True
        on = on & another[:, k] & progressed_now
        start = np.where(on, line_detect[:, k] + rng.integers(14, 29, m), start)
    last_detect = line_detect[rows, n_lines - 1]
    death_day = last_detect + np.ceil(rng.exponential(BSC_MEAN_DAYS, m)).astype(np.int64)

    brain = rng.random(m) < BRAIN_MET_PROB[subtype]
    brain_line = np.where(brain, (rng.random(m) * n_lines).astype(np.int64), -1)
    # a lesion past MAX_FOLLOWED_MM is no longer followed: nothing from that scan on
    too_big = np.maximum.accumulate(np.nan_to_num(readings, nan=0.0) > MAX_FOLLOWED_MM, axis=1)
    mm = np.round(
        np.where(too_big, np.nan, readings).astype(np.float64), 1
    )  # 23.1, not 23.100000381
    return MetastaticCourse(
        subtype=subtype,
        n_lines=n_lines,
        line_start=line_start,
        line_detect=line_detect,
        death_day=death_day,
        brain_line=brain_line,
        scan_day=scan_day,
        scan_mm=mm,
    )
