"""The calibration-curve builders shared by the Governance page and the dossier."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard.figures.governance import (
    calibration_curves_figure,
    card_calibration_series,
    risk_calibration_series,
)


def test_curves_draw_each_series_with_its_band_and_the_diagonal():
    frame = pd.DataFrame(
        {
            "predicted": [0.2, 0.5, 0.8],
            "observed": [0.25, 0.45, None],
            "ci_low": [0.1, 0.3, None],
            "ci_high": [0.4, 0.6, None],
            "n": [10, 20, 30],
        }
    )
    fig = calibration_curves_figure([("a", frame)], title="t", x_title="x", y_title="y")
    assert fig.data[0].name == "perfect calibration" and list(fig.data[0].x) == [0.0, 1.0]
    curve = fig.data[1]
    assert list(curve.x) == [0.2, 0.5]  # the bin without an observation is left out
    assert list(curve.error_y.array) == pytest.approx([0.15, 0.15])  # up to ci_high
    assert list(curve.error_y.arrayminus) == pytest.approx([0.15, 0.15])  # down to ci_low


def test_series_read_a_treatment_card_and_a_forecast_run():
    card = {
        "calibration": {
            "bins": [
                {"mean_predicted": 0.4, "observed": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 9}
            ]
        }
    }
    [(name, frame)] = card_calibration_series(card)
    assert "not recalibrated" in name and frame["predicted"].tolist() == [0.4]
    assert card_calibration_series({}) == []  # a card written before the calibration existed
    run = {
        "risk_6m": {
            "uncalibrated_bands": {
                "bins": [
                    {
                        "mean_predicted": 0.3,
                        "observed": 0.2,
                        "observed_95ci": [0.1, 0.3],
                        "patients": 5,
                    }
                ]
            },
            "model": {
                "bins": [
                    {
                        "mean_predicted": 0.25,
                        "observed": 0.2,
                        "observed_95ci": [0.1, 0.3],
                        "patients": 5,
                    }
                ]
            },
        }
    }
    before, after = risk_calibration_series(run)
    assert before[0].startswith("before") and after[0].startswith("after")
    assert after[1][["ci_low", "ci_high", "n"]].iloc[0].tolist() == [0.1, 0.3, 5]
