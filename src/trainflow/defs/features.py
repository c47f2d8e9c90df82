"""Daily point-in-time features (the logic lives in `trainflow.features.flights`)."""

import time

import dagster as dg
import polars as pl

from trainflow.defs.code_versions import CODE_VERSIONS
from trainflow.defs.partitions import FEATURE_LOOKBACK_DAYS, daily_2013, day_window
from trainflow.features.flights import ALL_FEATURES, LABEL, LOOKBACK_DAYS, build_flight_features

assert LOOKBACK_DAYS == FEATURE_LOOKBACK_DAYS, "partition mapping must cover the feature lookback"


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=dg.BackfillPolicy.single_run(),
    code_version=CODE_VERSIONS["flight_features"],
    ins={
        "validated_flights": dg.AssetIn(
            # Day D reads days D-28 .. D: history for the rolling rates, D for the schedule.
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-FEATURE_LOOKBACK_DAYS,
                end_offset=0,
                allow_nonexistent_upstream_partitions=True,
            )
        )
    },
    group_name="features",
    kinds={"polars", "deltalake"},
    op_tags={"trainflow/stage": "features"},
)
def flight_features(
    context: dg.AssetExecutionContext, validated_flights: pl.DataFrame
) -> pl.DataFrame:
    """One row per flight of the partition: schedule, weather, plane, rolling delay rates
    from strictly earlier days, and the label."""
    window = day_window(context.partition_time_window)
    started = time.perf_counter()
    features = build_flight_features(validated_flights, window.days())
    context.log.info(
        f"flight_features: {features.height} rows for {window.n_days} day(s) ({window}) from "
        f"{validated_flights.height} validated rows incl. {FEATURE_LOOKBACK_DAYS}-day history"
    )
    context.add_output_metadata(
        {
            "features": len(ALL_FEATURES),
            "label_positive_rate": float(features[LABEL].drop_nulls().mean() or 0.0),  # type: ignore[arg-type]
            "history_rows_read": validated_flights.height,
            "compute_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return features
