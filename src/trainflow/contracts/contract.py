"""Data contracts as versioned YAML files, compiled to pandera polars schemas.

Two kinds of violation, treated differently (nothing is ever silently dropped):
- table-level (a missing, renamed or retyped column; a day with too few rows; a column
  null more often than its `max_null_fraction`; a day that landed later than
  `allowed_late_arrival` allows) fails the partition at once: nothing downstream can be
  trusted;
- row-level (a null key, an unknown code, a value outside its physical bounds or above
  another column it may not exceed, a duplicate key, a UTC timestamp that is not the local
  one) sends the row to quarantine with the rule, column
  and observed value; the partition keeps its good rows, unless more than
  `max_reject_fraction` of its rows were rejected, which fails it.
Every message names the partition, the column, the contract version and the rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandera.polars as pa
import polars as pl
import yaml
from pandera.errors import SchemaErrors
from pydantic import BaseModel, ConfigDict, model_validator

from trainflow.contracts.reference import ROWS, Profile, Reference

POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "Boolean": pl.Boolean,
    "Date": pl.Date,
    "Datetime": pl.Datetime,
    "Float64": pl.Float64,
    "Int32": pl.Int32,
    "Int64": pl.Int64,
    "String": pl.String,
}
QUARANTINE_SCHEMA = {
    "day": pl.Date,
    "row_index": pl.Int64,
    "column": pl.String,
    "rule": pl.String,
    "observed": pl.String,
    "row_json": pl.String,
    "contract": pl.String,
    "run_id": pl.String,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UtcHourOf(_Strict):
    """This column must be the UTC hour of a local wall-clock column in `timezone`."""

    column: str
    timezone: str


class FieldSpec(_Strict):
    type: str
    nullable: bool = True
    unique: bool = False
    enum: list[str] | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    # Table-level: in any partition, at most this share of the column's values may be null.
    max_null_fraction: float | None = None
    utc_hour_of: UtcHourOf | None = None
    # Row-level: never above this other column of the same row (a dew point above the air
    # temperature); a null on either side is not checked here.
    at_most_column: str | None = None


class LateArrival(_Strict):
    """A partition may land at most `max_days` after a later partition had landed.

    `column` holds, on every row, how many days late its partition landed: the warehouse's
    record of landing order, never the wall clock.
    """

    column: str
    max_days: int


class RowsLanded(_Strict):
    """A partition holds exactly the rows the landing log recorded for its day.

    `column` holds, on every row, the flight rows landed for the row's day (null where the
    log predates the count): more rows is another day's rows stamped with this date (or a
    day landed twice), fewer a partial load.
    """

    column: str


class ReferenceWindow(_Strict):
    """The days a partition is compared with: the validated days among the `days` days
    before it (never it or a later day); an expectation against them applies once at least
    `min_days` of them exist."""

    days: int = 28
    min_days: int = 7


class RatioLimits(_Strict):
    min_ratio: float
    max_ratio: float

    def __str__(self) -> str:
        return f"[{self.min_ratio:g}, {self.max_ratio:g}]"


class DistributionLimit(_Strict):
    """How far one quantile of a column may move from its reference window on one day.

    The day's quantile is compared with the median of the same quantile over the window's
    days: as a ratio for quantities with a true zero (distances, delays' upper tail, counts:
    a change of unit multiplies them), as a difference in the column's unit for those whose
    zero is arbitrary (temperatures, years, hours: a change of unit or origin shifts them).
    """

    quantile: float
    min_ratio: float | None = None
    max_ratio: float | None = None
    min_shift: float | None = None
    max_shift: float | None = None

    @model_validator(mode="after")
    def _one_measure(self) -> DistributionLimit:
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile {self.quantile} is not between 0 and 1")
        given = sorted(
            k
            for k in ("min_ratio", "max_ratio", "min_shift", "max_shift")
            if getattr(self, k) is not None
        )
        if given not in (["max_ratio", "min_ratio"], ["max_shift", "min_shift"]):
            raise ValueError(
                "give min_ratio and max_ratio, or min_shift and max_shift "
                f"(given: {', '.join(given) or 'none'})"
            )
        low, high = self.bounds
        neutral = 1.0 if self.measure == "ratio" else 0.0
        if not low < neutral < high:  # "no change" must pass, and each side be a limit
            raise ValueError(
                f"{self.measure} limits [{low:g}, {high:g}] must hold {neutral:g} (no change) "
                "strictly inside"
            )
        return self

    @property
    def measure(self) -> str:
        return "ratio" if self.min_ratio is not None else "shift"

    @property
    def bounds(self) -> tuple[float, float]:
        low, high = (
            (self.min_ratio, self.max_ratio)
            if self.measure == "ratio"
            else (self.min_shift, self.max_shift)
        )
        assert low is not None and high is not None  # the validator saw to it
        return low, high

    def statistic(self, column: str) -> str:
        """Its name in a day's profile: `distance_miles.q90`."""
        return f"{column}.q{self.quantile * 100:g}"

    def __str__(self) -> str:
        low, high = self.bounds
        return f"{self.measure} in [{low:g}, {high:g}]"


