"""Constants of the survival statistics, defined once.

Why one module: the same 365.25 and 1.959963984540054 were literals or private copies in the
cohort builder, the treatment model, the forecasts and the figures; a copy that drifts (365
against 365.25, 1.96 against the exact quantile) makes two pages disagree about one patient.
"""

from __future__ import annotations

from typing import Final

# The Julian year: the mean calendar year over the four-year leap cycle, so that years of
# follow-up are the same on every page and a 5-year horizon does not depend on leap days.
DAYS_PER_YEAR: Final[float] = 365.25

# Five-year recurrence-free survival: the clinic's main outcome horizon (1826.25 days).
HORIZON_5Y_DAYS: Final[float] = 5 * DAYS_PER_YEAR

# The standard normal's 97.5 % quantile (scipy.stats.norm.ppf(0.975), lifelines' z for its bands):
# two-sided 95 % intervals. The exact value, not 1.96, so that bands equal the references' bands.
Z_95: Final[float] = 1.959963984540054
