"""analytics.treatment.data: GBSG2 as shipped, and a user's trial CSV with every mismatch refused clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.treatment.data import (
    TreatmentDataError,
    gbsg2_table,
    read_trial_file,
    table_from_frame,
)


def test_gbsg2_table_matches_the_published_counts():
    t = gbsg2_table()
    assert (t.n, int(t.event.sum())) == (686, 299)
    assert int((t.treatment == "hormonal therapy").sum()) == 246
    assert t.covariates.notna().all().all() and set(t.covariates["tgrade"]) == {1.0, 2.0, 3.0}
    assert all("(" in label for label in t.feature_labels)  # clinical names carry units


def _trial() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 80
    return pd.DataFrame(
        {
            "arm": rng.choice(["A", "B"], n),
            "days": rng.integers(10, 2000, n),
            "relapse": rng.integers(0, 2, n),
            "age": rng.integers(30, 80, n),
            "grade": rng.choice(["low", "mid", "high"], n),
            "smoker": rng.choice(["yes", "no"], n),
        }
    )


def test_a_trial_frame_becomes_numeric_covariates():
    t = table_from_frame(_trial(), treatment="arm", time="days", event="relapse")
    assert t.options == ("A", "B")
    assert list(t.covariates.columns) == ["age", "grade=low", "grade=mid", "smoker=yes"]
    assert t.covariates.dtypes.eq(float).all()
    t2 = table_from_frame(
        _trial(), treatment="arm", time="days", event="relapse", covariates=["age"]
    )
    assert list(t2.covariates.columns) == ["age"]


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (None, {"treatment": "therapy"}, "--treatment 'therapy'"),
        (None, {"covariates": ["age", "bmi"]}, "covariate 'bmi'"),
        (None, {"time": "arm"}, "three different columns"),
        (lambda d: d.assign(relapse=d["relapse"] * 2), {}, "must hold 0/1"),
        (lambda d: d.assign(days=-d["days"]), {}, "must hold positive numbers"),
        (lambda d: d.assign(arm="A"), {}, "at least two are needed"),
        (
            lambda d: d.assign(age=d["age"].where(d.index > 2)),
            {},
            "3 row(s) have missing values (in age)",
        ),
    ],
)
def test_mismatched_columns_give_clear_errors(change, kwargs, message):
    frame = _trial() if change is None else change(_trial())
    args = {"treatment": "arm", "time": "days", "event": "relapse", **kwargs}
    with pytest.raises(TreatmentDataError) as err:
        table_from_frame(frame, **args)
    assert message in str(err.value)


def test_missing_column_message_lists_what_the_file_has():
    with pytest.raises(TreatmentDataError, match="the file has: arm, days, relapse"):
        table_from_frame(_trial(), treatment="arm", time="days", event="status")


def test_unreadable_or_absent_files(tmp_path):
    with pytest.raises(TreatmentDataError, match="no file"):
        read_trial_file(tmp_path / "none.csv")
    bad = tmp_path / "empty.csv"
    bad.write_bytes(b"")
    with pytest.raises(TreatmentDataError, match="cannot be read"):
        read_trial_file(bad)