class Expectations(_Strict):
    min_rows_per_day: int = 1  # daily tables
    min_rows: int = 1  # reference tables, checked whole
    max_reject_fraction: float = 0.0
    allowed_late_arrival: LateArrival | None = None
    rows_landed: RowsLanded | None = None
    reference_window: ReferenceWindow = ReferenceWindow()
    # A partition's rows over the median rows per day of its reference window.
    volume_vs_reference: RatioLimits | None = None
    # Per numeric column: a quantile of a partition's validated rows against the median of
    # the same quantile over its reference window (a whole day in another unit or scale).
    distribution_vs_reference: dict[str, DistributionLimit] = {}


class Waiver(_Strict):
    """A known, accepted gap in the data: `rule` is not applied to these cells."""

    rule: Literal["max_null_fraction"]
    partitions: list[dt.date]
    columns: list[str]
    reason: str


class Contract(_Strict):
    name: str
    version: int
    key: list[str]
    fields: dict[str, FieldSpec]
    # The column where the staging view records the values it could not cast (a JSON object
    # of column -> raw value, dbt_project/macros/safe_cast.sql): each is a row-level failure.
    cast_failures_column: str | None = None
    expectations: Expectations = Expectations()
    waivers: list[Waiver] = []

    @model_validator(mode="after")
    def _distributions_of_numeric_columns(self) -> Contract:
        for column in self.expectations.distribution_vs_reference:
            spec = self.fields.get(column)
            if spec is None or spec.type not in ("Float64", "Int32", "Int64"):
                raise ValueError(
                    f"distribution_vs_reference: {column!r} is not a numeric column of the contract"
                )
        return self

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def fingerprint(self) -> str:
        """Changes with any rule, so a contract edit revalidates every partition."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    def row_schema(self) -> pa.DataFrameSchema:
        """The row-level rules as a pandera schema (types are checked before, table-level)."""
        columns = {}
        for name, spec in self.fields.items():
            checks = []
            if spec.enum is not None:
                checks.append(pa.Check.isin(spec.enum))
            if spec.min is not None:
                checks.append(pa.Check.ge(spec.min))
            if spec.max is not None:
                checks.append(pa.Check.le(spec.max))
            if spec.pattern is not None:
                checks.append(pa.Check.str_matches(spec.pattern))
            if spec.utc_hour_of is not None:
                checks.append(_utc_hour_check(spec.utc_hour_of))
            if spec.at_most_column is not None:
                checks.append(_at_most_check(spec.at_most_column))
            columns[name] = pa.Column(
                None, checks=checks, nullable=spec.nullable, unique=spec.unique
            )
        # A composite key is unique as a whole (a single-column key uses `unique: true`).
        unique = self.key if len(self.key) > 1 else None
        return pa.DataFrameSchema(columns=columns, strict=False, unique=unique, name=self.label)

    def waived(self, rule: str, day: dt.date, column: str) -> bool:
        return any(
            w.rule == rule and day in w.partitions and column in w.columns for w in self.waivers
        )


def _utc_hour_check(rule: UtcHourOf) -> pa.Check:
    """Cross-column row rule: catches timestamps shifted by a timezone upstream."""
    local_as_utc = (
        pl.col(rule.column)
        .dt.truncate("1h")
        # Ambiguous hours (the autumn DST change) take the first; a local time that does
        # not exist (the spring change) cannot be checked and fails the row.
        .dt.replace_time_zone(rule.timezone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )

    def matches(data: Any) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col(data.key) == local_as_utc).fill_null(False))

    return pa.Check(matches, name=f"utc_hour_of({rule.column}, {rule.timezone})")


def _at_most_check(other: str) -> pa.Check:
    """Cross-column row rule: this value is at most `other`'s on the same row."""

    def at_most(data: Any) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col(data.key) <= pl.col(other)).fill_null(True))

    return pa.Check(at_most, name=f"at_most_column({other})")


