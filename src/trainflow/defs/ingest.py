"""From the warehouse to the lake: daily snapshots, then the data contract."""

import time

import dagster as dg
import polars as pl

from trainflow.contracts.flights import (
    CONTRACT_NAME,
    CONTRACT_VERSION,
    ContractViolation,
    validate_flights,
)
from trainflow.defs.code_versions import CODE_VERSIONS
from trainflow.defs.partitions import daily_2013, day_window
from trainflow.defs.resources import WarehouseResource
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
def raw_snapshot(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> pl.DataFrame:
    """The partition's rows of the warehouse model `flights_enriched`, frozen in the lake.

    Every later step reads the snapshot, never the warehouse, so a run can be replayed
    from Delta versions even after the warehouse changes. Fails if a day has no rows.
    """
    window = day_window(context.partition_time_window)
    started = time.perf_counter()
    frame = warehouse.read_flights(window)
    per_day = dict(frame.group_by("day").len().iter_rows())
    missing = [str(day) for day in window.days() if day not in per_day]
    if missing:
        raise ValueError(
            f"raw_snapshot: no rows in the warehouse for partition(s) {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}; land them first (trainflow land --through "
            f"{window.last})"
        )
    context.log.info(f"raw_snapshot: {frame.height} rows for {window.n_days} day(s) ({window})")
    context.add_output_metadata(
        {
            "content_sha256": content_hash(frame),
            "days": window.n_days,
            "read_seconds": round(time.perf_counter() - started, 3),
        }
    )
    return frame


@dg.asset(
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    code_version=CODE_VERSIONS["validated_flights"],
    group_name="lake",
    kinds={"polars", "deltalake", "pandera"},
    op_tags={"trainflow/stage": "validate"},
)
def validated_flights(
    context: dg.AssetExecutionContext, raw_snapshot: pl.DataFrame
) -> pl.DataFrame:
    """The snapshot, checked day by day against the flights data contract.

    A violation fails the step with a message naming partition, column and rule, so no
    feature or model is ever built from a partition that broke the contract.
    """
    window = day_window(context.partition_time_window)
    try:
        # One pass over the whole range is fast; only a failure needs the per-day pass.
        validate_flights(raw_snapshot, partition=str(window))
    except ContractViolation:
        for day in window.days():
            validate_flights(raw_snapshot.filter(pl.col("day") == day), partition=str(day))
        raise
    context.log.info(f"validated_flights: {window.n_days}/{window.n_days} partitions pass")
    null_counts = {k: v for k, v in raw_snapshot.null_count().row(0, named=True).items() if v}
    context.add_output_metadata(
        {
            "contract": f"{CONTRACT_NAME} v{CONTRACT_VERSION}",
            "null_counts": dg.MetadataValue.json(null_counts),
            "days": window.n_days,
        }
    )
    return raw_snapshot
