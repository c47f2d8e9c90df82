"""Stage 5, training: a deterministic model of the configured family (`model.family`: LightGBM,
or the PyTorch Lightning MLP) with early stopping on the validation window, logged to MLflow
once per cache key, its manifest stored beside the lake.

LightGBM, scikit-learn, MLflow and torch are imported inside the functions: loading the code
location skips them (`definitions.STEP_MODULES` preloads them for the steps).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from typing import TYPE_CHECKING, Any

import polars as pl

from trainflow.cache import cache_key, with_bookkeeping
from trainflow.config import ExperimentConfig
from trainflow.features.flights import LABEL, LOOKBACK_DAYS
from trainflow.lake.delta_lake import DeltaLake
from trainflow.lake.object_store import ObjectStore
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.lineage import upstream_lineage
from trainflow.manifest import build_manifest, dumps
from trainflow.registry import DAGSTER_RUN_ID_TAG
from trainflow.registry.tracking import MlflowTracking
from trainflow.search import search_name_of
from trainflow.settings import LOCK_FILE, REPO_ROOT
from trainflow.stages.dataset import AS_OF_KEY, config_of_dataset, dataset_lineage
from trainflow.stages.features import DATA_START
from trainflow.stages.step import Json, Link, Markdown, Step, Url, table_hit

if TYPE_CHECKING:
    from mlflow import MlflowClient

TABLE = "model"


class StaleTrainingData(ValueError):
    """The configured windows end too long before the newest landed day."""


def train_model(
    step: Step,
    training_dataset: DeltaInput,
    config: ExperimentConfig,
    lake: DeltaLake,
    manifests: ObjectStore,
    tracking: MlflowTracking,
    newest_landed: dt.date | None,
    baked_commit: str | None,
) -> LakeOutput:
    """The model row (text, sha256, lineage, manifest) to store, or the stored one reused.

    A cache hit (same code, same model config, same dataset version) trains nothing and
    logs nothing. Refuses to train on windows that lag the newest landed day by more than
    the config allows.
    """
    from trainflow.datasets import train_on_dataset
    from trainflow.models.families import training_columns

    config = config_of_dataset(config, lake, training_dataset.version)
    refuse_if_stale(config, newest_landed)
    key = cache_key(
        step.code_version,
        config.hash_of("model", "seed", "features"),
        {"training_dataset": training_dataset.data_version},
    )
    if table_hit(step, lake, TABLE, key, config.name):
        return LakeOutput(frame=None)
    # Only what training reads: the features, the label and the split, left as a lazy scan:
    # LightGBM reads it a column at a time into its matrices (2.50 -> 1.21 GiB peak at
    # scale 10, docs/benchmarks.md); the MLP collects its two splits.
    data = training_dataset.lazy.select(
        *training_columns(config.model.family, config.features), LABEL, "split"
    )
    split_rows = dict(data.group_by("split").len().collect().iter_rows())
    # Wall clock and CPU time (every thread of this process) for the reported durations
    # only: a search's CPU budget adds up `train_cpu_seconds` (trainflow/search.py).
    started, cpu_started = time.perf_counter(), time.process_time()
    trained = train_on_dataset(data, config)
    train_seconds = time.perf_counter() - started
    train_cpu_seconds = time.process_time() - cpu_started
    dataset_read = dataset_lineage(lake, training_dataset.version)
    features_read = dataset_read["flight_features"]
    manifest = _manifest(
        step, config, trained, training_dataset, dataset_read, lake, key, baked_commit
    )
    lineage = {
        "dagster_run_id": step.run_id,
        "config_hash": config.config_hash,
        "code_versions": step.code_versions,
        "input_delta_versions": {
            "training_dataset": training_dataset.version,
            "flight_features": features_read["delta_version"],
        },
        "input_data_versions": {"training_dataset": training_dataset.data_version},
        "seed": config.seed,
    }
    step.info(
        f"model ({config.model.family}): best iteration {trained.best_iteration}, "
        f"validation ROC AUC {trained.validation_auc:.4f}, {train_seconds:.1f}s"
    )
    # A search's trials log into the search's MLflow experiment, not one each.
    experiment_id = tracking.experiment_id(search_name_of(config.name))
    run_id, model_uri, manifest = _log_once(
        step, tracking.client(), experiment_id, key, config, trained, split_rows, lineage, manifest,
        (train_seconds, train_cpu_seconds),
    )  # fmt: skip
    manifest_uri = manifests.put(f"{run_id}.json", dumps(manifest).encode(), "application/json")
    run_url = tracking.run_url(experiment_id, run_id)
    step.add_output_metadata(
        {
            **({"mlflow_run_url": Url(run_url)} if run_url else {}),
            # Rounded for the UI; the manifest and MLflow keep every digit.
            "validation_roc_auc": round(trained.validation_auc, 4),
            "best_iteration": trained.best_iteration,
            "model_sha256": trained.sha256,
            "mlflow_run_id": run_id,
            "config_hash": config.config_hash,
            "train_seconds": round(train_seconds, 2),
            "train_cpu_seconds": round(train_cpu_seconds, 2),
            "manifest_uri": Link(manifest_uri),
            "manifest": Json(manifest),
            **_importance_table(trained),
            "model_family": config.model.family,
        }
    )
    row = pl.DataFrame(
        {
            "model_family": [config.model.family],
            "model_sha256": [trained.sha256],
            "model_text": [trained.model_text],
            "feature_names": [trained.feature_names],
            "best_iteration": [trained.best_iteration],
            "validation_roc_auc": [trained.validation_auc],
            "mlflow_run_id": [run_id],
            "mlflow_model_uri": [model_uri],
            "config_hash": [config.config_hash],
            "lineage_json": [json.dumps(lineage, sort_keys=True)],
            "manifest_json": [dumps(manifest)],
        }
    )
    # The model's content hash is the sha256 of its text, the figure reproduce compares.
    return LakeOutput(frame=with_bookkeeping(row, key, trained.sha256))


def _manifest(
    step: Step,
    config: ExperimentConfig,
    trained: Any,
    training_dataset: DeltaInput,
    dataset_read: dict[str, Any],
    lake: DeltaLake,
    key: str,
    baked_commit: str | None,
) -> dict[str, Any]:
    """The run manifest: code, lock, config (a rolling one as dated windows, with its as-of
    day), seeds, every input down to the raw snapshots."""
    from trainflow.models.mlp_model import MLP_LIBRARIES

    features_read = dataset_read["flight_features"]
    pinned = {AS_OF_KEY: dataset_read[AS_OF_KEY]} if AS_OF_KEY in dataset_read else {}

    return build_manifest(
        repo=REPO_ROOT,
        lock_file=LOCK_FILE,
        baked_commit=baked_commit,
        model={
            "family": config.model.family,
            "sha256": trained.sha256,
            "best_iteration": trained.best_iteration,
            "validation_roc_auc": trained.validation_auc,
            "feature_names": trained.feature_names,
        },
        config=config.model_dump(mode="json"),
        config_hash=config.config_hash,
        seeds=seeds_of(config),
        inputs={
            "training_dataset": {
                "delta_version": training_dataset.version,
                "data_version": training_dataset.data_version,
                "content_hash": training_dataset.table_content_hash,
                **pinned,
            },
            "flight_features": {
                "delta_version": features_read["delta_version"],
                "data_start": DATA_START.isoformat(),
                "partitions": {
                    day: {"delta_version": features_read["delta_version"], **entry}
                    for day, entry in features_read["partitions"].items()
                },
                # A model never rests on thin history without saying so.
                "history": history_summary(features_read["partitions"], config),
            },
            # Back to the raw snapshots, for `trainflow reproduce --from-raw`.
            **upstream_lineage(lake, features_read["partitions"], LOOKBACK_DAYS),
        },
        code_versions=step.code_versions,
        cache_keys={"training_dataset": training_dataset.data_version, "model": key},
        dagster_run_id=step.run_id,
        # The MLP's weights depend on torch's build too: reproduce compares its version.
        extra_libraries=MLP_LIBRARIES if config.model.family == "mlp" else (),
    )


def _log_once(
    step: Step,
    client: MlflowClient,
    experiment_id: str,
    key: str,
    config: ExperimentConfig,
    trained: Any,
    split_rows: dict[str, int],
    lineage: dict[str, Any],
    manifest: dict[str, Any],
    durations: tuple[float, float],
) -> tuple[str, str, dict[str, Any]]:
    """One MLflow run per cache key: a retry, or a re-execution after a kill between the
    logging and the lake commit, reuses the run the first attempt completed. Returns the
    run id, the model URI and the manifest of the attempt that logged it."""
    from trainflow.models.lightgbm_model import TrainedModel
    from trainflow.registry.runs import log_model_run, model_run_once

    logged = model_run_once(
        client,
        experiment_id,
        key,
        trained.sha256,
        log=functools.partial(
            log_model_run,
            experiment_id=experiment_id,
            run_name=f"dagster-{step.run_id[:8]}",
            cache_key=key,
            tags={
                DAGSTER_RUN_ID_TAG: step.run_id,
                # dagster-mlflow names its runs after the job; trainflow keeps its
                # `dagster-<run>` run name and records the job (and the asset) as tags.
                "dagster_job_name": step.job_name,
                "dagster_asset_key": step.asset,
                "config_hash": config.config_hash,
                "model_sha256": trained.sha256,
                "code_version.model": step.code_version,
            },
            params={
                **config.model.params,
                "seed": config.seed,
                "features": ",".join(config.features),
            },
            metrics={
                "validation_roc_auc": trained.validation_auc,
                "best_iteration": trained.best_iteration,
                "train_rows": int(split_rows.get("train", 0)),
                "validation_rows": int(split_rows.get("validation", 0)),
                # Wall clock and CPU time, the logged figures that vary between identical
                # runs (compare and the search read them; reproduce compares test_* only).
                "train_seconds": durations[0],
                "train_cpu_seconds": durations[1],
            },
            documents={
                "experiment_config.json": config.model_dump(mode="json"),
                "lineage.json": lineage,
            },
            manifest_text=dumps(manifest),
            family=config.model.family,
            booster=trained.booster if isinstance(trained, TrainedModel) else None,
            model_text=trained.model_text,
        ),
    )
    for discarded in logged.discarded:
        step.warning(f"model: deleted MLflow run {discarded}, interrupted while logging")
    if logged.reused_manifest is not None:
        manifest = logged.reused_manifest  # the record of the attempt that logged it
        step.info(f"model: reusing MLflow run {logged.run_id}, logged by an earlier attempt")
    return logged.run_id, logged.model_uri, manifest


def _importance_table(trained: Any) -> dict[str, Markdown]:
    """LightGBM's gain per feature, largest first, as a table (the MLP has none)."""
    from trainflow.models.lightgbm_model import TrainedModel

    if not isinstance(trained, TrainedModel):
        return {}
    importance = sorted(
        zip(trained.feature_names, trained.booster.feature_importance("gain"), strict=True),
        key=lambda pair: -pair[1],
    )
    if not importance:
        return {}
    table = "| feature | gain |\n|---|---|\n" + "\n".join(
        f"| {name} | {gain:.0f} |" for name, gain in importance
    )
    return {"feature_importance_gain": Markdown(table)}


