"""LightGBM binary classifier, trained deterministically.

Sources of nondeterminism and how each is pinned:
- random draws (bagging, feature fraction, data sampling): every LightGBM seed is set
  from the config's one seed;
- thread scheduling: histogram sums in floating point depend on how rows are split across
  threads, so `num_threads` is fixed by the config and `deterministic=True` plus
  `force_row_wise=True` keep the summation order stable for a given thread count;
- input row order: callers pass rows sorted by a stable key (flight_id).
Same data + same config + same library versions => the same model text, byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl


@dataclass(frozen=True)
class TrainedModel:
    booster: lgb.Booster
    feature_names: list[str]
    best_iteration: int
    validation_auc: float

    @property
    def model_text(self) -> str:
        return model_text(self.booster)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_text.encode()).hexdigest()

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return predict(self.booster, frame, self.feature_names)


def model_text(booster: lgb.Booster) -> str:
    return str(booster.model_to_string())


def to_matrix(frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Float64 matrix in `features` order; nulls become NaN (LightGBM's missing value)."""
    return frame.select([pl.col(f).cast(pl.Float64) for f in features]).to_numpy()


def training_params(params: Mapping[str, Any], seed: int, num_threads: int) -> dict[str, Any]:
    return {
        "objective": "binary",
        "metric": "auc",
        "verbosity": -1,
        **params,
        "seed": seed,
        "bagging_seed": seed,
        "feature_fraction_seed": seed,
        "data_random_seed": seed,
        "drop_seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
    }


def train_lightgbm(
    train: pl.DataFrame,
    validation: pl.DataFrame,
    *,
    features: Sequence[str],
    label: str,
    params: Mapping[str, Any],
    seed: int,
    num_threads: int,
    num_boost_round: int,
    early_stopping_rounds: int,
) -> TrainedModel:
    """Fit on `train`, stop early on `validation`'s AUC."""
    full_params = training_params(params, seed, num_threads)
    train_set = lgb.Dataset(
        to_matrix(train, features),
        label=train[label].to_numpy(),
        feature_name=list(features),
        free_raw_data=False,
    )
    valid_set = lgb.Dataset(
        to_matrix(validation, features), label=validation[label].to_numpy(), reference=train_set
    )
    booster = lgb.train(
        full_params,
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    best_iteration = int(booster.best_iteration)
    # Keep only the trees up to the best iteration: the stored, logged and served model
    # are then the same bytes.
    best = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration))
    return TrainedModel(
        booster=best,
        feature_names=list(features),
        best_iteration=best_iteration,
        validation_auc=float(booster.best_score["validation"]["auc"]),
    )


def load_model(text: str) -> lgb.Booster:
    return lgb.Booster(model_str=text)


def predict(booster: lgb.Booster, frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    return np.asarray(booster.predict(to_matrix(frame, features)), dtype=np.float64)
