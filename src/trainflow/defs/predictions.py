"""Batch predictions: each day's flights scored by the champion of the time, then judged on
the day's real outcomes (the work is `trainflow.stages.predictions` and
`trainflow.stages.live_performance`)."""

import dagster as dg

from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.partitions import ALL_EXPERIMENTS, daily_2013, day_window
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import ExperimentConfigResource, LakeResource, MlflowResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.defs.step_context import step_of
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.live_performance import TRAILING_DAYS, measure_live_performance
from trainflow.stages.predictions import score_days


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=daily_2013,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="predictions",
    kinds={"lightgbm", "deltalake", "mlflow"},
    op_tags=step_tags("flight_delay_predictions", stage="predictions"),
    # The model that scores is the registry's champion, registered by one of the
    # experiments' registry entries (lineage shows where the model comes from).
    deps=[dg.AssetDep("registry_entry", partition_mapping=ALL_EXPERIMENTS)],
)
@fail_fast
def flight_delay_predictions(
    context: dg.AssetExecutionContext,
    flight_features: DeltaInput,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """The probability of a late arrival for every flight of the day, by the champion when
    the day is scored, each row naming model version, model sha256 and the feature
    partition's data version.

    A day already scored on the same features is a cache hit, whoever is champion now:
    rescoring is an explicit backfill with `force_recompute`. No champion yet: nothing is
    scored and the days stay open for the next run.
    """
    return score_days(
        step_of(context, cache_policy),
        flight_features,
        experiment.load(),
        lake.lake(),
        day_window(context.partition_time_window),
        mlflow_tracking.client(),
    )


# Day D is judged on the predictions and outcomes of D-6 .. D.
TRAILING = dg.TimeWindowPartitionMapping(
    start_offset=-(TRAILING_DAYS - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
)


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=daily_2013,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="predictions",
    kinds={"polars", "deltalake"},
    op_tags=step_tags("champion_live_performance", stage="predictions"),
    ins={"flight_features": dg.AssetIn(partition_mapping=TRAILING)},
    # Read from the lake, not handed in: a day left unscored (no champion yet) has no rows,
    # and before the first champion the table does not exist at all.
    deps=[dg.AssetDep(flight_delay_predictions, partition_mapping=TRAILING)],
)
@fail_fast
def champion_live_performance(
    context: dg.AssetExecutionContext,
    flight_features: DeltaInput,
    experiment: ExperimentConfigResource,
    mlflow_tracking: MlflowResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """The model that scored each day, measured on that day's outcomes and on the trailing
    7 days it scored (ROC AUC, log loss, Brier, calibration error, rows), against the test
    ROC AUC its evaluation recorded. A drop beyond `monitoring.max_auc_drop` marks the day
    `breached`: the `champion_live_watch` sensor alerts and requests a retrain.
    """
    return measure_live_performance(
        step_of(context, cache_policy),
        flight_features,
        experiment.load(),
        lake.lake(),
        day_window(context.partition_time_window),
        mlflow_tracking.client(),
    )
