"""Seeded bootstrap confidence intervals, paired across models scored on the same rows.

A resample is a vector of per-row counts (how often each test row was drawn), used as
weights. The scores are sorted once per model; each resample then costs a few weighted
sums, so 200 resamples over a year's test rows take about a second, with no refit and no
re-sort. Every model is scored with the same draws (the same seed, the same rows), which
makes the candidate-minus-champion difference a *paired* bootstrap: the noise shared by
both models cancels out of the difference.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

BOOTSTRAPPED_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall")
_EPS = 1e-7


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval (NaN when the metric is undefined on the rows)."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


class WeightedScores:
    """One model's scores on fixed rows, ready for weighted metrics: sorted once, ties
    grouped, so a resample costs two `bincount`s."""

    def __init__(self, y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> None:
        self.y = np.asarray(y_true, dtype=float)
        self.score = np.asarray(y_score, dtype=float)
        # Groups of equal scores, ascending: ties share a rank, as in ROC AUC's definition.
        _, self.group = np.unique(self.score, return_inverse=True)
        self.groups = int(self.group.max()) + 1 if self.group.size else 0
        self.predicted = (self.score >= threshold).astype(float)
        clipped = np.clip(self.score, _EPS, 1 - _EPS)
        self.row_log_loss = -(self.y * np.log(clipped) + (1 - self.y) * np.log(1 - clipped))
        self.row_brier = (self.score - self.y) ** 2

    def metrics(self, weights: np.ndarray) -> dict[str, float]:
        """The metrics of `binary_metrics` on the rows drawn `weights` times each."""
        positive = weights * self.y
        negative = weights - positive
        pos = np.bincount(self.group, weights=positive, minlength=self.groups)
        neg = np.bincount(self.group, weights=negative, minlength=self.groups)
        n_pos, n_neg, total = pos.sum(), neg.sum(), weights.sum()
        if n_pos > 0 and n_neg > 0:
            below = np.cumsum(neg) - neg  # negatives scored strictly lower
            roc_auc = float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))
            # Average precision: precision at each distinct threshold, highest first,
            # weighted by the recall it adds (sklearn's definition, no interpolation).
            tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
            with np.errstate(invalid="ignore", divide="ignore"):
                precision_at = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            pr_auc = float((pos[::-1] * precision_at).sum() / n_pos)
        else:
            roc_auc = pr_auc = float("nan")
        flagged = (weights * self.predicted).sum()
        hits = (positive * self.predicted).sum()
        return {
            "roc_auc": roc_auc,
            "pr_auc": pr_auc,
            "log_loss": float((weights * self.row_log_loss).sum() / total),
            "brier": float((weights * self.row_brier).sum() / total),
            "precision": float(hits / flagged) if flagged else 0.0,
            "recall": float(hits / n_pos) if n_pos else 0.0,
        }


def resample_weights(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """`resamples` draws of `rows` rows with replacement, as per-row counts. The same seed
    gives the same draws, so models scored on the same rows see the same resamples."""
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield np.bincount(rng.integers(0, rows, rows), minlength=rows).astype(float)


def _interval(values: np.ndarray, confidence: float) -> Interval:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return Interval(float("nan"), float("nan"))
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return Interval(float(low), float(high))


def bootstrap_intervals(
    y_true: np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    threshold: float,
    resamples: int,
    seed: int,
    confidence: float,
) -> dict[str, dict[str, Interval]]:
    """Per model, an interval for each of BOOTSTRAPPED_METRICS; all models on the same
    resamples of the same rows."""
    prepared = {name: WeightedScores(y_true, s, threshold) for name, s in scores.items()}
    drawn: dict[str, dict[str, list[float]]] = {
        name: {m: [] for m in BOOTSTRAPPED_METRICS} for name in scores
    }
    for weights in resample_weights(len(y_true), resamples, seed):
        for name, model in prepared.items():
            for metric, value in model.metrics(weights).items():
                drawn[name][metric].append(value)
    return {
        name: {m: _interval(np.array(v), confidence) for m, v in by_metric.items()}
        for name, by_metric in drawn.items()
    }


def paired_difference_interval(
    y_true: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    *,
    metric: str = "roc_auc",
    resamples: int,
    seed: int,
    confidence: float,
) -> Interval:
    """Interval of `metric(first) - metric(second)`, both models on each same resample."""
    a = WeightedScores(y_true, first, 0.5)
    b = WeightedScores(y_true, second, 0.5)
    differences = [
        a.metrics(w)[metric] - b.metrics(w)[metric]
        for w in resample_weights(len(y_true), resamples, seed)
    ]
    return _interval(np.array(differences), confidence)
