"""The flights data contract (a YAML file compiled to pandera) on real landed data:
table-level violations fail fast, row-level ones go to quarantine, counted; every message
names partition, column, contract version and rule."""

import datetime as dt

import polars as pl
import pytest

from trainflow.contracts.contract import ContractViolation, load_contract, validate_partitions
from trainflow.contracts.flights import CONTRACT_FILE, FLIGHTS_CONTRACT
from trainflow.defs.resources import WarehouseResource
from trainflow.lake.delta_lake import DayWindow

DAY = dt.date(2013, 2, 1)


@pytest.fixture(scope="module")
def real_day(built_warehouse) -> pl.DataFrame:
    return WarehouseResource(path=str(built_warehouse)).read_flights(DayWindow(DAY, DAY))


def validate(frame: pl.DataFrame):
    return validate_partitions(frame, FLIGHTS_CONTRACT, [DAY], run_id="test-run")


def set_rows(frame: pl.DataFrame, column: str, value, rows: int) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) < rows)
        .then(pl.lit(value, dtype=frame.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
    )


def test_contract_file_is_versioned_and_loads() -> None:
    contract = load_contract(CONTRACT_FILE)
    assert contract.label == "flights v2"
    assert contract.key == ["flight_id"]
    assert contract.fields["carrier"].enum and "AA" in contract.fields["carrier"].enum


def test_real_landed_day_passes_whole(real_day: pl.DataFrame) -> None:
    outcome = validate(real_day)
    assert outcome.counts(DAY) == {
        "rows_in": real_day.height,
        "rows_validated": real_day.height,
        "rows_quarantined": 0,
    }


def test_retyped_column_fails_naming_partition_column_version_and_rule(real_day) -> None:
    retyped = real_day.with_columns(pl.col("arr_delay_minutes").cast(pl.String))
    with pytest.raises(ContractViolation) as failure:
        validate(retyped)
    assert str(failure.value) == (
        "partition 2013-02-01 violates data contract flights v2: column 'arr_delay_minutes' "
        "has type String, the contract requires Float64 (rule: type)"
    )


def test_null_in_key_column_is_quarantined_with_rule_and_counts(real_day) -> None:
    outcome = validate(set_rows(real_day, "carrier", None, rows=3))
    assert outcome.counts(DAY) == {
        "rows_in": real_day.height,
        "rows_validated": real_day.height - 3,
        "rows_quarantined": 3,
    }
    q = outcome.quarantine
    assert q["column"].unique().to_list() == ["carrier"]
    assert q["rule"].unique().to_list() == ["not_nullable"]
    assert q["contract"].unique().to_list() == ["flights v2"]
    assert '"carrier":null' in q["row_json"][0]


def test_null_burst_in_key_column_fails_naming_partition_column_and_rule(real_day) -> None:
    burst = set_rows(real_day, "carrier", None, rows=real_day.height // 5)
    with pytest.raises(ContractViolation) as failure:
        validate(burst)
    message = str(failure.value)
    assert "data contract flights v2 violated; partition 2013-02-01:" in message
    assert "over max_reject_fraction 5.0%: column 'carrier' rule not_nullable" in message
    assert failure.value.outcome is not None
    assert failure.value.outcome.counts(DAY)["rows_quarantined"] == real_day.height // 5
