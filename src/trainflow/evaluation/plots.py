"""ROC and calibration plots as PNG bytes (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    # Fixed metadata: matplotlib otherwise stamps the software version and date into PNGs.
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def roc_plot(y_true: np.ndarray, scores: Mapping[str, np.ndarray]) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(y_true, score)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test window)")
    ax.legend(loc="lower right")
    return _png(fig)


def calibration_plot(y_true: np.ndarray, scores: Mapping[str, np.ndarray]) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, score in scores.items():
        observed, predicted = calibration_curve(y_true, score, n_bins=10, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed delay rate", title="Calibration")
    ax.legend(loc="upper left")
    return _png(fig)


def bar_plot(labels: list[str], values: list[float], *, title: str, xlabel: str) -> bytes:
    """Horizontal bars, first label on top (feature drift, feature importance)."""
    fig, ax = plt.subplots(figsize=(6, max(3.0, 0.25 * len(labels) + 1)))
    ax.barh(labels[::-1], values[::-1], color="#4c72b0")
    ax.set(xlabel=xlabel, title=title)
    fig.tight_layout()
    return _png(fig)
