"""From the warehouse to the lake: daily snapshots, then the data contract."""

import datetime as dt
import time
from collections.abc import Iterator

import dagster as dg
import polars as pl

from trainflow.cache import CachePlan, cache_key, split_days, stamp_days
from trainflow.contracts.contract import (
    LATE_ARRIVAL_RULE,
    MIN_ROWS_RULE,
    NULL_RATE_RULE,
    REJECT_RULE,
    SCHEMA_RULE,
    ContractViolation,
    ValidationOutcome,
    describe_quarantine,
    validate_chunks,
)
from trainflow.contracts.quarantine import REFUSED, VALIDATED, kept, tagged
from trainflow.defs.caching import (
    CachePolicyResource,
    code_version_of,
    plan_days,
    report_computed_days,
)
from trainflow.defs.code_versions import versioned_asset
from trainflow.defs.io_manager import DeltaInput, LakeOutput
from trainflow.defs.partitions import daily_2013, day_window
from trainflow.defs.pods import step_tags
from trainflow.defs.progress import Progress
from trainflow.defs.resources import ContractsResource, LakeResource, WarehouseResource
from trainflow.defs.retries import IO_RETRY, fail_fast
from trainflow.defs.warehouse import REFERENCE_TABLES, check_reference_tables
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.spool import OutputRows, chunk_days
from trainflow.manifest import content_hash

SINGLE_RUN = dg.BackfillPolicy.single_run()
# Rejected rows of validated_flights: one Delta table, daily like the data it came from.
QUARANTINE_TABLE = "quarantine_flights"
# The contract's expectations as blocking asset checks, in the order they are evaluated.
CONTRACT_CHECKS = {
    SCHEMA_RULE: "Every contract column is present with its type.",
    MIN_ROWS_RULE: "Every partition has at least the contract's minimum rows.",
    NULL_RATE_RULE: "No column is null more often than its contract limit, in any partition.",
    LATE_ARRIVAL_RULE: "No partition landed more days after later ones than the contract allows.",
    REJECT_RULE: "No partition rejects more than the contract's share of rows.",
}


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
    group_name="lake",
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
    window = day_window(context.partition_time_window)
    started = time.perf_counter()
    for outcome in check_reference_tables(warehouse, contracts).values():
        if isinstance(outcome, ContractViolation):
            raise outcome
    counts = warehouse.flight_counts(window)
    missing = [str(day) for day in window.days() if day not in counts]
    if missing:
        raise ValueError(
            f"raw_snapshot: no rows in the warehouse for partition(s) {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}; land them first (trainflow land --through "
            f"{window.last})"
        )
    code = code_version_of(context)
    store = lake.lake()
    stored = store.stored_versions("raw_snapshot", window)
    read = Progress(context.log, "raw_snapshot", "read", window.n_days)
    snapshot = OutputRows()
    misses: list[dt.date] = []
    rows_read = 0
    # One query per chunk (the whole real year is one: per-month reads take 2.5x as long).
    for days in chunk_days(counts, window.days(), lake.chunk_rows):
        frame = warehouse.read_flights(DayWindow(days[0], days[-1]))
        read.advance(len(days), frame.height)
        rows_read += frame.height
        wanted = {
            day: cache_key(code, "", {"warehouse_rows": content_hash(rows)})
            for day, rows in split_days(frame).items()
        }
        plan = plan_days(context, cache_policy, store, "raw_snapshot", window, wanted, stored)
        stamped = stamp_days(frame.filter(pl.col("day").is_in(plan.misses)), plan.keys, code)
        report_computed_days(context, stamped)
        snapshot.add(stamped)
        misses += plan.misses
        del frame, stamped
    context.log.info(
        f"raw_snapshot: {rows_read} warehouse rows for {window.n_days} day(s) ({window}), "
        f"{snapshot.rows} rows in {len(misses)} new or restated day(s)"
    )
    context.add_output_metadata(
        {"days": window.n_days, "read_seconds": round(time.perf_counter() - started, 3)}
    )
    return LakeOutput(frame=snapshot.result(), days=misses)


quarantine_flights = dg.AssetSpec(
    QUARANTINE_TABLE,
    deps=[raw_snapshot],
    partitions_def=daily_2013,
    group_name="lake",
    kinds={"deltalake"},
    description=(
        "Rows of raw_snapshot that broke a row rule of the flights contract (rule, column, "
        "observed value, the row, run id). Written by validated_flights in the same step; "
        "`trainflow quarantine list|show|revalidate` reads and replays it."
    ),
)


def _quarantine_written(
    store: DeltaLake, outcome: ValidationOutcome
) -> Iterator[dg.AssetMaterialization]:
    """One materialization of quarantine_flights per partition written, with its count."""
    uri = store.table_uri(QUARANTINE_TABLE)
    for day, counts in sorted(outcome.counts_by_day.items()):
        yield dg.AssetMaterialization(
            asset_key=QUARANTINE_TABLE,
            partition=day.isoformat(),
            metadata={"rows_quarantined": counts["rows_quarantined"], "dagster/uri": uri},
        )


