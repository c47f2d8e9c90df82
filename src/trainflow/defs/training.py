"""Training: the configured dataset windows, then a model of the configured family (LightGBM
or the MLP) logged to MLflow.

The modules that bring in LightGBM, scikit-learn, MLflow and torch are imported inside the
assets (`definitions.STEP_MODULES`): loading the code location skips them.
"""

import datetime as dt
import functools
import json
import time
from typing import Any

import dagster as dg
import polars as pl

from trainflow.cache import cache_key, window_versions, with_bookkeeping
from trainflow.config import ExperimentConfig
from trainflow.defs.caching import (
    CachePolicyResource,
    code_version_of,
    refuse_mixed_code,
    table_hit,
)
from trainflow.defs.code_versions import code_versions_of_job, versioned_asset
from trainflow.defs.features import DATA_START
from trainflow.defs.io_manager import DeltaInput, LakeOutput, stored_object_link
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import (
    ExperimentConfigResource,
    LakeResource,
    MlflowResource,
    WarehouseResource,
)
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.features import catalog
from trainflow.features.flights import HISTORY_COLUMNS, LABEL, LOOKBACK_DAYS
from trainflow.lineage import upstream_lineage
from trainflow.manifest import build_manifest, dumps
from trainflow.registry import DAGSTER_RUN_ID_TAG
from trainflow.settings import LOCK_FILE, REPO_ROOT, Settings


