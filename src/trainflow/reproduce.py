"""Re-run a recorded training from its manifest and prove the result is identical.

Inputs are rebuilt by Delta time travel to the recorded versions and checked partition
by partition against the recorded content hashes; the model is retrained with the
recorded config into a scratch folder. Nothing here writes a lake table or moves a
registry alias.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from trainflow.cache import without_bookkeeping
from trainflow.config import ExperimentConfig
from trainflow.datasets import select_splits, train_on_dataset
from trainflow.evaluation.metrics import binary_metrics
from trainflow.features.flights import LABEL
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.manifest import MANIFEST_ARTIFACT, content_hash, git_state
from trainflow.models.lightgbm_model import predict

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_VERSION = re.compile(r"^(?:models:/)?(?:(?P<name>[^/@]+)/)?v?(?P<version>\d+)$")


class ReproduceError(RuntimeError):
    """The run cannot be reproduced as asked (refused, or its inputs are not as recorded)."""


@dataclass
class Comparison:
    lines: list[str] = field(default_factory=list)
    matches: bool = True

    def check(self, name: str, recorded: Any, reproduced: Any) -> None:
        same = recorded == reproduced
        self.matches &= same
        self.lines.append(
            f"{'same' if same else 'DIFFERENT':>9}  {name}: recorded {_short(recorded)}, "
            f"reproduced {_short(reproduced)}"
        )


def _short(value: Any) -> str:
    text = str(value)
    return text[:16] if len(text) == 64 else text


def find_manifest(
    client: MlflowClient, manifests: ObjectStore, ref: str, model_name: str
) -> tuple[dict[str, Any], str]:
    """The manifest of an MLflow run id, a model version (`3`, `name/3`, `models:/name/3`)
    or a Dagster run id; returns it with the MLflow run id it belongs to. The copy beside
    the model in the lake is read first, the MLflow artifact otherwise."""
    run_id = _resolve_run_id(client, ref, model_name)
    if manifests.exists(f"{run_id}.json"):
        return json.loads(manifests.get(f"{run_id}.json")), run_id
    path = client.download_artifacts(run_id, MANIFEST_ARTIFACT)
    return json.loads(Path(path).read_text()), run_id


def _resolve_run_id(client: MlflowClient, ref: str, model_name: str) -> str:
    version = _VERSION.match(ref)
    if version:
        name = version.group("name") or model_name
        try:
            found = client.get_model_version(name, version.group("version"))
        except MlflowException as exc:
            raise ReproduceError(f"no model version {ref!r} of {name}") from exc
        return str(found.run_id)
    if _UUID.match(ref):
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, f"tags.dagster_run_id = '{ref}'")
        if not runs:
            raise ReproduceError(f"no MLflow run is tagged with Dagster run id {ref}")
        return str(runs[0].info.run_id)
    try:
        return str(client.get_run(ref).info.run_id)
    except MlflowException as exc:
        raise ReproduceError(
            f"{ref!r} is neither an MLflow run id, a model version nor a Dagster run id"
        ) from exc


def check_commit(manifest: dict[str, Any], repo: Path, allow_other_commit: bool) -> list[str]:
    """Refuse to run on other code unless told to; returns warnings to print."""
    recorded = manifest["code"]["git"]
    current = git_state(repo)
    notes = []
    if recorded["commit"] != current["commit"]:
        message = (
            f"this checkout is at commit {current['commit']}, the run was trained at "
            f"{recorded['commit']}"
        )
        if not allow_other_commit:
            raise ReproduceError(
                f"{message}: check out that commit, or pass --allow-other-commit to run anyway"
            )
        notes.append(f"WARNING: {message}; running anyway as asked")
    if recorded.get("dirty"):
        notes.append("WARNING: the recorded checkout had uncommitted changes")
    return notes


def rebuild_features(lake: DeltaLake, manifest: dict[str, Any]) -> pl.DataFrame:
    """Feature partitions at their recorded Delta versions, each checked by content hash."""
    partitions: dict[str, dict[str, Any]] = manifest["inputs"]["flight_features"]["partitions"]
    by_version: dict[int, list[str]] = defaultdict(list)
    for day, entry in partitions.items():
        by_version[int(entry["delta_version"])].append(day)
    latest = lake.version("flight_features")
    frames = []
    for version, days in sorted(by_version.items()):
        if latest is None or not 0 <= version <= latest:
            raise ReproduceError(
                f"flight_features partition(s) {', '.join(sorted(days)[:5])}: recorded Delta "
                f"version {version} does not exist (table is at {latest})"
            )
        at_version = lake.read("flight_features", version=version).filter(
            pl.col("day").cast(pl.String).is_in(days)
        )
        for day in sorted(days):
            rows = without_bookkeeping(at_version.filter(pl.col("day").cast(pl.String) == day))
            found = content_hash(rows.sort("flight_id")) if rows.height else "no rows"
            if found != partitions[day]["content_hash"]:
                raise ReproduceError(
                    f"flight_features partition {day} at Delta version {version} does not match "
                    f"the manifest: content hash {found[:16]}, recorded "
                    f"{partitions[day]['content_hash'][:16]}"
                )
        frames.append(without_bookkeeping(at_version))
    return pl.concat(frames).sort("flight_id")


def reproduce(
    *,
    manifest: dict[str, Any],
    lake: DeltaLake,
    recorded_metrics: dict[str, float],
    scratch: Path,
) -> Comparison:
    """Rebuild inputs, retrain into `scratch`, compare hashes and metrics with the record."""
    config = ExperimentConfig.model_validate(manifest["config"])
    comparison = Comparison()
    comparison.check("config hash", manifest["config_hash"], config.config_hash)

    dataset = select_splits(rebuild_features(lake, manifest), config)
    recorded_dataset = manifest["inputs"]["training_dataset"]["content_hash"]
    comparison.check("training_dataset content hash", recorded_dataset, content_hash(dataset))

    trained = train_on_dataset(dataset, config)
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "model.txt").write_text(trained.model_text)

    recorded_model = manifest["model"]
    comparison.check("model sha256", recorded_model["sha256"], trained.sha256)
    comparison.check("best iteration", recorded_model["best_iteration"], trained.best_iteration)
    comparison.check(
        "validation ROC AUC", recorded_model["validation_roc_auc"], trained.validation_auc
    )
    test = dataset.filter(pl.col("split") == "test")
    reproduced = binary_metrics(
        test[LABEL].to_numpy(),
        predict(trained.booster, test, trained.feature_names),
        config.evaluation.decision_threshold,
    )
    for name, value in sorted(recorded_metrics.items()):
        metric = name.removeprefix("test_")
        if name.startswith("test_") and metric in reproduced:
            comparison.check(f"test {metric}", value, reproduced[metric])
    (scratch / "comparison.txt").write_text("\n".join(comparison.lines) + "\n")
    return comparison
