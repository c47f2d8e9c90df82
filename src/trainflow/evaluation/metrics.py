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
SLICE_COLUMNS = ("carrier", "origin")
MIN_SLICE_ROWS = 50


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


def slice_metrics(
    frame: pl.DataFrame,
    y_true: np.ndarray,
    y_score: np.ndarray,
    threshold: float,
    columns: Sequence[str] = SLICE_COLUMNS,
) -> pl.DataFrame:
    """Metrics per value of each slice column (slices under MIN_SLICE_ROWS rows are skipped)."""
    rows = []
    for column in columns:
        values = frame[column].to_numpy()
        for value in sorted(set(values.tolist())):
            mask = values == value
            if mask.sum() < MIN_SLICE_ROWS:
                continue
            metrics = binary_metrics(y_true[mask], y_score[mask], threshold)
            rows.append({"slice": column, "value": str(value), **metrics})
    return pl.DataFrame(rows)