@versioned_asset(
    retry_policy=IO_RETRY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="training",
    kinds={"polars", "deltalake"},
    op_tags=step_tags("training_dataset", stage="training"),
)
@fail_fast
def training_dataset(
    context: dg.AssetExecutionContext,
    flight_features: DeltaInput,
    experiment: ExperimentConfigResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """Train / validation / test rows chosen by date from the config (time-based splits only).

    Fails, naming the days, if any configured day has no feature partition. Its cache key
    covers the data version of every feature day in the configured span.
    """
    from trainflow.datasets import SPLITS, select_splits

    config = experiment.load()
    span = config.windows.span.days()
    refuse_mixed_code(
        context, flight_features, [d for d in span if d in flight_features.day_versions]
    )
    inputs = {"flight_features": window_versions(flight_features.day_versions, span)}
    key = cache_key(code_version_of(context), config.hash_of("windows", "features"), inputs)
    hashes = flight_features.day_content_hashes
    history = history_per_day(flight_features.lazy)
    upstream = flight_features.day_upstream_versions
    lineage = {
        "flight_features": {
            "delta_version": flight_features.version,
            "partitions": {
                day: {
                    "data_version": version,
                    "content_hash": hashes[dt.date.fromisoformat(day)],
                    # The validated_flights version this feature day was computed from.
                    "validated_flights_version": upstream.get(dt.date.fromisoformat(day)),
                    **history.get(day, {}),
                }
                for day, version in inputs["flight_features"].items()
            },
        }
    }
    context.add_output_metadata(
        {
            "config_hash": config.config_hash,
            "flight_features_delta_version": flight_features.version,
        }
    )
    if table_hit(context, cache_policy, lake.lake(), "training_dataset", key):
        return LakeOutput(frame=None)
    dataset = select_splits(flight_features.lazy, config)
    counts = dict(dataset.group_by("split").len().iter_rows())
    rates = dict(dataset.group_by("split").agg(pl.col(LABEL).mean()).iter_rows())
    context.add_output_metadata(
        {
            "config_name": config.name,
            "dagster/row_count": dataset.height,
            **{f"rows_{s}": int(counts.get(s, 0)) for s in SPLITS},
            **{f"positive_rate_{s}": round(float(rates.get(s, 0.0)), 4) for s in SPLITS},
            "windows": dg.MetadataValue.json(config.windows.model_dump(mode="json")),
        }
    )
    return LakeOutput(
        frame=with_bookkeeping(dataset, key),
        commit_metadata={"trainflow.lineage": json.dumps(lineage, sort_keys=True)},
        column_descriptions=catalog.descriptions(),
    )


@versioned_asset(
    retry_policy=IO_RETRY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="training",
    kinds={"lightgbm", "pytorch", "mlflow"},  # the family is the config's `model.family`
    op_tags=step_tags("model", stage="training"),
    # The staleness rule reads which days have landed in raw.flights.
    deps=[dg.AssetKey(["raw", "flights"])],
)
@fail_fast
def model(
    context: dg.AssetExecutionContext,
    training_dataset: DeltaInput,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
    warehouse: WarehouseResource,
) -> LakeOutput:
    """A deterministic model of the configured family (`model.family`: LightGBM, or the
    PyTorch Lightning MLP) with early stopping on the validation window.

    Stored as one row (model text + lineage) in the lake and logged to MLflow. A cache hit
    (same code, same model config, same dataset version) trains nothing and logs nothing.
    """
    from trainflow.datasets import train_on_dataset
    from trainflow.models.families import training_columns
    from trainflow.models.lightgbm_model import TrainedModel
    from trainflow.models.mlp_model import MLP_LIBRARIES
    from trainflow.registry.runs import log_model_run, model_run_once

    config = experiment.load()
    refuse_if_stale(config, warehouse.newest_landed_day())
    key = cache_key(
        code_version_of(context),
        config.hash_of("model", "seed", "features"),
        {"training_dataset": training_dataset.data_version},
    )
    if table_hit(context, cache_policy, lake.lake(), "model", key):
        return LakeOutput(frame=None)
    # Only what training reads: the features, the label and the split, left as a lazy scan:
    # LightGBM reads it a column at a time into its matrices (2.50 -> 1.21 GiB peak at
    # scale 10, docs/benchmarks.md); the MLP collects its two splits.
    data = training_dataset.lazy.select(
        *training_columns(config.model.family, config.features), LABEL, "split"
    )
    split_rows = dict(data.group_by("split").len().collect().iter_rows())
    started = time.perf_counter()
    trained = train_on_dataset(data, config)
    train_seconds = time.perf_counter() - started
    features_read = _dataset_lineage(lake, training_dataset.version)["flight_features"]
    code_versions = code_versions_of_job(context)
    manifest = build_manifest(
        repo=REPO_ROOT,
        lock_file=LOCK_FILE,
        baked_commit=Settings.from_env().git_commit,
        model={
            "family": config.model.family,
            "sha256": trained.sha256,
            "best_iteration": trained.best_iteration,
            "validation_roc_auc": trained.validation_auc,
            "feature_names": trained.feature_names,
        },
        config=config.model_dump(mode="json"),
        config_hash=config.config_hash,
        seeds=_seeds(config),
        inputs={
            "training_dataset": {
                "delta_version": training_dataset.version,
                "data_version": training_dataset.data_version,
                "content_hash": training_dataset.table_content_hash,
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
            **upstream_lineage(lake.lake(), features_read["partitions"], LOOKBACK_DAYS),
        },
        code_versions=code_versions,
        cache_keys={"training_dataset": training_dataset.data_version, "model": key},
        dagster_run_id=context.run_id,
        # The MLP's weights depend on torch's build too: reproduce compares its version.
        extra_libraries=MLP_LIBRARIES if config.model.family == "mlp" else (),
    )
    lineage = {
        "dagster_run_id": context.run_id,
        "config_hash": config.config_hash,
        "code_versions": code_versions,
        "input_delta_versions": {
            "training_dataset": training_dataset.version,
            "flight_features": features_read["delta_version"],
        },
        "input_data_versions": {"training_dataset": training_dataset.data_version},
        "seed": config.seed,
    }
    context.log.info(
        f"model ({config.model.family}): best iteration {trained.best_iteration}, "
        "validation ROC AUC "
        f"{trained.validation_auc:.4f}, {train_seconds:.1f}s"
    )

    # One MLflow run per cache key: a retry, or a re-execution after a kill between the
    # logging and the lake commit, reuses the run the first attempt completed.
    client = mlflow_tracking.client()
    experiment_id = mlflow_tracking.experiment_id(config.name)
    logged = model_run_once(
        client,
        experiment_id,
        key,
        trained.sha256,
        log=functools.partial(
            log_model_run,
            experiment_id=experiment_id,
            run_name=f"dagster-{context.run_id[:8]}",
            cache_key=key,
            tags={
                DAGSTER_RUN_ID_TAG: context.run_id,
                # dagster-mlflow names its runs after the job; trainflow keeps its
                # `dagster-<run>` run name and records the job (and the asset) as tags.
                "dagster_job_name": context.job_name,
                "dagster_asset_key": context.asset_key.to_user_string(),
                "config_hash": config.config_hash,
                "model_sha256": trained.sha256,
                "code_version.model": code_version_of(context),
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
        context.log.warning(f"model: deleted MLflow run {discarded}, interrupted while logging")
    run_id, model_uri = logged.run_id, logged.model_uri
    if logged.reused_manifest is not None:
        manifest = logged.reused_manifest  # the record of the attempt that logged it
        context.log.info(f"model: reusing MLflow run {run_id}, logged by an earlier attempt")
    manifest_uri = lake.object_store("_manifests").put(
        f"{run_id}.json", dumps(manifest).encode(), "application/json"
    )

    importance = (
        sorted(
            zip(trained.feature_names, trained.booster.feature_importance("gain"), strict=True),
            key=lambda pair: -pair[1],
        )
        if isinstance(trained, TrainedModel)
        else []
    )
    run_url = mlflow_tracking.run_url(experiment_id, run_id)
    context.add_output_metadata(
        {
            **({"mlflow_run_url": dg.MetadataValue.url(run_url)} if run_url else {}),
            # Rounded for the UI; the manifest and MLflow keep every digit.
            "validation_roc_auc": round(trained.validation_auc, 4),
            "best_iteration": trained.best_iteration,
            "model_sha256": trained.sha256,
            "mlflow_run_id": run_id,
            "config_hash": config.config_hash,
            "train_seconds": round(train_seconds, 2),
            "manifest_uri": stored_object_link(manifest_uri),
            "manifest": dg.MetadataValue.json(manifest),
            **(
                {
                    "feature_importance_gain": dg.MetadataValue.md(
                        "| feature | gain |\n|---|---|\n"
                        + "\n".join(f"| {name} | {gain:.0f} |" for name, gain in importance)
                    )
                }
                if importance
                else {}
            ),
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


def _seeds(config: ExperimentConfig) -> dict[str, Any]:
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
    newest_input = config.windows.test.end
    if limit is None or newest_landed is None:
        return
    lag = (newest_landed - newest_input).days
    if lag > limit:
        raise dg.Failure(
            description=(
                f"model: training refused as stale: newest input partition {newest_input} lags "
                f"the newest landed partition {newest_landed} by {lag} days "
                f"(config {config.name}: max_input_lag_days {limit})"
            ),
            allow_retries=False,
        )


def _dataset_lineage(lake: LakeResource, training_dataset_version: int) -> dict[str, Any]:
    """What the training dataset was built from: stored with its Delta commit."""
    lineage = lake.lake().commit_metadata("training_dataset", training_dataset_version)
    if "trainflow.lineage" not in lineage:
        raise ValueError(
            f"training_dataset version {training_dataset_version} has no lineage in its "
            "commit; re-materialize it"
        )
    found: dict[str, Any] = json.loads(lineage["trainflow.lineage"])
    return found


def history_per_day(features: pl.LazyFrame) -> dict[str, dict[str, int]]:
    """ISO day -> the history days expected and present behind that feature day's rates
    (read from those columns only)."""
    if not set(HISTORY_COLUMNS) <= set(features.collect_schema().names()):
        return {}
    per_day = features.group_by("day").agg(pl.col(c).first() for c in HISTORY_COLUMNS).collect()
    return {
        row["day"].isoformat(): {c: int(row[c]) for c in HISTORY_COLUMNS}
        for row in per_day.iter_rows(named=True)
    }


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
