"""Stage 2, validation: the snapshot's good rows, checked against the flights data contract.

Rows that break a row-level rule go to the quarantine table with rule, column and observed
value (rows in = validated + quarantined, per partition). A table-level violation, or too
many rejected rows, is returned as the violation that fails the step, naming partition,
column, contract version and rule, so no feature or model is built from that partition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from trainflow.cache import PROFILE_COLUMN, CachePlan, stamp_days, stamp_first_row
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
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.spool import OutputRows, chunk_days
from trainflow.lake.tables import DeltaInput, LakeOutput
from trainflow.stages.step import (
    ColumnLineage,
    Json,
    Progress,
    Step,
    StoredVersions,
    Table,
    report_computed_days,
    report_decision,
)

TABLE = "validated_flights"
# Rejected rows of validated_flights: one Delta table, daily like the data it came from.
QUARANTINE_TABLE = "quarantine_flights"
# The warehouse model raw_snapshot freezes, column for column.
WAREHOUSE_MODEL = "flights_enriched"
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


@dataclass(frozen=True)
class CheckOutcome:
    """One contract expectation's result, with what it observed."""

    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Validation:
    """What validating a window gave: the rows to commit, each expectation's outcome, the
    quarantine rows written per day, and the violation that fails the step (if any; the
    checks before it passed, those after it were not evaluated)."""

    output: LakeOutput
    checks: list[CheckOutcome]
    quarantined: dict[dt.date, int]
    quarantine_uri: str
    violation: ContractViolation | None = None


def validate_flights(
    step: Step,
    raw_snapshot: DeltaInput,
    contract: Contract,
    lake: DeltaLake,
    window: DayWindow,
    chunk_rows: int,
) -> Validation:
    """Validate the window's days whose key changed, a chunk at a time; write their
    quarantine; the unchanged days are hits and are neither read nor rewritten."""
    absent = [str(day) for day in window.days() if day not in raw_snapshot.day_versions]
    if absent:
        raise ValueError(
            f"validated_flights: raw_snapshot has no rows for partition(s) {', '.join(absent[:10])}"
        )
    stored = lake.stored_versions(TABLE, window)
    keys = _referenced_keys(contract, step, raw_snapshot, lake, window, stored)
    to_validate = keys.decide_known()  # the rest are hits
    quarantine_uri = lake.table_uri(QUARANTINE_TABLE)
    if not to_validate:
        _report_decisions(step, keys.plan(), stored)
        hit = {"cache": "hit (checked when computed)"}
        return Validation(
            output=LakeOutput(frame=pl.DataFrame(), days=[]),
            checks=[CheckOutcome(name, True, hit) for name in CONTRACT_CHECKS],
            quarantined={},
            quarantine_uri=quarantine_uri,
        )
    checked = Progress(step, "validated", len(to_validate))
    validated = OutputRows()
    null_counts: dict[str, int] = {}
    chunk: list[dt.date] = []  # the days of the chunk being validated

    def snapshot_chunks() -> Iterator[pl.DataFrame]:
        for days in chunk_days(raw_snapshot.day_rows, to_validate, chunk_rows):
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
        stamped = stamp_days(
            rows, {d: keys.keys[d] for d in misses}, step.code_version, raw_snapshot.version
        )
        profiles = {d: encode_profile(keys.own[d], keys.reference.profiles[d]) for d in misses}
        stamped = stamp_first_row(stamped, PROFILE_COLUMN, profiles)
        report_computed_days(step, stamped)
        validated.add(stamped)

    try:
        outcome = validate_chunks(
            snapshot_chunks(), contract, to_validate, step.run_id, keep_valid, keys.reference
        )
    except ContractViolation as violation:
        return _refused(step, violation, contract, keys.plan(), lake, window, quarantine_uri)
    plan = keys.plan()
    _report_decisions(step, plan, stored)
    outcome = outcome.only(plan.misses)  # days found unchanged after all are hits
    # Write order (contracts/quarantine.py): the quarantine now, the validated rows when
    # the IO manager commits the output; readers count only rejects whose key matches.
    _write_quarantine(lake, outcome.quarantine, plan, window, VALIDATED)
    for day in plan.misses:
        step.add_partition_metadata(day, outcome.counts(day))
    quarantined = outcome.quarantine["row_index"].n_unique()
    valid_rows = sum(c["rows_validated"] for c in outcome.counts_by_day.values())
    step.info(
        f"validated_flights: {len(plan.misses)} partition(s) checked against {contract.label}: "
        f"{valid_rows} rows valid, {quarantined} quarantined"
    )
    step.add_output_metadata(
        {
            "contract": contract.label,
            "quarantine_table": quarantine_uri,
            "quarantined_by_rule": Json(describe_quarantine(outcome.quarantine)),
            "null_counts": Json({k: v for k, v in null_counts.items() if v}),
            # Each contract column is the warehouse model's column of the same name.
            "dagster/column_lineage": ColumnLineage(
                {column: [(WAREHOUSE_MODEL, column)] for column in contract.fields}
            ),
        }
    )
    return Validation(
        output=LakeOutput(frame=validated.result(), days=plan.misses),
        checks=[
            CheckOutcome(name, True, check_metadata(outcome.observed.get(name)))
            for name in CONTRACT_CHECKS  # every expectation passed: each with what it observed
        ],
        quarantined=_quarantined_days(outcome),
        quarantine_uri=quarantine_uri,
    )


