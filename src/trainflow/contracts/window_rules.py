"""Expectations against a day's reference window (`volume_vs_reference`,
`distribution_vs_reference`): a day compared with the validated days before it.

`day_profiles` measures what the expectations compare (rows in, quantiles of the validated
rows); `check_volume` and `check_distribution` compare each day with the median of its
window (`reference.Reference`) and raise `ContractViolation`, carrying the failing day beside
its window (`WindowTable`), when a day is outside its limits.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from trainflow.contracts.reference import ROWS, Profile, Reference
from trainflow.contracts.rules import DISTRIBUTION_RULE, VOLUME_RULE, ContractViolation, Observed
from trainflow.contracts.spec import Contract


def reference_for(contract: Contract) -> Reference:
    """An empty reference window as the contract defines it (profiles are added as days are
    validated, or read from the validated days stored)."""
    window = contract.expectations.reference_window
    return Reference(days=window.days, min_days=window.min_days)


def day_profiles(
    rows_in: Mapping[dt.date, int], valid: pl.DataFrame, contract: Contract
) -> dict[dt.date, Profile]:
    """What the reference expectations measure on each day, for later days' windows: its
    rows in, and the quantiles `distribution_vs_reference` names, of its validated rows
    only (a quarantined value never shapes a reference)."""
    limits = contract.expectations.distribution_vs_reference
    profiles: dict[dt.date, Profile] = {day: {ROWS: float(rows)} for day, rows in rows_in.items()}
    if not limits:
        return profiles
    quantiles = valid.group_by("day").agg(
        pl.col(column)
        .cast(pl.Float64)
        .quantile(limit.quantile, "nearest")
        .alias(limit.statistic(column))
        for column, limit in limits.items()
    )
    for row in quantiles.iter_rows(named=True):
        day = row.pop("day")
        profiles.setdefault(day, {ROWS: 0.0}).update(row)
    return profiles


@dataclass(frozen=True)
class WindowTable:
    """One statistic of a partition beside each day of its reference window: what an
    asset check shows for the worst partition (the UI layer renders it as a table)."""

    statistic: str
    rows: list[dict[str, str | float | None]]


def window_table(day: dt.date, statistic: str, reference: Reference) -> WindowTable:
    """`statistic` on each validated day of `day`'s window, the window's median, and `day`."""
    median, window = reference.baseline(day, statistic)
    value = reference.profiles.get(day, {}).get(statistic)
    rows: list[dict[str, str | float | None]] = [
        {"day": str(d), "role": "reference", statistic: reference.profiles[d].get(statistic)}
        for d in window
    ]
    rows.append({"day": f"{window[0]}..{window[-1]}", "role": "window median", statistic: median})
    rows.append({"day": str(day), "role": "partition", statistic: value})
    return WindowTable(statistic=statistic, rows=rows)


def _compare(value: float, median: float, measure: str) -> float | None:
    """The day against its window: value / median, or value - median; None when a ratio
    has no meaning (a median of zero or below)."""
    if measure == "shift":
        return value - median
    return value / median if median > 0 else None


def _without_reference(unchecked: int, contract: Contract) -> str:
    spec = contract.expectations.reference_window
    return (
        f"{unchecked} (fewer than {spec.min_days} validated days in the {spec.days} days "
        "before them)"
    )


def check_volume(days: list[dt.date], reference: Reference, contract: Contract) -> Observed:
    """Each partition's rows against the median rows per day of its reference window: a
    partial load, or a neighbour's rows stamped with this date."""
    limits = contract.expectations.volume_vs_reference
    if limits is None:
        return {}
    wrong: list[str] = []
    failing: Observed = {}
    ratios: list[tuple[float, dt.date]] = []
    unchecked = 0
    for day in sorted(days):
        rows = reference.profiles.get(day, {}).get(ROWS)
        median, window = reference.baseline(day, ROWS)
        if median is None or rows is None:
            unchecked += 1
            continue
        ratio = rows / median
        ratios.append((ratio, day))
        if not limits.min_ratio <= ratio <= limits.max_ratio:
            failing = failing or {
                "partition": f"{day}: {ratio:.3f}",
                "limit": str(limits),
                "partition_vs_window": window_table(day, ROWS, reference),
            }
            wrong.append(
                f"partition {day}: {rows:.0f} rows, {ratio:.2f} times the median of its "
                f"reference window ({median:.0f} rows per day over {len(window)} validated "
                f"days, {window[0]}..{window[-1]}), outside {limits}"
            )
    if wrong:
        raise ContractViolation(
            f"data contract {contract.label} violated (rule: {VOLUME_RULE}): " + "; ".join(wrong),
            VOLUME_RULE,
            observed=failing,
        )
    observed: Observed = {"limit": str(limits), "partitions_checked": len(ratios)}
    if ratios:
        (low, low_day), (high, high_day) = min(ratios), max(ratios)
        # The partition furthest from its window (on a log scale: half is as far as double).
        worst_ratio, worst_day = max(
            ratios, key=lambda r: abs(math.log(r[0])) if r[0] > 0 else math.inf
        )
        observed |= {
            "lowest_ratio": f"{low:.3f} on {low_day}",
            "highest_ratio": f"{high:.3f} on {high_day}",
            "worst_partition": f"{worst_day}: {worst_ratio:.3f}",
            "worst_partition_vs_window": window_table(worst_day, ROWS, reference),
        }
    if unchecked:
        observed["partitions_without_reference"] = _without_reference(unchecked, contract)
    return observed


