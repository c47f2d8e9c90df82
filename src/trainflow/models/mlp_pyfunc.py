"""The MLP as an MLflow pyfunc model: `mlflow.pyfunc.load_model(uri).predict(frame)` returns
P(delayed) per row, scored by the same numpy forward pass as the evaluation.

The model's only artifact is its canonical JSON text (weights, standardisation statistics,
vocabularies); no pickled network. Loading it needs trainflow importable (this module),
not torch.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import polars as pl
from mlflow.pyfunc import PythonModel

from trainflow.models.mlp_model import MlpModel

MODEL_ARTIFACT_KEY = "mlp_model"


class MlpPyfunc(PythonModel):
    """Reads the stored JSON at load time; `predict` takes the dataset's columns."""

    def load_context(self, context: Any) -> None:
        self.model = MlpModel.from_text(Path(context.artifacts[MODEL_ARTIFACT_KEY]).read_text())

    # MLflow's own switch (its ChatModel sets it) to leave `predict` unwrapped: without type
    # hints its wrapper only passes the call through, but defining the class would print a
    # UserWarning asking for hints from inside MLflow's `simplefilter("once")`, past any
    # filter, in every process that imports this module. No hints: MLflow would read them as
    # an input schema it cannot express (a `pd.DataFrame` hint logs a warning per model).
    _skip_type_hint_validation = True

    def predict(self, context, model_input, params=None):
        frame = (
            pl.from_pandas(model_input) if isinstance(model_input, pd.DataFrame) else model_input
        )
        return self.model.predict(frame)


def log_mlp_pyfunc(model_text: str, tags: dict[str, str]) -> Any:
    """Log the MLP under the active run as `model` (what the registry registers)."""
    requirements = [f"{name}=={metadata.version(name)}" for name in ("numpy", "polars", "pandas")]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mlp_model.json"
        path.write_text(model_text)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=MlpPyfunc(),
            artifacts={MODEL_ARTIFACT_KEY: str(path)},
            pip_requirements=requirements,
            tags=tags,
        )
