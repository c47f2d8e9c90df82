"""Which model family a stored model is, and how to score it: one entry point for the
evaluation, the champion comparison and `trainflow reproduce`, whatever the family.

A stored model is text (the lake's `model_text`, MLflow's model-text artifact): LightGBM's
model string, or the MLP's canonical JSON. Scoring never needs torch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import polars as pl

from trainflow.models import lightgbm_model, mlp_model

if TYPE_CHECKING:
    import lightgbm as lgb


class Scorer(Protocol):
    @property
    def input_columns(self) -> list[str]: ...

    def predict(self, frame: pl.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class LightgbmScorer:
    text: str

    @functools.cached_property
    def booster(self) -> lgb.Booster:
        """Parsed once per scorer: permutation importance scores 25 times per evaluation."""
        return lightgbm_model.load_model(self.text)

    @property
    def input_columns(self) -> list[str]:
        return list(self.booster.feature_name())

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return lightgbm_model.predict(self.booster, frame, self.booster.feature_name())


def family_of_text(text: str) -> str:
    """The family of a stored model's text (an MLP's is JSON, LightGBM's is not)."""
    return "mlp" if text.lstrip().startswith("{") else "lightgbm"


def load_scorer(text: str, family: str | None = None) -> Scorer:
    family = family or family_of_text(text)
    if family == "mlp":
        return mlp_model.load_model(text)
    if family == "lightgbm":
        return LightgbmScorer(text)
    raise ValueError(f"unknown model family {family!r}")


def training_columns(family: str, features: Sequence[str]) -> list[str]:
    """The dataset columns a family reads besides the label: the MLP adds its categoricals."""
    if family == "mlp":
        return [*features, *mlp_model.CATEGORICAL_FEATURES]
    return list(features)
