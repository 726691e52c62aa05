"""Small simulated trials with a known shape (follow-up, last time, unit), for the data-driven horizon tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def trial_frame(
    n: int = 240, *, follow_up_days: float = 3 * 365.25, seed: int = 0, last_is_event: bool = False
) -> pd.DataFrame:
    """Two arms, randomised; exponential RFS (arm B halves the hazard for high-marker patients).

    Censored administratively at ``follow_up_days`` (uniform entry); ``last_is_event``: the
    longest time is an observed event (the IPCW metrics once failed on that).
    """
    rng = np.random.default_rng(seed)
    marker = rng.normal(0, 1, n)
    age = np.round(rng.normal(60, 8, n))
    arm = np.where(rng.random(n) < 0.5, "B", "A")
    hazard = np.exp(0.5 * marker) / 700.0 * np.where((arm == "B") & (marker > 0), 0.5, 1.0)
    t_event = rng.exponential(1 / hazard)
    entry_censor = rng.uniform(0.4, 1.0, n) * follow_up_days
    time = np.minimum(t_event, entry_censor)
    event = (t_event <= entry_censor).astype(int)
    if last_is_event:
        i = int(np.argmax(time))
        time[i], event[i] = time.max() + 5.0, 1
    return pd.DataFrame(
        {"arm": arm, "time": np.round(time, 1) + 1.0, "event": event, "marker": marker, "age": age}
    )
