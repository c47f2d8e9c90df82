"""The current champion, scored fairly against a candidate, or not at all.

A candidate replaces the champion only after a comparison on the same rows, and those rows
must lie outside the champion's own training window (its train and validation days, read
from its manifest): scoring a model on days it learned from flatters it. The champion's
model is read from the model text trainflow logs beside MLflow's flavour (LightGBM's model
string or the MLP's JSON weights) and checked against its recorded sha256; nothing from the
artifact store is unpickled.

When no fair comparison is possible (no text artifact, no manifest, features the dataset
lacks, no test day after its training window), the comparison is *refused* with that
reason, and the candidate cannot become champion. When the registry cannot be reached, the
error propagates: the step fails and is retried as I/O, it never promotes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from trainflow.evaluation.metrics import binary_metrics
from trainflow.manifest import MANIFEST_ARTIFACT
from trainflow.models.families import Scorer, load_scorer
from trainflow.registry import MODEL_TEXT_ARTIFACT, RegistryError
from trainflow.registry.versions import current_champion


@dataclass(frozen=True)
class ChampionComparison:
    """The champion at evaluation time and how the candidate compared with it."""

    version: str | None  # None: there is no champion yet
    refused: str | None = None  # why no fair comparison was possible
    rows: int = 0
    first_day: dt.date | None = None  # the first test day after the champion's training
    champion: dict[str, float] = field(default_factory=dict)  # metrics on those rows
    candidate: dict[str, float] = field(default_factory=dict)  # same rows, same metrics
    # Which test rows those are (a mask over the test rows) and the champion's scores on
    # them, for the paired bootstrap of the difference (`evaluation.scorecard`).
    mask: np.ndarray | None = None
    scores: np.ndarray | None = None

    @property
    def status(self) -> str:
        if self.version is None:
            return "no champion"
        if self.refused:
            return f"v{self.version}: not compared ({self.refused})"
        return f"v{self.version}: compared on {self.rows} test rows from {self.first_day}"


def _artifact(client: MlflowClient, version: ModelVersion, path: str) -> str | None:
    """An artifact of the version's run as text; None when it does not exist."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = client.download_artifacts(str(version.run_id), path, folder)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return Path(local).read_text()


def champion_model(client: MlflowClient, version: ModelVersion) -> Scorer:
    """The champion's model from its text (either family), checked against its sha256 tag."""
    text = _artifact(client, version, MODEL_TEXT_ARTIFACT)
    if text is None:
        raise RegistryError(f"v{version.version} has no {MODEL_TEXT_ARTIFACT} artifact")
    found = hashlib.sha256(text.encode()).hexdigest()
    recorded = version.tags.get("model_sha256")
    if found != recorded:
        raise RegistryError(
            f"v{version.version}'s {MODEL_TEXT_ARTIFACT} has sha256 {found[:16]}, "
            f"registered as {str(recorded)[:16]}"
        )
    return load_scorer(text)


def trained_until(client: MlflowClient, version: ModelVersion) -> dt.date:
    """The last day the champion learned from (its validation window's end)."""
    text = _artifact(client, version, MANIFEST_ARTIFACT)
    if text is None:
        raise RegistryError(f"v{version.version} has no {MANIFEST_ARTIFACT}")
    windows: dict[str, Any] = json.loads(text)["config"]["windows"]
    return max(dt.date.fromisoformat(windows[w]["end"]) for w in ("train", "validation"))


def compare_with_champion(
    client: MlflowClient,
    name: str,
    test: pl.DataFrame,
    candidate_scores: np.ndarray,
    *,
    label: str,
    threshold: float,
) -> ChampionComparison:
    """Score the current champion and the candidate on the test rows after the champion's
    training window. `candidate_scores` are the candidate's, aligned with `test`."""
    version = current_champion(client, name)
    if version is None:
        return ChampionComparison(version=None)
    registered = client.get_model_version(name, version)
    try:
        scorer = champion_model(client, registered)
        until = trained_until(client, registered)
    except RegistryError as exc:
        return ChampionComparison(version=version, refused=str(exc))
    features = scorer.input_columns
    absent = sorted(set(features) - set(test.columns))
    if absent:
        return ChampionComparison(
            version=version, refused=f"its features {', '.join(absent)} are not in this dataset"
        )
    after = (test["day"] > until).to_numpy()
    if not after.any():
        return ChampionComparison(
            version=version,
            refused=f"every test day is inside its own training window (it learned until {until})",
        )
    rows = test.filter(pl.Series(after))
    y_true = rows[label].to_numpy()
    scores = scorer.predict(rows)
    return ChampionComparison(
        version=version,
        rows=rows.height,
        first_day=rows["day"].min(),  # type: ignore[arg-type]
        champion=binary_metrics(y_true, scores, threshold),
        candidate=binary_metrics(y_true, candidate_scores[after], threshold),
        mask=after,
        scores=scores,
    )