def _write_quarantine(
    store: DeltaLake, rejected: pl.DataFrame, plan: CachePlan, window: DayWindow, attempt: str
) -> None:
    """Replace the quarantine of the days this attempt validates: their new rejects, tagged
    with the attempt's keys, plus the rejects of the validation still stored (visible until
    this attempt's validated rows commit)."""
    days = plan.misses
    previous = (
        store.read(QUARANTINE_TABLE, window).filter(pl.col("day").is_in(days))
        if store.version(QUARANTINE_TABLE) is not None
        else pl.DataFrame()
    )
    new = tagged(rejected, {day: plan.keys[day] for day in days}, attempt)
    rows = pl.concat([kept(previous, plan.stored), new], how="diagonal_relaxed")
    store.write(QUARANTINE_TABLE, rows.select(new.columns), window, days=days)


@versioned_asset(
    retry_policy=IO_RETRY,
    partitions_def=daily_2013,
    backfill_policy=SINGLE_RUN,
    group_name="lake",
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
    window = day_window(context.partition_time_window)
    absent = [str(day) for day in window.days() if day not in raw_snapshot.day_versions]
    if absent:
        raise ValueError(
            f"validated_flights: raw_snapshot has no rows for partition(s) {', '.join(absent[:10])}"
        )
    contract = contracts.load("flights")
    code = code_version_of(context)
    wanted = {
        day: cache_key(code, contract.fingerprint, {"raw_snapshot": raw_snapshot.day_versions[day]})
        for day in window.days()
    }
    store = lake.lake()
    plan = plan_days(context, cache_policy, store, "validated_flights", window, wanted)
    if not plan.misses:
        yield dg.Output(LakeOutput(frame=pl.DataFrame(), days=[]))
        for name in CONTRACT_CHECKS:
            yield dg.AssetCheckResult(
                check_name=name, passed=True, metadata={"cache": "hit (checked when computed)"}
            )
        return
    checked = Progress(context.log, "validated_flights", "validated", len(plan.misses))
    validated = OutputRows()
    null_counts: dict[str, int] = {}

    def snapshot_chunks() -> Iterator[pl.DataFrame]:
        for days in chunk_days(raw_snapshot.day_rows, plan.misses, lake.chunk_rows):
            rows = raw_snapshot.days(days)
            for column, n in rows.null_count().row(0, named=True).items():
                null_counts[column] = null_counts.get(column, 0) + n
            yield rows
            checked.advance(len(days), rows.height)

    def keep_valid(rows: pl.DataFrame) -> None:
        stamped = stamp_days(rows, plan.keys, code, raw_snapshot.version)
        report_computed_days(context, stamped)
        validated.add(stamped)

    try:
        outcome = validate_chunks(
            snapshot_chunks(), contract, plan.misses, context.run_id, on_valid=keep_valid
        )
    except ContractViolation as violation:
        if violation.outcome is not None:  # too many rejects: keep them inspectable
            _write_quarantine(store, violation.outcome.quarantine, plan, window, REFUSED)
            yield from _quarantine_written(store, violation.outcome)
        # The expectations checked before the failing one passed; the failing one fails
        # with the message; later ones were not evaluated.
        names = list(CONTRACT_CHECKS)
        failed = names.index(violation.expectation)
        for name in names[:failed]:
            yield dg.AssetCheckResult(check_name=name, passed=True)
        yield dg.AssetCheckResult(
            check_name=names[failed],
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"contract": contract.label, "violation": str(violation)},
        )
        raise
    # Write order (contracts/quarantine.py): the quarantine now, the validated rows when
    # the IO manager commits the output; readers count only rejects whose key matches.
    _write_quarantine(store, outcome.quarantine, plan, window, VALIDATED)
    yield from _quarantine_written(store, outcome)
    for day in plan.misses:
        context.add_asset_metadata(outcome.counts(day), partition_key=day.isoformat())
    quarantined = outcome.quarantine["row_index"].n_unique()
    valid_rows = sum(c["rows_validated"] for c in outcome.counts_by_day.values())
    context.log.info(
        f"validated_flights: {len(plan.misses)} partition(s) checked against {contract.label}: "
        f"{valid_rows} rows valid, {quarantined} quarantined"
    )
    context.add_output_metadata(
        {
            "contract": contract.label,
            "quarantine_table": store.table_uri(QUARANTINE_TABLE),
            "quarantined_by_rule": dg.MetadataValue.json(describe_quarantine(outcome.quarantine)),
            "null_counts": dg.MetadataValue.json({k: v for k, v in null_counts.items() if v}),
        },
        output_name="result",  # the asset's checks are outputs too
    )
    yield dg.Output(LakeOutput(frame=validated.result(), days=plan.misses))
    for name in CONTRACT_CHECKS:  # every expectation passed: each with what it observed
        yield dg.AssetCheckResult(
            check_name=name, passed=True, metadata=outcome.observed.get(name) or {}
        )
