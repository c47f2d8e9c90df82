"""Daily point-in-time features (the work is `trainflow.stages.features`)."""

import dagster as dg

from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.partitions import daily_2013, day_window
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import ExperimentConfigResource, LakeResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.defs.step_context import step_of
from trainflow.features.flights import LOOKBACK_DAYS
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.features import compute_features


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=daily_2013,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={
        "validated_flights": dg.AssetIn(
            # Day D reads days D-28 .. D: history for the rolling rates, D for the schedule.
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-LOOKBACK_DAYS,
                end_offset=0,
                allow_nonexistent_upstream_partitions=True,
            )
        )
    },
    group_name="features",
    kinds={"polars", "deltalake"},
    op_tags=step_tags("flight_features", stage="features"),
)
@fail_fast
def flight_features(
    context: dg.AssetExecutionContext,
    validated_flights: DeltaInput,
    experiment: ExperimentConfigResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """One row per flight of the partition: schedule, weather, plane, rolling delay rates
    from strictly earlier days, the label, and the history days its rates rest on.

    A day's cache key covers the data versions of every validated day in its window, so a
    late or restated day recomputes exactly the feature days whose window includes it.
    A feature day whose window misses a validated day (not landed, or failed validation)
    fails, naming it, unless the experiment config allows that many missing days; nothing
    of the range is written then. Days before the data starts are allowed and recorded.
    """
    return compute_features(
        step_of(context, cache_policy),
        validated_flights,
        experiment.load(),
        lake.lake(),
        day_window(context.partition_time_window),
        lake.chunk_rows,
    )
