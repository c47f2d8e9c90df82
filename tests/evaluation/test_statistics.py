"""The evaluation's statistics on cases with known answers: bootstrap intervals are seeded
and match the point metrics, ECE and PSI give their textbook values, and small slices are
reported but not gated."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from trainflow.evaluation.bootstrap import (
    WeightedScores,
    bootstrap_intervals,
    paired_difference_interval,
)
from trainflow.evaluation.calibration import expected_calibration_error, reliability_curve
from trainflow.evaluation.drift import feature_drift, population_stability_index
from trainflow.evaluation.metrics import binary_metrics, slice_metrics


def noisy_scores(rows: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    score = np.clip(0.3 * y + rng.normal(0.35, 0.2, rows), 0, 1).round(2)  # with ties
    return y, score


def test_weighted_metrics_with_unit_weights_equal_the_point_metrics() -> None:
    y, score = noisy_scores()
    weighted = WeightedScores(y, score, 0.5).metrics(np.ones(len(y)))
    point = binary_metrics(y, score, 0.5)
    for metric, value in weighted.items():
        assert value == pytest.approx(point[metric], abs=1e-9), metric


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    y, score = noisy_scores()
    kwargs = {"threshold": 0.5, "resamples": 50, "confidence": 0.95}
    first = bootstrap_intervals(y, {"m": score}, seed=1, **kwargs)
    again = bootstrap_intervals(y, {"m": score}, seed=1, **kwargs)
    other = bootstrap_intervals(y, {"m": score}, seed=2, **kwargs)
    assert first == again
    assert first["m"]["roc_auc"] != other["m"]["roc_auc"]
    assert first["m"]["roc_auc"].contains(binary_metrics(y, score, 0.5)["roc_auc"])


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    y, score = noisy_scores()
    same = paired_difference_interval(y, score, score, resamples=30, seed=3, confidence=0.9)
    assert (same.low, same.high) == (0.0, 0.0)


def test_ece_of_a_constant_forecast_is_its_distance_to_the_observed_rate() -> None:
    y = np.array([1, 0] * 50)  # observed rate 0.5
    assert expected_calibration_error(y, np.full(100, 0.3)) == pytest.approx(0.2)
    # Two bins, each perfectly calibrated: no error.
    y = np.array([0] * 80 + [1] * 20 + [0] * 20 + [1] * 80)
    score = np.array([0.2] * 100 + [0.8] * 100)
    assert expected_calibration_error(y, score) == pytest.approx(0.0)
    assert reliability_curve(y, score)["rows"].to_list() == [100, 100]


def test_psi_of_a_known_shift_and_of_no_shift() -> None:
    before = np.array([0.0] * 50 + [1.0] * 50)
    after = np.array([0.0] * 90 + [1.0] * 10)
    expected = 0.4 * np.log(0.9 / 0.5) + 0.4 * np.log(0.5 / 0.1)
    assert population_stability_index(before, after) == pytest.approx(expected)
    assert population_stability_index(before, before) == pytest.approx(0.0)


def test_psi_counts_values_beyond_the_training_range_and_missing_values() -> None:
    january = pl.DataFrame({"month": [1] * 100, "gust": [10.0] * 100})
    february = pl.DataFrame({"month": [2] * 100, "gust": [10.0] * 50 + [None] * 50})
    drift = feature_drift(january, february, ["month", "gust"])
    psi = dict(zip(drift["feature"], drift["psi"], strict=True))
    assert psi["month"] > 10  # every test value is outside the training values
    assert psi["gust"] > 1  # half the test rows lost their gust reading
    assert drift.filter(pl.col("feature") == "gust")["test_missing_share"][0] == 0.5


def test_small_slices_are_reported_but_not_gated() -> None:
    rows = 700
    frame = pl.DataFrame(
        {
            "carrier": ["AA"] * 600 + ["HA"] * 100,
            "origin": ["JFK"] * rows,
            "sched_dep_hour": [7] * rows,
            "day": [dt.date(2013, 2, 20)] * rows,
        }
    )
    y, score = noisy_scores(rows, seed=5)
    slices = slice_metrics(frame, y, score, 0.5, min_rows=500)
    carriers = slices.filter(pl.col("slice") == "carrier")
    assert carriers["value"].to_list() == ["AA", "HA"]
    assert carriers["gated"].to_list() == [True, False]
    assert set(slices["slice"]) == {"carrier", "origin", "sched_hour_bucket", "month"}
    assert slices.filter(pl.col("slice") == "sched_hour_bucket")["value"][0] == "06-08h"
