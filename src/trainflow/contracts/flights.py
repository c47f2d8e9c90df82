"""The flights data contract (version 1), as a pandera polars schema.

A violation raises `ContractViolation` whose message names the partition, the column and
the rule, with a few example rows, so the Dagster UI shows what broke without a log dive.
The quarantine of single bad rows arrives with the contracts issue; here any violation
fails the partition.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

CONTRACT_NAME = "flights"
CONTRACT_VERSION = "1"

CARRIERS = (
    "9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL",
    "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV",
)  # fmt: skip
ORIGINS = ("EWR", "JFK", "LGA")
KEY_COLUMNS = ("flight_id", "day", "carrier", "flight_number", "origin", "dest", "sched_dep_local")


def _col(
    dtype: type[pl.DataType] | pl.DataType, *, nullable: bool = True, **kw: object
) -> pa.Column:
    return pa.Column(dtype, nullable=nullable, **kw)  # type: ignore[arg-type]


FLIGHTS_SCHEMA = pa.DataFrameSchema(
    name=f"{CONTRACT_NAME} v{CONTRACT_VERSION}",
    columns={
        "flight_id": _col(pl.Int64, nullable=False, unique=True),
        "day": _col(pl.Date, nullable=False),
        "carrier": _col(pl.String, nullable=False, checks=pa.Check.isin(CARRIERS)),
        "flight_number": _col(pl.Int32, nullable=False, checks=pa.Check.ge(1)),
        "tailnum": _col(pl.String),
        "origin": _col(pl.String, nullable=False, checks=pa.Check.isin(ORIGINS)),
        "dest": _col(pl.String, nullable=False, checks=pa.Check.str_matches(r"^[A-Z0-9]{3}$")),
        "sched_dep_hour": _col(pl.Int32, nullable=False, checks=pa.Check.in_range(0, 23)),
        "sched_dep_local": _col(pl.Datetime("us"), nullable=False),
        "distance_miles": _col(pl.Float64, nullable=False, checks=pa.Check.in_range(1, 6000)),
        "temp_f": _col(pl.Float64, checks=pa.Check.in_range(-40, 130)),
        "dewpoint_f": _col(pl.Float64),
        "humidity_pct": _col(pl.Float64, checks=pa.Check.in_range(0, 100)),
        "wind_speed_mph": _col(pl.Float64, checks=pa.Check.in_range(0, 1100)),
        "wind_gust_mph": _col(pl.Float64),
        "precip_in": _col(pl.Float64, checks=pa.Check.ge(0)),
        "pressure_mb": _col(pl.Float64),
        "visibility_mi": _col(pl.Float64, checks=pa.Check.ge(0)),
        "plane_manufacture_year": _col(pl.Int32),
        "plane_seats": _col(pl.Int32),
        "dep_delay_minutes": _col(pl.Float64),
        "arr_delay_minutes": _col(pl.Float64),
        "cancelled": _col(pl.Boolean, nullable=False),
        "diverted": _col(pl.Boolean, nullable=False),
    },
    strict=False,
)


class ContractViolation(ValueError):
    """A partition broke the data contract; the message names partition, column and rule."""

    def __init__(self, message: str, failures: pl.DataFrame) -> None:
        super().__init__(message)
        self.failures = failures


def validate_flights(frame: pl.DataFrame, partition: str) -> pl.DataFrame:
    """Return `frame` if it satisfies the contract, else raise `ContractViolation`."""
    try:
        FLIGHTS_SCHEMA.validate(frame, lazy=True)
    except SchemaErrors as exc:
        failures = exc.failure_cases
        raise ContractViolation(_describe(failures, partition), failures) from None
    return frame


def _describe(failures: pl.DataFrame, partition: str) -> str:
    lines = [
        f"partition {partition} violates data contract {CONTRACT_NAME} "
        f"v{CONTRACT_VERSION} ({failures.height} failure(s)):"
    ]
    grouped = failures.group_by(["column", "check"], maintain_order=True).agg(
        pl.len().alias("n"),
        pl.col("failure_case").head(3).alias("examples"),
        pl.col("index").drop_nulls().head(3).alias("rows"),
    )
    for row in grouped.iter_rows(named=True):
        examples = ", ".join(str(v) for v in row["examples"])
        where = f" at rows {row['rows']}" if row["rows"] else ""
        lines.append(
            f"  column {row['column']!r} failed rule {row['check']} "
            f"{row['n']} time(s){where}; observed: {examples}"
        )
    return "\n".join(lines)
