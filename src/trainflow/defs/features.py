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
from trainflow.defs.pods import step_tags
from trainflow.defs.progress import Progress
from trainflow.defs.resources import ExperimentConfigResource, LakeResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.features import catalog
from trainflow.features.flights import (
    ALL_FEATURES,
    LOOKBACK_DAYS,
    features_for_days,
    history_coverage,
    refuse_missing_history,
)
from trainflow.lake.spool import OutputRows, chunk_days

VALIDATED = dg.AssetKey("validated_flights")

# The first day of the data: history before it cannot exist and is never "missing".
DATA_START = daily_2013.start.date()


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
    window = day_window(context.partition_time_window)
    versions = validated_flights.day_versions
    config = experiment.load()
    allowed = config.max_missing_history_days
    coverage = {day: history_coverage(day, versions.keys(), DATA_START) for day in window.days()}
    refuse_missing_history(coverage, allowed, config.name)
    refuse_mixed_code(context, validated_flights, versions)
    code = code_version_of(context)
    wanted = {
        day: cache_key(code, "", window_versions(versions, lookback(day))) for day in window.days()
    }
    plan = plan_days(context, cache_policy, lake.lake(), "flight_features", window, wanted)
    for day, seen in coverage.items():
        context.add_asset_metadata(
            {
                "history_days": f"{seen.present}/{seen.expected}",
                "history_days_before_data": seen.before_data,
                "history_days_missing": ", ".join(map(str, seen.missing)) or "none",
                "max_missing_history_days": allowed,
            },
            partition_key=day.isoformat(),
        )
    started = time.perf_counter()
    history_rows_read = 0
    features = OutputRows()
    progress = Progress(context.log, "flight_features", "computed", len(plan.misses))
    # Only now are validated rows read: a chunk of miss days and its look-back at a time.
    for days in chunk_days(validated_flights.day_rows, plan.misses, lake.chunk_rows):
        flights = validated_flights.between(lookback(days[0])[0], days[-1])
        history_rows_read += flights.height
        built = features_for_days(flights, days, DATA_START, on_batch=progress.advance)
        stamped = stamp_days(built, plan.keys, code, validated_flights.version)
        report_computed_days(context, stamped)
        features.add(stamped)
        del flights, built, stamped
    thin = [c for c in coverage.values() if c.missing]
    context.log.info(
        f"flight_features: {features.rows} rows for {len(plan.misses)} computed day(s) of "
        f"{window} from {history_rows_read} validated rows incl. {LOOKBACK_DAYS}-day history"
        + (f"; {len(thin)} day(s) with missing history allowed (max {allowed})" if thin else "")
    )
    context.add_output_metadata(
        {
            "features": len(ALL_FEATURES),
            "history_rows_read": history_rows_read,
            "days_with_missing_history": len(thin),
            "compute_seconds": round(time.perf_counter() - started, 3),
            # Where each feature comes from: columns of validated_flights (features/catalog.py).
            "dagster/column_lineage": dg.TableColumnLineage(
                deps_by_column={
                    feature: [
                        dg.TableColumnDep(asset_key=VALIDATED, column_name=source)
                        for source in sources
                    ]
                    for feature, sources in catalog.lineage().items()
                }
            ),
        }
    )
    return LakeOutput(
        frame=features.result() if plan.misses else pl.DataFrame(),
        days=plan.misses,
        column_descriptions=catalog.descriptions(),
    )


def lookback(day: dt.date) -> list[dt.date]:
    """The validated days a feature day reads: D - 28 .. D."""
    return [day - dt.timedelta(days=n) for n in range(LOOKBACK_DAYS, -1, -1)]