def load_contract(path: Path) -> Contract:
    return Contract.model_validate(yaml.safe_load(path.read_text()))


# The contract's expectations, each a Dagster asset check on the validated table, in the
# order they are evaluated: table-level ones first, the reject fraction last.
SCHEMA_RULE = "schema"
MIN_ROWS_RULE = "min_rows_per_day"
ROWS_LANDED_RULE = "rows_landed"
VOLUME_RULE = "volume_vs_reference"
DISTRIBUTION_RULE = "distribution_vs_reference"
NULL_RATE_RULE = "max_null_fraction"
LATE_ARRIVAL_RULE = "allowed_late_arrival"
REJECT_RULE = "max_reject_fraction"
# A reference table's expectations, checked whole, in order.
TABLE_MIN_ROWS_RULE = "min_rows"
TABLE_EXPECTATIONS = (SCHEMA_RULE, TABLE_MIN_ROWS_RULE, REJECT_RULE)


class ContractViolation(ValueError):
    """A partition broke its contract; the message names partition, column, version, rule.

    `expectation` says which expectation failed (one of the *_RULE names above).
    """

    def __init__(
        self,
        message: str,
        expectation: str,
        outcome: ValidationOutcome | None = None,
        observed: Observed | None = None,
    ) -> None:
        super().__init__(message)
        self.expectation = expectation
        self.outcome = outcome
        # What the failing expectation saw (for its asset check), where it says more than
        # the message: a failing partition beside its reference window.
        self.observed = observed or {}


Observed = dict[str, Any]


@dataclass(frozen=True)
class ValidationOutcome:
    valid: pl.DataFrame
    quarantine: pl.DataFrame
    # day -> rows in, validated and quarantined (rows in = validated + quarantined)
    counts_by_day: dict[dt.date, dict[str, int]]
    # expectation -> what was observed against its limit (the asset checks' metadata)
    observed: dict[str, Observed] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        valid: pl.DataFrame,
        quarantine: pl.DataFrame,
        rows_in: dict[dt.date, int],
        observed: dict[str, Observed] | None = None,
    ) -> ValidationOutcome:
        # Every row in is either validated or quarantined (by row_index, once whatever the
        # number of rules it broke), so the validated count follows from the other two.
        rejected = dict(quarantine.group_by("day").agg(pl.col("row_index").n_unique()).iter_rows())
        counts = {
            day: {
                "rows_in": rows,
                "rows_validated": rows - rejected.get(day, 0),
                "rows_quarantined": rejected.get(day, 0),
            }
            for day, rows in rows_in.items()
        }
        return cls(
            valid=valid, quarantine=quarantine, counts_by_day=counts, observed=observed or {}
        )

    def worst_reject_fraction(self) -> tuple[str, float]:
        """(partition, fraction) of the partition with the largest share of rejected rows."""
        worst = max(
            self.counts_by_day.items(),
            key=lambda item: item[1]["rows_quarantined"] / max(item[1]["rows_in"], 1),
        )
        return str(worst[0]), worst[1]["rows_quarantined"] / max(worst[1]["rows_in"], 1)

    def only(self, days: Iterable[dt.date]) -> ValidationOutcome:
        """The outcome of some of the days (those a caller keeps)."""
        kept = set(days)
        return replace(
            self,
            quarantine=self.quarantine.filter(pl.col("day").is_in(kept)),
            counts_by_day={d: c for d, c in self.counts_by_day.items() if d in kept},
        )

    def counts(self, day: dt.date) -> dict[str, int]:
        return self.counts_by_day.get(
            day, {"rows_in": 0, "rows_validated": 0, "rows_quarantined": 0}
        )


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
        failures = _row_failures(indexed, contract, run_id)
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


