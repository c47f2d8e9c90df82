"""Re-run a recorded training from its manifest and prove the result is identical.

Two depths:
- default: every feature partition comes back by Delta time travel to its recorded version
  and is checked against its recorded content hash; the dataset is rebuilt and the model
  retrained into a scratch folder;
- `from_raw`: the whole chain is rebuilt from the recorded raw_snapshot versions (contract
  validation, features, dataset, model) with the code of the recorded commit, and every
  rebuilt partition's content hash is compared with the one recorded, naming the first that
  differs. That proves the recorded features were produced by the recorded code.
Both refuse to run on other code (another or an unknown commit, a dirty checkout) or in
another environment (lockfile, library versions) unless told to, and compare the model
bytes and every recorded metric. Nothing here writes a lake table or moves an alias.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from trainflow.cache import day_content_hashes, without_bookkeeping
from trainflow.config import ExperimentConfig
from trainflow.contracts import Contract, ContractViolation, validate_partitions
from trainflow.datasets import select_splits, train_on_dataset
from trainflow.evaluation.metrics import binary_metrics
from trainflow.features.flights import LABEL, features_for_days
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.manifest import MANIFEST_ARTIFACT, content_hash, environment, file_sha256
from trainflow.registry import CACHE_KEY_TAG, DAGSTER_RUN_ID_TAG

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_VERSION = re.compile(r"^(?:models:/)?(?:(?P<name>[^/@]+)/)?v?(?P<version>\d+)$")


class ReproduceError(RuntimeError):
    """The run cannot be reproduced as asked (refused, or its inputs are not as recorded)."""


@dataclass
class Comparison:
    lines: list[str] = field(default_factory=list)
    matches: bool = True
    first_difference: str | None = None

    def check(self, name: str, recorded: Any, reproduced: Any) -> None:
        same = recorded == reproduced
        self.matches &= same
        if not same and self.first_difference is None:
            self.first_difference = name
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
    return manifest_of_run(client, manifests, run_id), run_id


def manifest_of_run(client: MlflowClient, manifests: ObjectStore, run_id: str) -> dict[str, Any]:
    if manifests.exists(f"{run_id}.json"):
        return dict(json.loads(manifests.get(f"{run_id}.json")))
    path = client.download_artifacts(run_id, MANIFEST_ARTIFACT)
    return dict(json.loads(Path(path).read_text()))


def registered_manifests(client: MlflowClient, manifests: ObjectStore) -> list[dict[str, Any]]:
    """The manifest of every version of every registered model (rejected ones too: they
    can still be promoted). Raises when one cannot be read: what it needs is unknown."""
    found = []
    token = None
    while True:
        models = client.search_registered_models(max_results=100, page_token=token)
        for model in models:
            for version in client.search_model_versions(f"name = '{model.name}'"):
                try:
                    found.append(manifest_of_run(client, manifests, str(version.run_id)))
                except (MlflowException, OSError) as exc:
                    raise ReproduceError(
                        f"model version {model.name}/{version.version} (MLflow run "
                        f"{version.run_id}) has no readable manifest ({exc}): the table "
                        "versions it needs are unknown"
                    ) from exc
        token = models.token
        if not token:
            return found


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
        runs = client.search_runs(experiments, f"tags.{DAGSTER_RUN_ID_TAG} = '{ref}'")
        if not runs:
            raise ReproduceError(f"no MLflow run is tagged with Dagster run id {ref}")
        if len(runs) > 1:
            ids = ", ".join(r.info.run_id for r in runs)
            raise ReproduceError(
                f"Dagster run {ref} logged {len(runs)} MLflow runs ({ids}): name one of them"
            )
        return str(runs[0].info.run_id)
    try:
        return str(client.get_run(ref).info.run_id)
    except MlflowException as exc:
        raise ReproduceError(
            f"{ref!r} is neither an MLflow run id, a model version nor a Dagster run id"
        ) from exc


def recorded_metrics(client: MlflowClient, manifest: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of the MLflow run that logged this manifest's model, found by the
    model's cache key (what `--manifest FILE` compares against)."""
    key = manifest.get("cache_keys", {}).get("model")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.`{CACHE_KEY_TAG}` = '{key}'", run_view_type=ViewType.ACTIVE_ONLY
    ) if key and experiments else []  # fmt: skip
    if not runs:
        raise ReproduceError(
            "no MLflow run logged this manifest's model (cache key "
            f"{str(key)[:16]}): its metrics cannot be compared"
        )
    return dict(runs[0].data.metrics)


