"""From the warehouse to the lake: daily snapshots, then the data contract."""

import time

import dagster as dg
import polars as pl

from trainflow.cache import cache_key, stamp_days
from trainflow.contracts.flights import (
    CONTRACT_NAME,
    CONTRACT_VERSION,
    ContractViolation,
    validate_flights,
)
from trainflow.defs.caching import (
    CachePolicyResource,
    code_version_of,
    plan_days,
    report_computed_days,
)
from trainflow.defs.code_versions import CODE_VERSIONS
from trainflow.defs.io_manager import DeltaInput, LakeOutput
from trainflow.defs.partitions import daily_2013, day_window
from trainflow.defs.resources import LakeResource, WarehouseResource
from trainflow.manifest import content_hash

SINGLE_RUN = dg.BackfillPolicy.single_run()


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    code_version=CODE_VERSIONS["raw_snapshot"],
    deps=[dg.AssetKey("flights_enriched")],
    group_name="lake",
    kinds={"polars", "deltalake"},
    op_tags={"trainflow/stage": "ingest"},
)
def raw_snapshot(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """The partition's rows of the warehouse model `flights_enriched`, frozen in the lake.

    Every later step reads the snapshot, never the warehouse, so a run can be replayed
    from Delta versions even after the warehouse changes. A day whose warehouse rows are
    unchanged keeps its snapshot (cache hit); a restated day gets a new one. Fails if a
    day has no rows.
    """
    window = day_window(context.partition_time_window)
    started = time.perf_counter()
    frame = warehouse.read_flights(window)
    by_day = {day: frame.filter(pl.col("day") == day) for day in window.days()}
    missing = [str(day) for day, rows in by_day.items() if rows.is_empty()]
    if missing:
        raise ValueError(
            f"raw_snapshot: no rows in the warehouse for partition(s) {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}; land them first (trainflow land --through "
            f"{window.last})"
        )
    source_versions = {day: content_hash(rows) for day, rows in by_day.items()}
    code = code_version_of(context)
    wanted = {day: cache_key(code, "", {"warehouse_rows": v}) for day, v in source_versions.items()}
    plan = plan_days(context, cache_policy, lake.lake(), "raw_snapshot", window, wanted)
    snapshot = stamp_days(frame.filter(pl.col("day").is_in(plan.misses)), plan.keys)
    report_computed_days(context, snapshot)
    context.log.info(
        f"raw_snapshot: {frame.height} warehouse rows for {window.n_days} day(s) ({window}), "
        f"{snapshot.height} rows in {len(plan.misses)} new or restated day(s)"
    )
    context.add_output_metadata(
        {"days": window.n_days, "read_seconds": round(time.perf_counter() - started, 3)}
    )
    return LakeOutput(frame=snapshot, days=plan.misses)


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    code_version=CODE_VERSIONS["validated_flights"],
    group_name="lake",
    kinds={"polars", "deltalake", "pandera"},
    op_tags={"trainflow/stage": "validate"},
)
def validated_flights(
    context: dg.AssetExecutionContext,
    raw_snapshot: DeltaInput,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """The snapshot, checked day by day against the flights data contract.

    A violation fails the step with a message naming partition, column and rule, so no
    feature or model is ever built from a partition that broke the contract.
    """
    window = day_window(context.partition_time_window)
    absent = [str(day) for day in window.days() if day not in raw_snapshot.day_versions]
    if absent:
        raise ValueError(
            f"validated_flights: raw_snapshot has no rows for partition(s) {', '.join(absent[:10])}"
        )
    code = code_version_of(context)
    contract = f"{CONTRACT_NAME} v{CONTRACT_VERSION}"
    wanted = {
        day: cache_key(code, contract, {"raw_snapshot": raw_snapshot.day_versions[day]})
        for day in window.days()
    }
    plan = plan_days(context, cache_policy, lake.lake(), "validated_flights", window, wanted)
    todo = raw_snapshot.frame.filter(pl.col("day").is_in(plan.misses))
    try:
        # One pass over the whole range is fast; only a failure needs the per-day pass.
        validate_flights(todo, partition=str(window))
    except ContractViolation:
        for day in plan.misses:
            validate_flights(todo.filter(pl.col("day") == day), partition=str(day))
        raise
    context.log.info(f"validated_flights: {len(plan.misses)} partition(s) checked and passed")
    validated = stamp_days(todo, plan.keys)
    report_computed_days(context, validated)
    null_counts = {k: v for k, v in todo.null_count().row(0, named=True).items() if v}
    context.add_output_metadata(
        {
            "contract": contract,
            "null_counts": dg.MetadataValue.json(null_counts),
            "days": window.n_days,
        }
    )
    return LakeOutput(frame=validated, days=plan.misses)