@dataclass(frozen=True)
class TableReport:
    """A reference table checked whole: its rows and the rows breaking each rule."""

    contract: str
    columns: int
    rows: int
    min_rows: int
    rejected_rows: int
    rejects_by_rule: dict[str, int]
    max_reject_fraction: float

    def observed(self) -> dict[str, Observed]:
        """What each of TABLE_EXPECTATIONS observed against its limit."""
        return {
            SCHEMA_RULE: {"contract": self.contract, "columns": self.columns},
            TABLE_MIN_ROWS_RULE: {"rows": self.rows, "limit": self.min_rows},
            REJECT_RULE: {
                "rejected_rows": self.rejected_rows,
                "reject_fraction_observed": round(self.rejected_rows / max(self.rows, 1), 6),
                "limit": self.max_reject_fraction,
                **{f"rejected by {rule}": n for rule, n in self.rejects_by_rule.items()},
            },
        }


def validate_table(frame: pl.DataFrame, contract: Contract) -> TableReport:
    """A whole reference table (weather, planes, airports, airlines) against its contract.

    Every flight joins these tables, so there is no partition to quarantine: a broken
    schema, too few rows or a reject fraction over the limit raises `ContractViolation`
    naming table, column, contract version and rule; otherwise the counts are returned.
    """
    check_table(frame, contract, f"table {contract.name}")
    if frame.height < contract.expectations.min_rows:
        raise ContractViolation(
            f"table {contract.name} violates data contract {contract.label}: {frame.height} "
            f"rows, fewer than {contract.expectations.min_rows} (rule: {TABLE_MIN_ROWS_RULE})",
            TABLE_MIN_ROWS_RULE,
        )
    indexed = frame.with_row_index("row_index").with_columns(pl.col("row_index").cast(pl.Int64))
    failures = _row_failures(indexed, contract, run_id="")
    by_rule = (
        failures.group_by("column", "rule")
        .agg(pl.col("row_index").n_unique().alias("rows"), pl.col("observed").first())
        .sort(["rows", "column", "rule"], descending=[True, False, False])
    )
    report = TableReport(
        contract=contract.label,
        columns=len(contract.fields),
        rows=frame.height,
        min_rows=contract.expectations.min_rows,
        rejected_rows=failures["row_index"].n_unique(),
        rejects_by_rule={f"{c}: {r}": n for c, r, n, _ in by_rule.iter_rows()},
        max_reject_fraction=contract.expectations.max_reject_fraction,
    )
    fraction = report.rejected_rows / max(frame.height, 1)
    if fraction > contract.expectations.max_reject_fraction:
        detail = ", ".join(
            f"column {column!r} rule {rule} ({n} rows, e.g. observed {observed!r})"
            for column, rule, n, observed in by_rule.head(3).iter_rows()
        )
        raise ContractViolation(
            f"table {contract.name} violates data contract {contract.label}: "
            f"{report.rejected_rows} of {frame.height} rows ({fraction:.2%}) break a rule, over "
            f"max_reject_fraction {contract.expectations.max_reject_fraction:.1%}: {detail}",
            REJECT_RULE,
        )
    return report


