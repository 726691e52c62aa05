"""Imaging studies and disease episodes of the demo clinic, drawn from each patient's course.

Why its own module: what is imaged, and how a course reads as episodes, follows the disease
setting, and both are used only by the demo writer.

- Early disease: a diagnostic mammogram at diagnosis, then yearly surveillance mammograms
  without a target lesion (after surgery there is nothing measurable to follow) until a
  recurrence or the end of follow-up.
- Metastatic disease: restaging CT every 8-12 weeks from the recurrence, each with the target
  lesion's longest diameter (``lesion_longest_diameter``) while a line is being followed.
- Brain MR only where a brain metastasis was found: from the progression it caused, every
  three months, with ``brain_lesion_longest_diameter``.

Episodes follow OMOP's episode idea (docs/demo-data.md): one row per disease setting ("disease")
and per phase inside it (adjuvant therapy, surveillance, each line of therapy, best supportive
care), with start, end and the reason it ended.
"""

from __future__ import annotations

import numpy as np

from sample_data.metastatic import BRAIN_MR_EVERY_DAYS, MAX_BRAIN_MR, MAX_LINES, MetastaticCourse

DAYS_PER_YEAR = 365.25
MAX_SURVEILLANCE_MG = 10
# imaging_study kinds: (modality, description)
STUDY_KINDS = (
    ("MG", "Mammography, diagnostic"),
    ("MG", "Mammography, surveillance (no target lesion)"),
    ("CT", "CT chest/abdomen/pelvis with contrast, restaging"),
    ("MR", "MR brain with contrast"),
)
EPISODE_SETTINGS = ("early", "metastatic")
EPISODE_KINDS = ("disease", "adjuvant", "surveillance", "line", "best_supportive_care")
EPISODE_END_REASONS = ("completed", "progression", "recurrence", "death")
NONE = -1


def studies(
    rng: np.random.Generator,
    person_id: np.ndarray,
    dx_day: np.ndarray,
    fu_end_day: np.ndarray,
    rec_day: np.ndarray,
    recurrence_seen: np.ndarray,
    met_rows: np.ndarray,
    course: MetastaticCourse,
) -> dict[str, np.ndarray]:
    """One row per study, in person then date order: person_id, day, kind, lesion_mm (NaN: none)."""
    n = person_id.size
    # early disease: diagnostic mammogram, then yearly surveillance until recurrence / end
    years = np.arange(1, MAX_SURVEILLANCE_MG + 1)
    mg_day = (
        dx_day[:, None]
        + np.round(years * DAYS_PER_YEAR).astype(np.int64)
        + rng.integers(-30, 31, (n, MAX_SURVEILLANCE_MG))
    )
    stop = np.where(recurrence_seen, np.minimum(rec_day - 1, fu_end_day), fu_end_day)
    mg_keep = mg_day <= stop[:, None]
    mg_p, mg_k = np.nonzero(mg_keep)
    parts = [
        (np.arange(n), dx_day.astype(np.int64), np.zeros(n, np.int8), np.full(n, np.nan)),
        (mg_p, mg_day[mg_p, mg_k], np.ones(mg_p.size, np.int8), np.full(mg_p.size, np.nan)),
    ]
    # metastatic disease: restaging CT with the target lesion while it is followed
    seen = recurrence_seen[met_rows]
    ct_keep = (
        seen[:, None]
        & ~np.isnan(course.scan_mm)
        & (course.scan_day <= fu_end_day[met_rows][:, None])
    )
    ct_r, ct_j = np.nonzero(ct_keep)
    read_mm = course.scan_mm[ct_r, ct_j]  # read with measurement noise by simulate_course
    parts.append(
        (met_rows[ct_r], course.scan_day[ct_r, ct_j], np.full(ct_r.size, 2, np.int8), read_mm)
    )
    # brain MR after the progression that was a new brain metastasis
    has_brain = seen & (course.brain_line >= 0)
    b = np.flatnonzero(has_brain)
    first = course.line_detect[b, course.brain_line[b]]
    steps = np.cumsum(rng.integers(*BRAIN_MR_EVERY_DAYS, (b.size, MAX_BRAIN_MR)), axis=1)
    steps[:, 0] = 0
    mr_day = first[:, None] + steps
    mr_keep = mr_day <= fu_end_day[met_rows[b]][:, None]
    mr_r, mr_j = np.nonzero(mr_keep)
    size0 = np.clip(rng.lognormal(np.log(14.0), 0.4, b.size), 5.0, 40.0)
    mr_mm = np.round(size0[mr_r] * np.maximum(0.35, 1.0 - 0.25 * mr_j), 1)  # treated: shrinks
    parts.append((met_rows[b][mr_r], mr_day[mr_r, mr_j], np.full(mr_r.size, 3, np.int8), mr_mm))

    who = np.concatenate([p[0] for p in parts])
    day = np.concatenate([p[1] for p in parts])
    kind = np.concatenate([p[2] for p in parts])
    mm = np.concatenate([p[3] for p in parts])
    order = np.lexsort((kind, day, who))
    return {
        "person_id": person_id[who[order]],
        "day": day[order].astype(np.int32),
        "kind": kind[order],
        "lesion_mm": mm[order],
    }


