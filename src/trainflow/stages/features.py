"""Stage 3, features: one row per flight of each day, from point-in-time history only.

A day's cache key covers the data versions of every validated day in its window, so a late
or restated day recomputes exactly the feature days whose window includes it. The feature
logic itself is `trainflow.features.flights`.
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl

from trainflow.cache import cache_key, stamp_days, window_versions
from trainflow.config import ExperimentConfig
from trainflow.features import catalog
from trainflow.features.flights import (
    ALL_FEATURES,
    LOOKBACK_DAYS,
    features_for_days,
    history_coverage,
    refuse_missing_history,
)
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.spool import OutputRows, chunk_days
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.sources.nycflights13 import FIRST_DAY
from trainflow.stages.step import (
    ColumnLineage,
    Progress,
    Step,
    plan_days,
    refuse_mixed_code,
    report_computed_days,
)

TABLE = "flight_features"
# The first day of the data: history before it cannot exist and is never "missing".
DATA_START = FIRST_DAY


def lookback(day: dt.date) -> list[dt.date]:
    """The validated days a feature day reads: D - 28 .. D."""
    return [day - dt.timedelta(days=n) for n in range(LOOKBACK_DAYS, -1, -1)]


def compute_features(
    step: Step,
    validated_flights: DeltaInput,
    config: ExperimentConfig,
    lake: DeltaLake,
    window: DayWindow,
    chunk_rows: int,
) -> LakeOutput:
    """The window's feature days whose key changed, a chunk of days and its look-back at a
    time. A feature day whose window misses a validated day (not landed, or failed
    validation) fails, naming it, unless the config allows that many missing days; nothing
    of the range is written then. Days before the data starts are allowed and recorded.
    """
    versions = validated_flights.day_versions
    allowed = config.max_missing_history_days
    coverage = {day: history_coverage(day, versions.keys(), DATA_START) for day in window.days()}
    refuse_missing_history(coverage, allowed, config.name)
    refuse_mixed_code(step, validated_flights, versions)
    wanted = {
        day: cache_key(step.code_version, "", window_versions(versions, lookback(day)))
        for day in window.days()
    }
    plan = plan_days(step, lake, TABLE, window, wanted)
    for day, seen in coverage.items():
        step.add_partition_metadata(
            day,
            {
                "history_days": f"{seen.present}/{seen.expected}",
                "history_days_before_data": seen.before_data,
                "history_days_missing": ", ".join(map(str, seen.missing)) or "none",
                "max_missing_history_days": allowed,
            },
        )
    started = time.perf_counter()
    history_rows_read = 0
    features = OutputRows()
    progress = Progress(step, "computed", len(plan.misses))
    # Only now are validated rows read: a chunk of miss days and its look-back at a time.
    for days in chunk_days(validated_flights.day_rows, plan.misses, chunk_rows):
        flights = validated_flights.between(lookback(days[0])[0], days[-1])
        history_rows_read += flights.height
        built = features_for_days(flights, days, DATA_START, on_batch=progress.advance)
        stamped = stamp_days(built, plan.keys, step.code_version, validated_flights.version)
        report_computed_days(step, stamped)
        features.add(stamped)
        del flights, built, stamped
    thin = [c for c in coverage.values() if c.missing]
    step.info(
        f"flight_features: {features.rows} rows for {len(plan.misses)} computed day(s) of "
        f"{window} from {history_rows_read} validated rows incl. {LOOKBACK_DAYS}-day history"
        + (f"; {len(thin)} day(s) with missing history allowed (max {allowed})" if thin else "")
    )
    step.add_output_metadata(
        {
            "features": len(ALL_FEATURES),
            "history_rows_read": history_rows_read,
            "days_with_missing_history": len(thin),
            "compute_seconds": round(time.perf_counter() - started, 3),
            # Where each feature comes from: columns of validated_flights (features/catalog.py).
            "dagster/column_lineage": ColumnLineage(
                {
                    feature: [("validated_flights", source) for source in sources]
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