def seeds_of(config: ExperimentConfig) -> dict[str, Any]:
    """Every seed and determinism setting of the configured family, for the manifest."""
    from trainflow.models.lightgbm_model import training_params
    from trainflow.models.mlp_model import mlp_seeds

    if config.model.family == "mlp":
        return {"seed": config.seed, "mlp": mlp_seeds(config.seed, config.model.num_threads)}
    return {
        "seed": config.seed,
        "lightgbm": {
            k: v
            for k, v in training_params({}, config.seed, config.model.num_threads).items()
            if k.endswith("seed") or k in ("deterministic", "force_row_wise", "num_threads")
        },
    }


def refuse_if_stale(config: ExperimentConfig, newest_landed: dt.date | None) -> None:
    """Refuse a training run on data older than what has landed (landed data is the clock;
    the wall clock never is)."""
    limit = config.max_input_lag_days
    newest_input = config.dated_windows.test.end
    if limit is None or newest_landed is None:
        return
    lag = (newest_landed - newest_input).days
    if lag > limit:
        raise StaleTrainingData(
            f"model: training refused as stale: newest input partition {newest_input} lags "
            f"the newest landed partition {newest_landed} by {lag} days "
            f"(config {config.name}: max_input_lag_days {limit})"
        )


def history_summary(
    partitions: dict[str, dict[str, Any]], config: ExperimentConfig
) -> dict[str, Any]:
    """The feature days whose rates rest on fewer history days than their window holds, and
    what the config allowed."""
    thin = {
        day: f"{entry['history_days_present']}/{entry['history_days_expected']}"
        for day, entry in sorted(partitions.items())
        if entry.get("history_days_present", 0) < entry.get("history_days_expected", 0)
    }
    return {
        "max_missing_history_days": config.max_missing_history_days,
        "partitions_with_missing_history": thin,
    }
