"""Daily point-in-time features (the logic lives in `trainflow.features.flights`)."""

import datetime as dt
import time

import dagster as dg
import polars as pl

from trainflow.cache import cache_key, stamp_days, window_versions
from trainflow.defs.caching import (
    CachePolicyResource,
    code_version_of,
    plan_days,
    refuse_mixed_code,
    report_computed_days,
)
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.io_manager import DeltaInput, LakeOutput
from trainflow.defs.partitions import daily_2013, day_window
from trainflow.defs.resources import LakeResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.features.flights import ALL_FEATURES, LOOKBACK_DAYS, build_flight_features


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
    op_tags={"trainflow/stage": "features"},
)
@fail_fast
def flight_features(
    context: dg.AssetExecutionContext,
    validated_flights: DeltaInput,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """One row per flight of the partition: schedule, weather, plane, rolling delay rates
    from strictly earlier days, and the label.

    A day's cache key covers the data versions of every validated day in its window, so a
    late or restated day recomputes exactly the feature days whose window includes it.
    """
    window = day_window(context.partition_time_window)
    versions = validated_flights.day_versions
    absent = [str(day) for day in window.days() if day not in versions]
    if absent:
        raise ValueError(
            f"flight_features: validated_flights has no rows for partition(s) "
            f"{', '.join(absent[:10])}; materialize them first"
        )
    refuse_mixed_code(context, validated_flights, versions)
    code = code_version_of(context)
    wanted = {
        day: cache_key(code, "", window_versions(versions, lookback(day))) for day in window.days()
    }
    plan = plan_days(context, cache_policy, lake.lake(), "flight_features", window, wanted)
    started = time.perf_counter()
    flights = validated_flights.frame
    if plan.misses:
        features = stamp_days(build_flight_features(flights, plan.misses), plan.keys, code)
    else:
        features = pl.DataFrame()
    report_computed_days(context, features)
    context.log.info(
        f"flight_features: {features.height} rows for {len(plan.misses)} computed day(s) of "
        f"{window} from {flights.height} validated rows incl. {LOOKBACK_DAYS}-day history"
    )
    context.add_output_metadata(
        {
            "features": len(ALL_FEATURES),
            "history_rows_read": flights.height,
            "compute_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return LakeOutput(frame=features, days=plan.misses)


def lookback(day: dt.date) -> list[dt.date]:
    """The validated days a feature day reads: D - 28 .. D."""
    return [day - dt.timedelta(days=n) for n in range(LOOKBACK_DAYS, -1, -1)]
