"""Permutation importance: how much the test ROC AUC drops when one feature is shuffled.

Model-agnostic (LightGBM and the MLP alike: only their `predict` is called), measured on a
seeded sample of the test rows to keep it cheap, one shuffle per feature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

IMPORTANCE_ROWS = 5000


def permutation_importance(
    frame: pl.DataFrame,
    y_true: np.ndarray,
    predict: Callable[[pl.DataFrame], np.ndarray],
    features: Sequence[str],
    *,
    seed: int,
    rows: int = IMPORTANCE_ROWS,
) -> pl.DataFrame:
    """`feature`, `auc_drop` (baseline AUC minus the AUC with that feature shuffled),
    largest first; empty when the sample holds one class only."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(frame.height, size=min(rows, frame.height), replace=False))
    sample, y = frame[picked], np.asarray(y_true)[picked]
    schema = {"feature": pl.String, "auc_drop": pl.Float64}
    if len(np.unique(y)) < 2:
        return pl.DataFrame(schema=schema)
    base = float(roc_auc_score(y, predict(sample)))
    drops = []
    for feature in features:
        if feature not in sample.columns:
            continue
        shuffled = sample[feature].gather(rng.permutation(sample.height))
        auc = float(roc_auc_score(y, predict(sample.with_columns(shuffled))))
        drops.append({"feature": feature, "auc_drop": base - auc})
    return pl.DataFrame(drops, schema=schema).sort(
        ["auc_drop", "feature"], descending=[True, False]
    )