def check_distribution(days: list[dt.date], reference: Reference, contract: Contract) -> Observed:
    """Per partition and column, a quantile of its validated rows against the median of
    the same quantile over its reference window: a whole day delivered in another unit or
    scale (kilometres for miles, hours for minutes) passes every row rule and fails here.

    A partition that breaks a limit fails (nothing of it is validated); its rows stay in
    raw_snapshot to inspect. Observed: per column the partition furthest inside its limits
    (as a share of the limit's distance from no change), and the worst column's partition
    beside its window.
    """
    limits = contract.expectations.distribution_vs_reference
    if not limits:
        return {}
    wrong: list[str] = []
    failing: Observed = {}
    # column -> (share of the limit used, day, ratio or shift): its partition nearest a limit
    worst: dict[str, tuple[float, dt.date, float]] = {}
    unchecked = 0
    for day in sorted(days):
        for column, limit in limits.items():
            statistic = limit.statistic(column)
            value = reference.profiles.get(day, {}).get(statistic)
            median, window = reference.baseline(day, statistic)
            if value is None or median is None:
                unchecked += 1
                continue
            seen = _compare(value, median, limit.measure)
            if seen is None:
                unchecked += 1
                continue
            low, high = limit.bounds
            neutral = 1.0 if limit.measure == "ratio" else 0.0
            used = (
                (seen - neutral) / (high - neutral)
                if seen >= neutral
                else ((neutral - seen) / (neutral - low))
            )
            if used > worst.get(column, (-1.0,))[0]:
                worst[column] = (used, day, seen)
            if not low <= seen <= high:
                failing = failing or {
                    "column": column,
                    "partition": f"{day}: {seen:.3f}",
                    "limit": str(limit),
                    "partition_vs_window": window_table(day, statistic, reference),
                }
                described = f"{seen:.3g} times" if limit.measure == "ratio" else f"{seen:+.3g} from"
                wrong.append(
                    f"partition {day}: column {column!r} {statistic.split('.')[-1]} "
                    f"{value:.6g} is {described} the median of its reference window "
                    f"({median:.6g} over {len(window)} validated days, {window[0]}..{window[-1]}),"
                    f" outside {limit}"
                )
    if wrong:
        raise ContractViolation(
            f"data contract {contract.label} violated (rule: {DISTRIBUTION_RULE}): "
            + "; ".join(wrong)
            + " (the partition's rows stay in raw_snapshot to inspect; if the change is "
            "real, widen the limit in a new contract version and revalidate)",
            DISTRIBUTION_RULE,
            observed=failing,
        )
    observed: Observed = {
        f"{column} ({limits[column]})": (f"{seen:.3f} on {day} ({used:.0%} of the limit)")
        for column, (used, day, seen) in sorted(worst.items())
    }
    if worst:
        column, (used, day, seen) = max(worst.items(), key=lambda item: item[1][0])
        observed["worst_column"] = f"{column} on {day}: {seen:.3f} ({used:.0%} of the limit)"
        observed["worst_column_vs_window"] = window_table(
            day, limits[column].statistic(column), reference
        )
    if unchecked:
        observed["partition_columns_without_reference"] = _without_reference(unchecked, contract)
    return observed