def _row_failures(indexed: pl.DataFrame, contract: Contract, run_id: str) -> pl.DataFrame:
    """Every (row, column, rule, observed value) that breaks a row rule, with the row. A
    cell the warehouse could not cast fails that rule only (not the rules its null breaks)."""
    cast = _cast_failures(indexed, contract)
    other = _schema_failures(indexed, contract).join(cast, on=["row_index", "column"], how="anti")
    failures = pl.concat([other, cast])
    if failures.is_empty():
        return pl.DataFrame(schema=QUARANTINE_SCHEMA)
    rows = indexed.filter(pl.col("row_index").is_in(failures["row_index"].unique())).select(
        "row_index",
        pl.col("day") if "day" in indexed.columns else pl.lit(None, pl.Date).alias("day"),
        pl.struct(pl.all().exclude("row_index")).struct.json_encode().alias("row_json"),
    )
    return (
        failures.join(rows, on="row_index", how="left")
        .with_columns(pl.lit(contract.label).alias("contract"), pl.lit(run_id).alias("run_id"))
        .select(list(QUARANTINE_SCHEMA))
        .cast(pl.Schema(QUARANTINE_SCHEMA))
        .sort("day", "row_index", "column")
    )


# One row rule broken by one cell, before the row and its context are joined on.
FAILURE_SCHEMA = pl.Schema(
    {
        "row_index": pl.Int64,
        "column": pl.String,
        "rule": pl.String,
        "observed": pl.String,
    }
)


def _schema_failures(indexed: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """The pandera row rules' failures: (row_index, column, rule, observed)."""
    try:
        contract.row_schema().validate(indexed, lazy=True)
    except SchemaErrors as exc:
        failures = exc.failure_cases.filter(pl.col("index").is_not_null())
    else:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    failures = failures.select(
        pl.col("index").cast(pl.Int64).alias("row_index"),
        pl.col("column").cast(pl.String),
        pl.col("check")
        .cast(pl.String)
        .map_elements(_rule_name, return_dtype=pl.String)
        .alias("rule"),
        pl.col("failure_case").cast(pl.String).alias("observed"),
    )
    if len(contract.key) > 1:  # pandera names the schema and the whole row: name the key
        composite = pl.col("rule") == "multiple_fields_uniqueness"
        failures = failures.with_columns(
            pl.when(composite)
            .then(pl.lit(", ".join(contract.key)))
            .otherwise(pl.col("column"))
            .alias("column"),
            pl.when(composite)
            .then(
                pl.concat_str(
                    [pl.col("observed").str.json_path_match(f"$.{k}") for k in contract.key],
                    separator=", ",
                )
            )
            .otherwise(pl.col("observed"))
            .alias("observed"),
        )
    return failures.cast(FAILURE_SCHEMA)


def _cast_failures(indexed: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """One failure per cell the warehouse could not cast, from the staging view's record
    (`cast_failures_column`: a JSON object of column -> raw value): rule `castable_to(<type>)`,
    observed the raw value."""
    record = contract.cast_failures_column
    if record is None or record not in indexed.columns:
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    fields = {name: pl.String for name in contract.fields if name != record}
    failed = indexed.filter(pl.col(record).is_not_null())
    if failed.is_empty():
        return pl.DataFrame(schema=FAILURE_SCHEMA)
    types = pl.DataFrame(
        {
            "column": list(fields),
            "rule": [f"castable_to({contract.fields[name].type})" for name in fields],
        }
    )
    return (
        failed.select("row_index", pl.col(record).str.json_decode(pl.Struct(fields)).alias("raw"))
        .unnest("raw")
        .unpivot(index="row_index", variable_name="column", value_name="observed")
        .filter(pl.col("observed").is_not_null())
        .join(types, on="column", how="left")
        .select(list(FAILURE_SCHEMA))
        .cast(FAILURE_SCHEMA)
    )


def _rule_name(check: str) -> str:
    """pandera's check name, with enum lists shortened: `isin(['9E', ...])` -> `isin(enum)`."""
    return re.sub(r"^isin\(\[.*\]\)$", "isin(enum)", check)


def describe_quarantine(quarantine: pl.DataFrame) -> dict[str, Any]:
    """Counts per column and rule, for metadata and the CLI."""
    grouped = quarantine.group_by("column", "rule").agg(
        pl.col("row_index").n_unique().alias("rows")
    )
    return {f"{c}: {r}": n for c, r, n in grouped.sort("rows", descending=True).iter_rows()}
