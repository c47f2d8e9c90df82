"""Training: the configured dataset windows, then a model of the configured family (LightGBM
or the MLP) logged to MLflow (the work is `trainflow.stages.dataset` and
`trainflow.stages.training`)."""

import dagster as dg

from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.partitions import ALL_DAYS, ONE_EXPERIMENT_PER_RUN, experiments
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import (
    ExperimentConfigResource,
    LakeResource,
    MlflowResource,
    WarehouseResource,
)
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.defs.step_context import step_of
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.settings import Settings
from trainflow.stages.dataset import build_training_dataset
from trainflow.stages.training import train_model


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=experiments,
    # A backfill over several experiments: one run each, side by side up to the queue's limit.
    backfill_policy=ONE_EXPERIMENT_PER_RUN,
    group_name="training",
    kinds={"polars", "deltalake"},
    op_tags=step_tags("training_dataset", stage="training"),
    ins={"flight_features": dg.AssetIn(partition_mapping=ALL_DAYS)},
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
    return build_training_dataset(
        step_of(context, cache_policy),
        flight_features,
        experiment.load_experiment(context.partition_key),
        lake.lake(),
    )


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=experiments,
    # A backfill over several experiments: one run each, side by side up to the queue's limit.
    backfill_policy=ONE_EXPERIMENT_PER_RUN,
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
    return train_model(
        step_of(context, cache_policy),
        training_dataset,
        experiment.load_experiment(context.partition_key),
        lake.lake(),
        lake.object_store("_manifests"),
        mlflow_tracking.tracking(),
        warehouse.newest_landed_day(),
        Settings.from_env().git_commit,
    )