def check_code(
    manifest: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    allow_other_commit: bool,
    allow_dirty: bool,
) -> list[str]:
    """Refuse other code unless told to; returns the warnings to print.

    An unknown commit is never a match, not even for another unknown one: a container
    without git carries its commit (TRAINFLOW_GIT_COMMIT or the image's BUILD_COMMIT)."""
    recorded = manifest["code"]["git"]
    notes = []
    problems = []
    if "unknown" in (recorded["commit"], current["commit"]):
        problems.append(
            f"the commit is unknown (recorded {recorded['commit']}, this code "
            f"{current['commit']}): run from a git checkout or set TRAINFLOW_GIT_COMMIT"
        )
    elif recorded["commit"] != current["commit"]:
        problems.append(
            f"this checkout is at commit {current['commit']}, the run was trained at "
            f"{recorded['commit']}"
        )
    for message in problems:
        if not allow_other_commit:
            raise ReproduceError(
                f"{message}: check out that commit, or pass --allow-other-commit to run anyway"
            )
        notes.append(f"WARNING: {message}; running anyway as asked")
    dirty = []
    if current.get("dirty"):
        dirty.append("this checkout has uncommitted changes")
    if recorded.get("dirty"):
        dirty.append("the run was trained on a checkout with uncommitted changes")
    for message in dirty:
        if not allow_dirty:
            raise ReproduceError(
                f"{message}, so its code is not the commit's: commit or stash them, or pass "
                "--allow-dirty to run anyway"
            )
        notes.append(f"WARNING: {message}; running anyway as asked")
    return notes


def check_environment(
    manifest: Mapping[str, Any], lock_file: Path, *, allow_other_env: bool
) -> list[str]:
    """Refuse another lockfile or other library versions unless told to."""
    differences = []
    recorded_lock = manifest["code"].get("lockfile_sha256")
    current_lock = file_sha256(lock_file)
    if recorded_lock != current_lock:
        differences.append(
            f"requirements.lock sha256 {str(current_lock)[:16]}, recorded {str(recorded_lock)[:16]}"
        )
    recorded_libraries = manifest.get("environment", {}).get("libraries", {})
    # Libraries only some families record (the MLP's torch) are looked up too.
    current_libraries = environment(tuple(recorded_libraries))["libraries"]
    for name, version in sorted(recorded_libraries.items()):
        if current_libraries.get(name) != version:
            differences.append(f"{name} {current_libraries.get(name)}, recorded {version}")
    if not differences:
        return []
    summary = "this environment differs from the recorded one: " + "; ".join(differences)
    if not allow_other_env:
        raise ReproduceError(f"{summary}. Install the recorded lock, or pass --allow-other-env")
    return [f"WARNING: {summary}; running anyway as asked"]


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


