"""The baseline every model must beat: logistic regression on calendar features only.

It answers "what do we get without weather, plane and history features?" (about 0.61 ROC
AUC on 2013). lbfgs uses no random state; its float sums go through BLAS, whose thread
count can change the last bits of the coefficients (a determinism risk for the baseline's
metrics only, never for the model; pin OPENBLAS_NUM_THREADS to rule it out).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

BASELINE_FEATURES = ("month", "day_of_week", "sched_dep_hour")


def fit_calendar_baseline(train: pl.DataFrame, label: str) -> Pipeline:
    model = Pipeline(
        [
            ("one_hot", OneHotEncoder(handle_unknown="ignore")),
            ("logistic", LogisticRegression(max_iter=1000)),
        ]
    )
    model.fit(train.select(BASELINE_FEATURES).to_numpy(), train[label].to_numpy())
    return model


def predict_baseline(model: Pipeline, frame: pl.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(frame.select(BASELINE_FEATURES).to_numpy())[:, 1])
