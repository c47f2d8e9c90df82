"""The flights data contract accepts real landed data and rejects broken partitions with a
message naming the partition, the column and the rule."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from trainflow.contracts.flights import ContractViolation, validate_flights
from trainflow.defs.resources import WarehouseResource
from trainflow.lake.delta_lake import DayWindow

DAY = dt.date(2013, 2, 1)


@pytest.fixture(scope="module")
def real_day(built_warehouse) -> pl.DataFrame:
    return WarehouseResource(path=str(built_warehouse)).read_flights(DayWindow(DAY, DAY))


def test_real_landed_day_passes(real_day: pl.DataFrame) -> None:
    assert real_day.height > 900
    assert validate_flights(real_day, partition=str(DAY)) is real_day


def test_retyped_column_fails_naming_partition_column_and_rule(real_day: pl.DataFrame) -> None:
    retyped = real_day.with_columns(pl.col("arr_delay_minutes").cast(pl.String))
    with pytest.raises(ContractViolation) as failure:
        validate_flights(retyped, partition=str(DAY))
    message = str(failure.value)
    assert "partition 2013-02-01" in message
    assert "column 'arr_delay_minutes'" in message
    assert "dtype('Float64')" in message
    assert "observed: String" in message


def test_null_in_key_column_fails_naming_partition_column_and_rule(real_day: pl.DataFrame) -> None:
    broken = real_day.with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(None)
        .otherwise(pl.col("carrier"))
        .alias("carrier")
    )
    with pytest.raises(ContractViolation) as failure:
        validate_flights(broken, partition=str(DAY))
    message = str(failure.value)
    assert "partition 2013-02-01" in message
    assert "column 'carrier' failed rule not_nullable 1 time(s) at rows [7]" in message


def test_duplicate_flight_id_and_unknown_origin_are_both_reported(real_day: pl.DataFrame) -> None:
    broken = pl.concat([real_day, real_day.head(1)]).with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("XXX"))
        .otherwise(pl.col("origin"))
        .alias("origin")
    )
    with pytest.raises(ContractViolation) as failure:
        validate_flights(broken, partition=str(DAY))
    message = str(failure.value)
    assert "column 'flight_id' failed rule field_uniqueness" in message
    assert "column 'origin' failed rule isin" in message
    assert failure.value.failures.height >= 3