def rebuild_from_raw(
    lake: DeltaLake, manifest: dict[str, Any], contract: Contract, comparison: Comparison
) -> pl.DataFrame:
    """Validate the recorded raw_snapshot versions again and build the features again,
    comparing every rebuilt partition with the manifest; returns the rebuilt features."""
    inputs = manifest["inputs"]
    if "raw_snapshot" not in inputs or inputs.get("unrecorded_feature_days"):
        raise ReproduceError(
            "this manifest does not record the chain back to raw_snapshot versions (trained "
            "before lineage was recorded, or from partitions without it): --from-raw needs it"
        )
    raw_versions: dict[str, dict[str, str]] = inputs["raw_snapshot"]["versions"]
    raw: dict[tuple[int, str], pl.DataFrame] = {}
    for version, days in sorted(raw_versions.items(), key=lambda item: int(item[0])):
        at_version = lake.read("raw_snapshot", version=int(version))
        by_day = day_content_hashes(at_version.filter(pl.col("day").cast(pl.String).is_in(days)))
        for day, recorded in sorted(days.items()):
            found = by_day.get(dt.date.fromisoformat(day), "no rows")
            if found != recorded:
                raise ReproduceError(
                    f"raw_snapshot partition {day} at Delta version {version} does not match the "
                    f"manifest: content hash {found[:16]}, recorded {recorded[:16]}"
                )
            raw[(int(version), day)] = without_bookkeeping(
                at_version.filter(pl.col("day").cast(pl.String) == day)
            )

    validated: dict[str, pl.DataFrame] = {}  # validated_flights version -> its rebuilt days
    for version, days in sorted(
        inputs["validated_flights"]["versions"].items(), key=lambda i: int(i[0])
    ):
        snapshot = pl.concat(
            [raw[(int(e["raw_snapshot_version"]), day)] for day, e in sorted(days.items())]
        )
        wanted = sorted(dt.date.fromisoformat(day) for day in days)
        try:
            rebuilt = validate_partitions(snapshot, contract, wanted, "reproduce").valid
        except ContractViolation as violation:
            raise ReproduceError(
                f"validated_flights (version {version}) no longer passes {contract.label}: "
                f"{violation}"
            ) from violation
        hashes = day_content_hashes(rebuilt)
        for day, entry in sorted(days.items()):
            comparison.check(
                f"validated_flights partition {day} (version {version})",
                entry["content_hash"],
                hashes.get(dt.date.fromisoformat(day), "no rows"),
            )
        validated[version] = rebuilt

    features = inputs["flight_features"]
    data_start = dt.date.fromisoformat(features["data_start"])
    by_version: dict[str, list[dt.date]] = defaultdict(list)
    for day, entry in features["partitions"].items():
        by_version[str(entry["validated_flights_version"])].append(dt.date.fromisoformat(day))
    frames = []
    for version, feature_days in sorted(by_version.items(), key=lambda item: int(item[0])):
        built = features_for_days(validated[version], sorted(feature_days), data_start)
        built_hashes = day_content_hashes(built)
        for feature_day in sorted(feature_days):
            comparison.check(
                f"flight_features partition {feature_day}",
                features["partitions"][feature_day.isoformat()]["content_hash"],
                built_hashes.get(feature_day, "no rows"),
            )
        frames.append(built)
    return pl.concat(frames).sort("flight_id")


def reproduce(
    *,
    manifest: dict[str, Any],
    lake: DeltaLake,
    recorded_metrics: dict[str, float],
    scratch: Path,
    from_raw_contract: Contract | None = None,
) -> Comparison:
    """Rebuild inputs (from the feature partitions, or from raw snapshots when given the
    contract to validate them with), retrain into `scratch`, compare with the record."""
    config = ExperimentConfig.model_validate(manifest["config"])
    comparison = Comparison()
    comparison.check("config hash", manifest["config_hash"], config.config_hash)
    scratch.mkdir(parents=True, exist_ok=True)
    if from_raw_contract is not None:
        features = rebuild_from_raw(lake, manifest, from_raw_contract, comparison)
        features.write_parquet(scratch / "flight_features.parquet")
    else:
        features = rebuild_features(lake, manifest)

    dataset = select_splits(features, config)
    recorded_dataset = manifest["inputs"]["training_dataset"]["content_hash"]
    comparison.check("training_dataset content hash", recorded_dataset, content_hash(dataset))

    trained = train_on_dataset(dataset, config)
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
        trained.predict(test),
        config.evaluation.decision_threshold,
    )
    compared = 0
    for name, value in sorted(recorded_metrics.items()):
        metric = name.removeprefix("test_")
        if name.startswith("test_") and metric in reproduced:
            comparison.check(f"test {metric}", value, reproduced[metric])
            compared += 1
    if not compared:
        raise ReproduceError("the recorded run has no test metrics to compare with")
    (scratch / "comparison.txt").write_text("\n".join(comparison.lines) + "\n")
    return comparison
