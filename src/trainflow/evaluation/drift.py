"""Feature drift between the training and test windows: the population stability index.

PSI = sum over bins of (test share - train share) * ln(test share / train share), with
bins at the training window's deciles (fewer when a feature has few distinct values) and
one more bin for missing values, since a weather gap shows up as nulls. Rules of thumb:
under 0.1 stable, 0.1-0.25 moderate shift, over 0.25 large shift.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

PSI_BINS = 10
_FLOOR = 1e-4  # an empty bin's share, so one empty side does not make the PSI infinite


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left")  # bins (e_i-1, e_i]
    counts = np.bincount(index, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, missing.sum())
    return np.maximum(counts / max(len(values), 1), _FLOOR)


def population_stability_index(
    expected: np.ndarray, actual: np.ndarray, bins: int = PSI_BINS
) -> float:
    """PSI of `actual` against `expected` (the reference), NaN marking missing values."""
    reference = np.asarray(expected, dtype=float)
    current = np.asarray(actual, dtype=float)
    present = reference[~np.isnan(reference)]
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(present, quantiles)) if present.size else np.array([])
    p, q = _shares(reference, edges), _shares(current, edges)
    return float(((q - p) * np.log(q / p)).sum())


def _as_float(frame: pl.DataFrame | pl.LazyFrame, column: str) -> np.ndarray:
    values = frame.lazy().select(column).collect().to_series()
    return values.cast(pl.Float64).fill_nan(None).to_numpy().astype(float)


def feature_drift(
    reference: pl.DataFrame | pl.LazyFrame,
    current: pl.DataFrame | pl.LazyFrame,
    features: Sequence[str],
) -> pl.DataFrame:
    """PSI per numeric feature of `current` (the test window) against `reference` (the
    training window), with each side's share of missing values.

    Either side may be a lazy scan, read one feature at a time: the training window is
    most of the dataset, and the evaluation need not hold it as a frame.
    """
    columns = reference.lazy().collect_schema()
    rows = []
    for feature in features:
        if feature not in columns or not columns[feature].is_numeric():
            continue
        before, after = _as_float(reference, feature), _as_float(current, feature)
        rows.append(
            {
                "feature": feature,
                "psi": population_stability_index(before, after),
                "train_missing_share": float(np.isnan(before).mean()) if before.size else 0.0,
                "test_missing_share": float(np.isnan(after).mean()) if after.size else 0.0,
            }
        )
    schema = {"feature": pl.String, "psi": pl.Float64}
    schema |= {"train_missing_share": pl.Float64, "test_missing_share": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
