"""The data contract file format: one versioned YAML file per source table, read into
frozen pydantic models.

`load_contract` reads a file; a field that is not part of the format, a distribution limit
without both bounds, or a distribution of a non-numeric column fails the load. `Contract`'s
`fingerprint` changes with any rule, so a contract edit revalidates every partition.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, model_validator

# The type names a field may have (`FieldSpec.type`) and the polars type each requires.
POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "Boolean": pl.Boolean,
    "Date": pl.Date,
    "Datetime": pl.Datetime,
    "Float64": pl.Float64,
    "Int32": pl.Int32,
    "Int64": pl.Int64,
    "String": pl.String,
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

    def waived(self, rule: str, day: dt.date, column: str) -> bool:
        return any(
            w.rule == rule and day in w.partitions and column in w.columns for w in self.waivers
        )


def load_contract(path: Path) -> Contract:
    return Contract.model_validate(yaml.safe_load(path.read_text()))
