"""From the warehouse to the lake: daily snapshots, then the data contract (the work is in
`trainflow.stages.snapshot` and `trainflow.stages.validation`)."""

from collections.abc import Iterator

import dagster as dg

from trainflow.defs.caching import CachePolicyResource
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.metadata import to_dagster
from trainflow.defs.partitions import daily_2013, day_window
from trainflow.defs.pods import step_tags
from trainflow.defs.resources import ContractsResource, LakeResource, WarehouseResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.defs.step_context import step_of
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.reference_tables import REFERENCE_TABLES
from trainflow.stages.snapshot import snapshot_flights
from trainflow.stages.validation import (
    CONTRACT_CHECKS,
    QUARANTINE_TABLE,
    Validation,
    validate_flights,
)

SINGLE_RUN = dg.BackfillPolicy.single_run()
__all__ = ["CONTRACT_CHECKS", "QUARANTINE_TABLE", "raw_snapshot", "validated_flights"]


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    # Exactly what it reads: the flights, and the reference tables whose contracts it
    # enforces (so `*raw_snapshot` builds every warehouse model the step queries).
    deps=[
        dg.AssetKey("flights_enriched"),
        *(dg.AssetKey(f"stg_{table}") for table in REFERENCE_TABLES),
    ],
    group_name="ingest",
    kinds={"polars", "deltalake"},
    op_tags=step_tags("raw_snapshot", stage="ingest"),
)
@fail_fast
def raw_snapshot(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    contracts: ContractsResource,
    lake: LakeResource,
    cache_policy: CachePolicyResource,
) -> LakeOutput:
    """The partition's rows of the warehouse model `flights_enriched`, frozen in the lake.

    Every later step reads the snapshot, never the warehouse, so a run can be replayed
    from Delta versions even after the warehouse changes. A day whose warehouse rows are
    unchanged keeps its snapshot (cache hit); a restated day gets a new one. Fails if a
    day has no rows, or if a reference table every flight joins (weather, planes, airports,
    airlines) breaks its data contract.
    """
    return snapshot_flights(
        step_of(context, cache_policy),
        warehouse.models(),
        contracts.reference_contracts(),
        lake.lake(),
        day_window(context.partition_time_window),
        lake.chunk_rows,
    )


quarantine_flights = dg.AssetSpec(
    QUARANTINE_TABLE,
    deps=[raw_snapshot],
    partitions_def=daily_2013,
    group_name="ingest",
    kinds={"deltalake"},
    description=(
        "Rows of raw_snapshot that broke a row rule of the flights contract (rule, column, "
        "observed value, the row, run id). Written by validated_flights in the same step; "
        "`trainflow quarantine list|show|revalidate` reads and replays it."
    ),
)


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    group_name="ingest",
    kinds={"polars", "deltalake", "pandera"},
    op_tags=step_tags("validated_flights", stage="validate"),
    check_specs=[
        dg.AssetCheckSpec(name, asset="validated_flights", description=text, blocking=True)
        for name, text in CONTRACT_CHECKS.items()
    ],
)
@fail_fast
def validated_flights(
    context: dg.AssetExecutionContext,
    raw_snapshot: DeltaInput,
    lake: LakeResource,
    contracts: ContractsResource,
    cache_policy: CachePolicyResource,
) -> Iterator[dg.Output[LakeOutput] | dg.AssetCheckResult | dg.AssetMaterialization]:
    """The snapshot's good rows, checked against the flights data contract (flights.yaml).

    Rows that break a row-level rule go to the quarantine table with rule, column and
    observed value (rows in = validated + quarantined, per partition). A table-level
    violation, or too many rejected rows, fails the step with a message naming partition,
    column, contract version and rule, so no feature or model is built from that partition.
    """
    validation = validate_flights(
        step_of(context, cache_policy, output_name="result"),  # the checks are outputs too
        raw_snapshot,
        contracts.load("flights"),
        lake.lake(),
        day_window(context.partition_time_window),
        lake.chunk_rows,
    )
    yield from _quarantine_written(validation)
    if validation.violation is None:
        yield dg.Output(validation.output)
    yield from _check_results(validation)
    if validation.violation is not None:
        raise validation.violation


def _quarantine_written(validation: Validation) -> Iterator[dg.AssetMaterialization]:
    """One materialization of quarantine_flights per partition written, with its count."""
    for day, rows in validation.quarantined.items():
        yield dg.AssetMaterialization(
            asset_key=QUARANTINE_TABLE,
            partition=day.isoformat(),
            metadata={"rows_quarantined": rows, "dagster/uri": validation.quarantine_uri},
        )


def _check_results(validation: Validation) -> Iterator[dg.AssetCheckResult]:
    for check in validation.checks:
        yield dg.AssetCheckResult(
            check_name=check.name,
            passed=check.passed,
            metadata=to_dagster(check.metadata),
        )
