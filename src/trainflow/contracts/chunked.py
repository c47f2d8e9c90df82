"""Validating a partitioned table: one or many days, whole or a chunk of whole days at a
time (bounded memory at scale), every expectation in its order.

`validate_chunks` runs the table-level, row-level and reference-window rules over each
chunk and raises `ContractViolation` after the last one; `validate_partitions` is the same
over one frame held in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import replace

import polars as pl

from trainflow.contracts.reference import Reference
from trainflow.contracts.row_rules import row_failures
from trainflow.contracts.rules import (
    DISTRIBUTION_RULE,
    LATE_ARRIVAL_RULE,
    MIN_ROWS_RULE,
    NULL_RATE_RULE,
    REJECT_RULE,
    ROWS_LANDED_RULE,
    SCHEMA_RULE,
    VOLUME_RULE,
    ContractViolation,
    Observed,
    ValidationOutcome,
)
from trainflow.contracts.spec import Contract
from trainflow.contracts.table_rules import (
    check_late_arrival,
    check_null_rates,
    check_row_counts,
    check_rows_landed,
    check_table,
    landed_per_day,
    lateness_per_day,
    null_rates_per_day,
)
from trainflow.contracts.window_rules import (
    check_distribution,
    check_volume,
    day_profiles,
    reference_for,
)


def validate_partitions(
    frame: pl.DataFrame,
    contract: Contract,
    days: list[dt.date],
    run_id: str,
    reference: Reference | None = None,
) -> ValidationOutcome:
    """Validate the rows of `days` (one or many partitions) against the contract.

    Raises `ContractViolation` for a table-level problem, or when a day's reject fraction
    is over the limit (the exception carries the outcome, so the quarantine can still be
    written and inspected). Otherwise returns good rows, quarantine rows and what each
    expectation observed.
    """
    valid: list[pl.DataFrame] = []
    outcome = validate_chunks([frame], contract, days, run_id, valid.append, reference)
    return replace(outcome, valid=pl.concat(valid))


def validate_chunks(
    chunks: Iterable[pl.DataFrame],
    contract: Contract,
    days: list[dt.date],
    run_id: str,
    on_valid: Callable[[pl.DataFrame], None],
    reference: Reference | None = None,
) -> ValidationOutcome:
    """`validate_partitions` over rows that come a chunk of whole days at a time (bounded
    memory at scale): each chunk's good rows go to `on_valid` as soon as they are known,
    the returned outcome holds the quarantine and counts only (`valid` is empty).

    `reference` holds the profiles of validated days before `days` (none: only the days
    validated here); each chunk's day profiles join it before `on_valid` sees the chunk,
    so a caller can key a day by its reference window then.

    Every expectation is per day (against days before it), so the outcome is the same
    however the days are cut. A violation raises after the last chunk, so `on_valid` may
    have seen rows of a range that is then refused: its caller commits nothing before this
    returns.
    """
    reference = reference if reference is not None else reference_for(contract)
    window = f"{days[0]}..{days[-1]}" if len(days) > 1 else str(days[0])
    observed: dict[str, Observed] = {}
    rows_in: dict[dt.date, int] = {}
    null_rates: list[pl.DataFrame] = []
    lateness: list[pl.DataFrame] = []
    landed: list[pl.DataFrame] = []
    quarantines: list[pl.DataFrame] = []
    offset = 0
    for frame in chunks:
        observed[SCHEMA_RULE] = check_table(frame, contract, f"partition {window}")
        chunk_rows = dict(frame.group_by("day").len().iter_rows())
        rows_in.update(chunk_rows)
        null_rates.append(null_rates_per_day(frame, contract))
        lateness.append(lateness_per_day(frame, contract))
        landed.append(landed_per_day(frame, contract))
        indexed = frame.with_row_index("row_index", offset=offset).with_columns(
            pl.col("row_index").cast(pl.Int64)
        )
        failures = row_failures(indexed, contract, run_id)
        quarantines.append(failures)
        valid = indexed.filter(~pl.col("row_index").is_in(failures["row_index"])).drop("row_index")
        reference.add(day_profiles(chunk_rows, valid, contract))
        on_valid(valid)
        offset += frame.height
    observed[MIN_ROWS_RULE] = check_row_counts(rows_in, contract, days)
    observed[ROWS_LANDED_RULE] = check_rows_landed(pl.concat(landed), contract)
    observed[VOLUME_RULE] = check_volume(days, reference, contract)
    observed[DISTRIBUTION_RULE] = check_distribution(days, reference, contract)
    observed[NULL_RATE_RULE] = check_null_rates(pl.concat(null_rates), contract)
    observed[LATE_ARRIVAL_RULE] = check_late_arrival(pl.concat(lateness), contract)
    quarantine = pl.concat(quarantines)
    outcome = ValidationOutcome.of(
        valid=pl.DataFrame(),
        quarantine=quarantine,
        rows_in={day: rows_in.get(day, 0) for day in days},
        observed=observed,
    )
    limit = contract.expectations.max_reject_fraction
    over = []
    for day in days:
        counts = outcome.counts(day)
        fraction = counts["rows_quarantined"] / max(counts["rows_in"], 1)
        if fraction > limit:
            rules = (
                quarantine.filter(pl.col("day") == day)
                .group_by("column", "rule")
                .agg(pl.col("row_index").n_unique().alias("rows"))
                .sort("rows", descending=True)
            )
            detail = ", ".join(
                f"column {c!r} rule {r} ({n} rows)" for c, r, n in rules.head(3).iter_rows()
            )
            over.append(
                f"partition {day}: {counts['rows_quarantined']} of {counts['rows_in']} rows "
                f"({fraction:.1%}) rejected, over max_reject_fraction {limit:.1%}: {detail}"
            )
    if over:
        raise ContractViolation(
            f"data contract {contract.label} violated; " + "; ".join(over), REJECT_RULE, outcome
        )
    worst_day, worst_fraction = outcome.worst_reject_fraction()
    observed[REJECT_RULE] = {
        "max_reject_fraction_observed": round(worst_fraction, 6),
        "worst_partition": worst_day,
        "limit": limit,
    }
    return outcome