def _refused(
    step: Step,
    violation: ContractViolation,
    contract: Contract,
    plan: CachePlan,
    lake: DeltaLake,
    window: DayWindow,
    quarantine_uri: str,
) -> Validation:
    """The outcome of a window that breaks its contract: too many rejects stay inspectable
    in the quarantine; the expectations checked before the failing one passed, the failing
    one fails with the message, later ones were not evaluated."""
    quarantined: dict[dt.date, int] = {}
    if violation.outcome is not None:
        refused = violation.outcome.only(plan.misses)
        _write_quarantine(lake, refused.quarantine, plan, window, REFUSED)
        quarantined = _quarantined_days(refused)
    names = list(CONTRACT_CHECKS)
    failed = names.index(violation.expectation)
    failing = CheckOutcome(
        names[failed],
        False,
        {
            "contract": contract.label,
            "violation": str(violation),
            **check_metadata(violation.observed),
        },
    )
    return Validation(
        output=LakeOutput(frame=None),
        checks=[CheckOutcome(name, True) for name in names[:failed]] + [failing],
        quarantined=quarantined,
        quarantine_uri=quarantine_uri,
        violation=violation,
    )


def _quarantined_days(outcome: ValidationOutcome) -> dict[dt.date, int]:
    return {
        day: counts["rows_quarantined"] for day, counts in sorted(outcome.counts_by_day.items())
    }


def _write_quarantine(
    lake: DeltaLake, rejected: pl.DataFrame, plan: CachePlan, window: DayWindow, attempt: str
) -> None:
    """Replace the quarantine of the days this attempt validates: their new rejects, tagged
    with the attempt's keys, plus the rejects of the validation still stored (visible until
    this attempt's validated rows commit)."""
    days = plan.misses
    previous = (
        lake.read(QUARANTINE_TABLE, window).filter(pl.col("day").is_in(days))
        if lake.version(QUARANTINE_TABLE) is not None
        else pl.DataFrame()
    )
    new = tagged(rejected, {day: plan.keys[day] for day in days}, attempt)
    rows = pl.concat([kept(previous, plan.stored), new], how="diagonal_relaxed")
    lake.write(QUARANTINE_TABLE, rows.select(new.columns), window, days=days)


def _referenced_keys(
    contract: Contract,
    step: Step,
    raw_snapshot: DeltaInput,
    lake: DeltaLake,
    window: DayWindow,
    stored: StoredVersions,
) -> ReferencedKeys:
    """The window's cache keys: code, contract, the day's snapshot, and its reference
    window, read from the validated days stored before and in the window (point in time:
    each day's window holds only days before it)."""
    spec = contract.expectations.reference_window
    history = DayWindow(window.first - dt.timedelta(days=spec.days), window.last)
    return ReferencedKeys(
        code_version=step.code_version,
        contract_fingerprint=contract.fingerprint,
        snapshot_versions={day: raw_snapshot.day_versions[day] for day in window.days()},
        stored_keys={day: entry[0] for day, entry in stored.items() if day is not None},
        stored_profiles=lake.day_values(TABLE, history, PROFILE_COLUMN),
        reference=reference_for(contract),
        force=step.force,
    )


def _report_decisions(step: Step, plan: CachePlan, stored: StoredVersions) -> None:
    hits = set(plan.hits)
    for day in sorted(plan.keys):
        report_decision(step, day, plan.keys[day], day in hits, stored)
    step.info(
        f"validated_flights: {len(plan.hits)} of {len(plan.keys)} partition(s) reused from "
        f"cache, {len(plan.misses)} computed"
    )


def check_metadata(observed: Observed | None) -> dict[str, Any]:
    """An expectation's observations as check metadata: a partition beside its reference
    window becomes a table in the UI, the rest shows as it is."""
    return {
        name: _window_table(value) if isinstance(value, WindowTable) else value
        for name, value in (observed or {}).items()
    }


def _window_table(table: WindowTable) -> Table:
    return Table(
        records=[
            {
                "day": row["day"],
                "role": row["role"],
                table.statistic: None
                if row[table.statistic] is None
                else round(float(row[table.statistic] or 0), 3),
            }
            for row in table.rows
        ],
        columns={"day": "string", "role": "string", table.statistic: "float"},
    )
