"""Binary-classification metrics on the test window, overall and by slice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall")
# Slices: the carrier, the origin airport, a 3-hour bucket of the scheduled departure and
# the month. Every slice is reported; the gate judges only those with enough rows
# (`gate.min_slice_rows`), since a small slice's AUC is mostly noise.
SLICE_COLUMNS = ("carrier", "origin", "sched_hour_bucket", "month")
HOUR_BUCKET_HOURS = 3


def binary_metrics(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier, and precision/recall at `threshold`."""
    y_pred = (y_score >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, y_score)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y_true, y_score)) if both_classes else float("nan"),
        "log_loss": float(log_loss(y_true, np.clip(y_score, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, y_score)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "positive_rate": float(np.mean(y_true)),
        "rows": float(len(y_true)),
    }


def slice_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """The slice columns of the test rows that can be derived from what the frame holds
    (the hour bucket needs `sched_dep_hour`, the month is read from `day`)."""
    keys = [pl.col(c).cast(pl.String) for c in ("carrier", "origin") if c in frame.columns]
    if "sched_dep_hour" in frame.columns:
        start = (pl.col("sched_dep_hour") // HOUR_BUCKET_HOURS) * HOUR_BUCKET_HOURS
        keys.append(
            pl.format(
                "{}-{}h",
                start.cast(pl.String).str.zfill(2),
                (start + HOUR_BUCKET_HOURS - 1).cast(pl.String).str.zfill(2),
            ).alias("sched_hour_bucket")
        )
    if "day" in frame.columns:
        keys.append(pl.col("day").dt.month().cast(pl.String).str.zfill(2).alias("month"))
    return frame.select(keys)


def slice_metrics(
    frame: pl.DataFrame,
    y_true: np.ndarray,
    y_score: np.ndarray,
    threshold: float,
    *,
    min_rows: int,
    columns: Sequence[str] = SLICE_COLUMNS,
) -> pl.DataFrame:
    """Metrics per value of each slice column, every slice reported; `gated` is True for
    those with at least `min_rows` rows, the only ones a slice floor applies to."""
    keys = slice_keys(frame)
    rows = []
    for column in columns:
        if column not in keys.columns:
            continue
        values = keys[column].to_numpy()
        for value in sorted(set(values.tolist()), key=str):
            mask = values == value
            metrics = binary_metrics(y_true[mask], y_score[mask], threshold)
            rows.append(
                {"slice": column, "value": str(value), "gated": bool(mask.sum() >= min_rows),
                 **metrics}
            )  # fmt: skip
    return pl.DataFrame(rows)
