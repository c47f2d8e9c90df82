"""From the warehouse to the lake: daily snapshots, then the data contract."""

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from trainflow.cache import (
    PROFILE_COLUMN,
    CachePlan,
    cache_key,
    split_days,
    stamp_days,
    stamp_first_row,
)
from trainflow.contracts import (
    DISTRIBUTION_RULE,
    LATE_ARRIVAL_RULE,
    MIN_ROWS_RULE,
    NULL_RATE_RULE,
    REJECT_RULE,
    ROWS_LANDED_RULE,
    SCHEMA_RULE,
    VOLUME_RULE,
    Contract,
    ContractViolation,
    Observed,
    ValidationOutcome,
    WindowTable,
    describe_quarantine,
    reference_for,
    validate_chunks,
)
from trainflow.contracts.quarantine import REFUSED, VALIDATED, kept, tagged
from trainflow.contracts.reference import ReferencedKeys, encode_profile
from trainflow.defs.caching import (
    CachePolicyResource,
    code_version_of,
    plan_days,
    report_computed_days,
    report_decision,
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
# The warehouse model raw_snapshot freezes, column for column.
WAREHOUSE_MODEL = dg.AssetKey("flights_enriched")
# The contract's expectations as blocking asset checks, in the order they are evaluated.
CONTRACT_CHECKS = {
    SCHEMA_RULE: "Every contract column is present with its type.",
    MIN_ROWS_RULE: "Every partition has at least the contract's minimum rows.",
    ROWS_LANDED_RULE: "Every partition holds the rows the landing log recorded for its day.",
    VOLUME_RULE: "Every partition's rows are within the contract's ratio of its reference "
    "window's median rows per day.",
    DISTRIBUTION_RULE: "In every partition, each bounded column's quantile (contract) is within "
    "its ratio or shift of the median of that quantile over the partition's reference window.",
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
    window = day_window(context.partition_time_window)
    started = time.perf_counter()
    for outcome in check_reference_tables(warehouse, contracts).values():
        if isinstance(outcome, ContractViolation):
            raise outcome
    counts = warehouse.flight_counts(window)
    missing = [day for day in window.days() if day not in counts]
    if missing:
        raise ValueError(_no_rows(warehouse, window, missing))
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


def _no_rows(warehouse: WarehouseResource, window: DayWindow, missing: list[dt.date]) -> str:
    """Why days have no rows: never landed (land them), or landed and gone, which the
    landing log shows, with the likely cause (a neighbour holding more rows than landed)."""
    around = DayWindow(missing[0] - dt.timedelta(days=3), missing[-1] + dt.timedelta(days=3))
    landed, found = warehouse.landed_rows(around), warehouse.flight_counts(around)
    listed = ", ".join(str(day) for day in missing[:10]) + (" ..." if len(missing) > 10 else "")
    message = f"raw_snapshot: no rows in the warehouse for partition(s) {listed}"
    never = [day for day in missing if not landed.get(day)]
    if never:
        message += f"; land them first (trainflow land --through {window.last})"
    surplus = [
        f"{day} holds {found[day]} rows where {landed[day]} were landed"
        for day in sorted(found)
        if day in landed and found[day] > landed[day]
    ]
    cause = (
        f"rows stamped with another date: {', '.join(surplus)}"
        if surplus
        else "a partial load, or rows deleted after landing"
    )
    for day in [day for day in missing if landed.get(day)][:10]:
        message += (
            f"; partition {day}: the landing log records {landed[day]} rows landed, the "
            f"warehouse holds 0 (rule: {ROWS_LANDED_RULE}; likely cause: {cause})"
        )
    return message


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


def _referenced_keys(
    contract: Contract,
    code: str,
    raw_snapshot: DeltaInput,
    store: DeltaLake,
    window: DayWindow,
    stored: dict[dt.date | None, tuple[str, str, int]],
    force: bool,
) -> ReferencedKeys:
    """The window's cache keys: code, contract, the day's snapshot, and its reference
    window, read from the validated days stored before and in the window (point in time:
    each day's window holds only days before it)."""
    spec = contract.expectations.reference_window
    history = DayWindow(window.first - dt.timedelta(days=spec.days), window.last)
    return ReferencedKeys(
        code_version=code,
        contract_fingerprint=contract.fingerprint,
        snapshot_versions={day: raw_snapshot.day_versions[day] for day in window.days()},
        stored_keys={day: entry[0] for day, entry in stored.items() if day is not None},
        stored_profiles=store.day_values("validated_flights", history, PROFILE_COLUMN),
        reference=reference_for(contract),
        force=force,
    )


def _report_decisions(
    context: dg.AssetExecutionContext,
    plan: CachePlan,
    stored: dict[dt.date | None, tuple[str, str, int]],
) -> None:
    hits = set(plan.hits)
    for day in sorted(plan.keys):
        report_decision(context, day, plan.keys[day], day in hits, stored)
    context.log.info(
        f"validated_flights: {len(plan.hits)} of {len(plan.keys)} partition(s) reused from "
        f"cache, {len(plan.misses)} computed"
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
    window = day_window(context.partition_time_window)
    absent = [str(day) for day in window.days() if day not in raw_snapshot.day_versions]
    if absent:
        raise ValueError(
            f"validated_flights: raw_snapshot has no rows for partition(s) {', '.join(absent[:10])}"
        )
    contract = contracts.load("flights")
    code = code_version_of(context)
    store = lake.lake()
    stored = store.stored_versions("validated_flights", window)
    keys = _referenced_keys(
        contract, code, raw_snapshot, store, window, stored, cache_policy.forced(context)
    )
    to_validate = keys.decide_known()  # the rest are hits
    if not to_validate:
        _report_decisions(context, keys.plan(), stored)
        yield dg.Output(LakeOutput(frame=pl.DataFrame(), days=[]))
        for name in CONTRACT_CHECKS:
            yield dg.AssetCheckResult(
                check_name=name, passed=True, metadata={"cache": "hit (checked when computed)"}
            )
        return
    checked = Progress(context.log, "validated_flights", "validated", len(to_validate))
    validated = OutputRows()
    null_counts: dict[str, int] = {}
    chunk: list[dt.date] = []  # the days of the chunk being validated

    def snapshot_chunks() -> Iterator[pl.DataFrame]:
        for days in chunk_days(raw_snapshot.day_rows, to_validate, lake.chunk_rows):
            rows = raw_snapshot.days(days)
            for column, n in rows.null_count().row(0, named=True).items():
                null_counts[column] = null_counts.get(column, 0) + n
            chunk[:] = days
            yield rows
            checked.advance(len(days), rows.height)

    def keep_valid(rows: pl.DataFrame) -> None:
        # The chunk's profiles have joined the reference: each of its days can be keyed by
        # its window now; a day whose key turns out to be the stored one is a hit.
        for day in chunk:
            if day not in keys.keys:
                keys.decide(day)
        misses = [day for day in chunk if day in set(keys.misses)]
        stamped = stamp_days(rows, {d: keys.keys[d] for d in misses}, code, raw_snapshot.version)
        profiles = {d: encode_profile(keys.own[d], keys.reference.profiles[d]) for d in misses}
        stamped = stamp_first_row(stamped, PROFILE_COLUMN, profiles)
        report_computed_days(context, stamped)
        validated.add(stamped)

    try:
        outcome = validate_chunks(
            snapshot_chunks(), contract, to_validate, context.run_id, keep_valid, keys.reference
        )
    except ContractViolation as violation:
        plan = keys.plan()
        if violation.outcome is not None:  # too many rejects: keep them inspectable
            refused = violation.outcome.only(plan.misses)
            _write_quarantine(store, refused.quarantine, plan, window, REFUSED)
            yield from _quarantine_written(store, refused)
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
            metadata={
                "contract": contract.label,
                "violation": str(violation),
                **check_metadata(violation.observed),
            },
        )
        raise
    plan = keys.plan()
    _report_decisions(context, plan, stored)
    outcome = outcome.only(plan.misses)  # days found unchanged after all are hits
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
            # Each contract column is the warehouse model's column of the same name.
            "dagster/column_lineage": dg.TableColumnLineage(
                deps_by_column={
                    column: [dg.TableColumnDep(asset_key=WAREHOUSE_MODEL, column_name=column)]
                    for column in contract.fields
                }
            ),
        },
        output_name="result",  # the asset's checks are outputs too
    )
    yield dg.Output(LakeOutput(frame=validated.result(), days=plan.misses))
    for name in CONTRACT_CHECKS:  # every expectation passed: each with what it observed
        yield dg.AssetCheckResult(
            check_name=name, passed=True, metadata=check_metadata(outcome.observed.get(name))
        )


def check_metadata(observed: Observed | None) -> dict[str, Any]:
    """An expectation's observations as check metadata: a partition beside its reference
    window becomes a table in the UI, the rest shows as it is."""
    return {
        name: _window_table(value) if isinstance(value, WindowTable) else value
        for name, value in (observed or {}).items()
    }


def _window_table(table: WindowTable) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "day": row["day"],
                    "role": row["role"],
                    table.statistic: None
                    if row[table.statistic] is None
                    else round(float(row[table.statistic] or 0), 3),
                }
            )
            for row in table.rows
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("day", "string"),
                dg.TableColumn("role", "string"),
                dg.TableColumn(table.statistic, "float"),
            ]
        ),
    )