def episodes(
    *,
    person_id: np.ndarray,
    dx_day: np.ndarray,
    cutoff_day: int,
    fu_end_day: np.ndarray,
    rec_day: np.ndarray,
    recurrence_seen: np.ndarray,
    death_day: np.ndarray,
    death_seen: np.ndarray,
    started: np.ndarray,
    adjuvant_start: np.ndarray,
    adjuvant_planned_end: np.ndarray,
    met_rows: np.ndarray,
    course: MetastaticCourse,
) -> dict[str, np.ndarray]:
    """Episode rows in person order (codes into EPISODE_*; -1 for none).

    Columns: person_id, setting, kind, line (0: not a line), start_day, end_day, end_reason,
    agent_line (the metastatic line's index into ``course``'s agents; -1 otherwise), brain
    (the line ended with a new brain metastasis).
    """
    n = person_id.size
    rows = np.arange(n)
    out: list[tuple] = []

    def add(idx, setting, kind, line, start, end, reason, brain=None):
        idx = np.asarray(idx)
        out.append(
            (
                idx,
                np.full(idx.size, setting, np.int8),
                np.full(idx.size, kind, np.int8),
                np.full(idx.size, line, np.int8),
                np.asarray(start, np.int64),
                np.asarray(end, np.int64),
                np.asarray(reason, np.int8),
                np.zeros(idx.size, bool) if brain is None else brain,
            )
        )

    # early disease: diagnosis until recurrence or death
    d_end = np.where(recurrence_seen, rec_day, np.where(death_seen, death_day, NONE))
    d_reason = np.where(recurrence_seen, 2, np.where(death_seen, 3, NONE))
    add(rows, 0, 0, 0, dx_day, d_end, d_reason)
    # adjuvant therapy: until completed, recurrence or death; then surveillance
    before = np.where(recurrence_seen, rec_day, np.iinfo(np.int64).max)
    before = np.minimum(before, np.where(death_seen, death_day, np.iinfo(np.int64).max))
    a = np.flatnonzero(started & (adjuvant_start < before))
    planned = adjuvant_planned_end[a]
    rec_a = np.where(recurrence_seen[a], rec_day[a], np.iinfo(np.int64).max)
    death_a = np.where(death_seen[a], death_day[a], np.iinfo(np.int64).max)
    completed = (planned < rec_a) & (planned < death_a) & (planned <= fu_end_day[a])
    completed &= planned < cutoff_day
    a_reason = np.where(
        completed, 0, np.where(rec_a <= planned, 2, np.where(death_a <= planned, 3, NONE))
    )
    a_end = np.where(completed, planned, np.where(a_reason >= 0, np.minimum(rec_a, death_a), NONE))
    add(a, 0, 1, 0, adjuvant_start[a], a_end, a_reason)
    s = a[completed]
    s_end = np.where(recurrence_seen[s], rec_day[s], np.where(death_seen[s], death_day[s], NONE))
    s_reason = np.where(recurrence_seen[s], 2, np.where(death_seen[s], 3, NONE))
    add(s, 0, 2, 0, planned[completed] + 1, s_end, s_reason)

    # metastatic disease: recurrence until death; lines; best supportive care
    seen = recurrence_seen[met_rows]
    m = np.flatnonzero(seen)
    who = met_rows[m]
    add(
        who,
        1,
        0,
        0,
        rec_day[who],
        np.where(death_seen[who], death_day[who], NONE),
        np.where(death_seen[who], 3, NONE),
    )
    agent_line = []
    for k in range(MAX_LINES):
        has = (course.n_lines[m] > k) & (course.line_start[m, k] <= fu_end_day[who])
        i = m[has]
        w = met_rows[i]
        detect = course.line_detect[i, k]
        ended = detect <= fu_end_day[w]
        add(
            w,
            1,
            3,
            k + 1,
            course.line_start[i, k],
            np.where(ended, detect, NONE),
            np.where(ended, 1, NONE),
            brain=ended & (course.brain_line[i] == k),
        )
        agent_line.append((len(out) - 1, i, k))
    last = course.line_detect[m, course.n_lines[m] - 1]
    bsc = last <= fu_end_day[who]  # every line she was to get is over: best supportive care
    w = who[bsc]
    add(
        w,
        1,
        4,
        0,
        last[bsc],
        np.where(death_seen[w], death_day[w], NONE),
        np.where(death_seen[w], 3, NONE),
    )

    agent = [np.full(part[0].size, NONE, np.int16) for part in out]
    for pos, i, k in agent_line:
        agent[pos] = (course.subtype[i].astype(np.int16) * MAX_LINES + k).astype(np.int16)
    cols = list(zip(*out, strict=True))
    idx = np.concatenate(cols[0])
    setting, kind = np.concatenate(cols[1]), np.concatenate(cols[2])
    start = np.concatenate(cols[4])
    order = np.lexsort((kind, start, setting, idx))
    return {
        "person_id": person_id[idx[order]],
        "setting": setting[order],
        "kind": kind[order],
        "line": np.concatenate(cols[3])[order],
        "start_day": start[order].astype(np.int32),
        "end_day": np.concatenate(cols[5])[order].astype(np.int32),
        "end_reason": np.concatenate(cols[6])[order],
        "agent_line": np.concatenate(agent)[order],  # subtype * MAX_LINES + line index
        "brain": np.concatenate(cols[7])[order],
    }
