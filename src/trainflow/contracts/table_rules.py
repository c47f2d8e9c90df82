"""Table-level expectations: a broken one fails the whole partition at once.

A missing or retyped column (`check_table`), a day with too few rows, a day whose rows are
not the rows the landing log recorded, a column null more often than its
`max_null_fraction`, a day landed later than `allowed_late_arrival` allows: each raises
`ContractViolation`, or returns what it observed against its limit. The `*_per_day`
functions measure one chunk of days, so the checks can run over many chunks.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from trainflow.contracts.rules import (
    LATE_ARRIVAL_RULE,
    MIN_ROWS_RULE,
    NULL_RATE_RULE,
    ROWS_LANDED_RULE,
    SCHEMA_RULE,
    ContractViolation,
    Observed,
)
from trainflow.contracts.spec import POLARS_TYPES, Contract


def check_table(frame: pl.DataFrame, contract: Contract, subject: str) -> Observed:
    """Fail fast on what makes every row suspect: missing or retyped columns.

    `subject` names what is checked in the message: "partition 2013-02-01", "table planes".
    """
    problems = []
    for name, spec in contract.fields.items():
        if name not in frame.columns:
            extra = sorted(set(frame.columns) - set(contract.fields))
            hint = f" (columns not in the contract: {', '.join(extra)})" if extra else ""
            problems.append(f"column {name!r} is missing (rule: required column){hint}")
            continue
        wanted = POLARS_TYPES[spec.type]
        found = frame.schema[name]
        if found.base_type() != wanted:
            problems.append(
                f"column {name!r} has type {found}, the contract requires {spec.type} (rule: type)"
            )
    if problems:
        raise ContractViolation(
            f"{subject} violates data contract {contract.label}: " + "; ".join(problems),
            SCHEMA_RULE,
        )
    return {"contract": contract.label, "columns": len(contract.fields)}


def check_row_counts(
    rows_in: dict[dt.date, int], contract: Contract, days: list[dt.date]
) -> Observed:
    limit = contract.expectations.min_rows_per_day
    too_few = [f"{day} ({rows_in.get(day, 0)} rows)" for day in days if rows_in.get(day, 0) < limit]
    if too_few:
        raise ContractViolation(
            f"partition(s) {', '.join(too_few)} violate data contract {contract.label}: "
            f"fewer than {limit} rows (rule: {MIN_ROWS_RULE})",
            MIN_ROWS_RULE,
        )
    return {"min_rows_observed": min(rows_in.get(day, 0) for day in days), "limit": limit}


def _null_limits(contract: Contract) -> dict[str, float]:
    return {c: s.max_null_fraction for c, s in contract.fields.items() if s.max_null_fraction}


def null_rates_per_day(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """day -> the share of nulls of each column with a null limit (one row per day)."""
    limits = _null_limits(contract)
    return frame.group_by("day").agg(
        pl.col(column).null_count().truediv(pl.len()) for column in limits
    )


def check_null_rates(rates: pl.DataFrame, contract: Contract) -> Observed:
    """Per partition and column, the share of nulls (`null_rates_per_day`) against the
    column's limit (waivers excepted): a join or feed that silently breaks upstream shows
    up here."""
    limits = _null_limits(contract)
    if not limits:
        return {}
    over: list[str] = []
    waived: list[str] = []
    worst: dict[str, tuple[float, str]] = {}
    for row in rates.sort("day").iter_rows(named=True):
        day = row.pop("day")
        for column, rate in row.items():
            if contract.waived(NULL_RATE_RULE, day, column):
                waived.append(f"{day} {column}")
                continue
            if rate > worst.get(column, (-1.0, ""))[0]:
                worst[column] = (rate, str(day))
            if rate > limits[column]:
                over.append(
                    f"partition {day}: column {column!r} is null in {rate:.1%} of rows, "
                    f"over max_null_fraction {limits[column]:.1%}"
                )
    if over:
        raise ContractViolation(
            f"data contract {contract.label} violated (rule: {NULL_RATE_RULE}): " + "; ".join(over),
            NULL_RATE_RULE,
        )
    observed: Observed = {
        f"{column} (limit {limits[column]})": f"{rate:.4f} on {day}"
        for column, (rate, day) in worst.items()
    }
    if waived:
        observed["waived"] = ", ".join(waived)
    return observed


def lateness_per_day(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """day -> the largest value of the late-arrival rule's column (one row per day)."""
    rule = contract.expectations.allowed_late_arrival
    if rule is None:
        return frame.group_by("day").len().drop("len")
    return frame.group_by("day").agg(pl.col(rule.column).max())


def check_late_arrival(lateness: pl.DataFrame, contract: Contract) -> Observed:
    """A partition that landed long after later ones is suspect (a replayed old extract, a
    feed that was down): it fails until someone re-lands it or widens the allowance.
    `lateness` is `lateness_per_day` of the partitions checked."""
    rule = contract.expectations.allowed_late_arrival
    if rule is None:
        return {}
    lateness = lateness.sort("day")
    late = lateness.filter(pl.col(rule.column) > rule.max_days)
    if late.height:
        listed = ", ".join(f"{day} ({n} days late)" for day, n in late.iter_rows())
        raise ContractViolation(
            f"partition(s) {listed} violate data contract {contract.label}: landed more than "
            f"{rule.max_days} days after later partitions (column {rule.column!r}, rule: "
            f"{LATE_ARRIVAL_RULE}); to accept it, widen the allowance in a new contract version "
            "and revalidate the partition",
            LATE_ARRIVAL_RULE,
        )
    worst = lateness.sort(rule.column, descending=True).row(0)
    return {"max_days_late_observed": worst[1], "on": str(worst[0]), "limit": rule.max_days}


def landed_per_day(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """day -> rows found and rows the landing log recorded (one row per day)."""
    rule = contract.expectations.rows_landed
    landed = pl.col(rule.column).max() if rule else pl.lit(None, pl.Int64)
    return frame.group_by("day").agg(pl.len().alias("found"), landed.alias("landed"))


def check_rows_landed(found_and_landed: pl.DataFrame, contract: Contract) -> Observed:
    """A partition holds the rows that landed for its day: a mismatch names both numbers
    and the likely cause. `found_and_landed` is `landed_per_day` of the partitions."""
    rule = contract.expectations.rows_landed
    if rule is None:
        return {}
    counts = found_and_landed.sort("day")
    recorded = counts.filter(pl.col("landed").is_not_null())
    wrong = []
    for day, found, landed in recorded.filter(pl.col("found") != pl.col("landed")).iter_rows():
        cause = (
            f"{found - landed} more: rows of another day stamped with this date, or the day "
            "landed twice"
            if found > landed
            else f"{landed - found} fewer: a partial load, or rows stamped with another date"
        )
        wrong.append(
            f"partition {day}: the landing log records {landed} rows landed, the snapshot "
            f"holds {found} ({cause})"
        )
    if wrong:
        raise ContractViolation(
            f"data contract {contract.label} violated (column {rule.column!r}, rule: "
            f"{ROWS_LANDED_RULE}): " + "; ".join(wrong),
            ROWS_LANDED_RULE,
        )
    return {
        "partitions_reconciled": recorded.height,
        "partitions_not_recorded": counts.height - recorded.height,
        "rows_reconciled": int(recorded["found"].sum()),
    }
