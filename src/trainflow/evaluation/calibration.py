"""Calibration: the reliability curve and the expected calibration error (ECE).

Equal-width probability bins, so the ECE of two models is measured on the same grid:
ECE = sum over bins of (share of rows in the bin) * |mean predicted - observed rate|.
"""

from __future__ import annotations

import numpy as np
import polars as pl

CALIBRATION_BINS = 10


def reliability_curve(
    y_true: np.ndarray, y_score: np.ndarray, bins: int = CALIBRATION_BINS
) -> pl.DataFrame:
    """One row per non-empty bin: its bounds, rows, mean predicted probability, and the
    observed positive rate."""
    y = np.asarray(y_true, dtype=float)
    score = np.asarray(y_score, dtype=float)
    index = np.clip((score * bins).astype(int), 0, bins - 1)  # 1.0 falls in the last bin
    rows = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=score, minlength=bins)
    observed = np.bincount(index, weights=y, minlength=bins)
    kept = rows > 0
    return pl.DataFrame(
        {
            "bin": np.arange(bins)[kept],
            "lower": np.arange(bins)[kept] / bins,
            "upper": (np.arange(bins)[kept] + 1) / bins,
            "rows": rows[kept],
            "mean_predicted": predicted[kept] / rows[kept],
            "observed_rate": observed[kept] / rows[kept],
        }
    )


def calibration_error_of(curve: pl.DataFrame) -> float:
    """The ECE of a reliability curve (`reliability_curve`)."""
    share = curve["rows"].to_numpy() / max(int(curve["rows"].sum()), 1)
    gap = np.abs(curve["mean_predicted"].to_numpy() - curve["observed_rate"].to_numpy())
    return float((share * gap).sum())


def expected_calibration_error(
    y_true: np.ndarray, y_score: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    return calibration_error_of(reliability_curve(y_true, y_score, bins))
