"""The reference tables' contracts (weather, planes, airports, airlines) on the real landed
tables: they pass whole, and a broken table fails naming table, column, version and rule."""

import dagster as dg
import duckdb
import polars as pl
import pytest

from trainflow.contracts import ContractViolation, validate_table
from trainflow.defs.resources import ContractsResource, WarehouseResource
from trainflow.defs.warehouse import reference_table_contracts
from trainflow.stages.reference_tables import REFERENCE_TABLES, check_reference_tables

CONTRACTS = ContractsResource()


@pytest.fixture(scope="module")
def tables(built_warehouse) -> dict[str, pl.DataFrame]:
    warehouse = WarehouseResource(url=str(built_warehouse))
    return {table: warehouse.read_model(f"stg_{table}") for table in REFERENCE_TABLES}


def test_every_real_reference_table_meets_its_contract(built_warehouse, tables) -> None:
    outcomes = check_reference_tables(
        WarehouseResource(url=str(built_warehouse)).models(), CONTRACTS.reference_contracts()
    )
    assert set(outcomes) == {"weather", "planes", "airports", "airlines"}
    for table, report in outcomes.items():
        assert not isinstance(report, ContractViolation), report
        assert report.rows == tables[table].height > 0
        assert report.rejected_rows == 0


def test_duplicate_weather_hour_names_the_composite_key(tables) -> None:
    weather = tables["weather"]
    doubled = pl.concat([weather, weather.head(1)])
    origin, hour = weather.row(0)[:2]
    with pytest.raises(ContractViolation) as failure:
        validate_table(doubled, CONTRACTS.load("weather"))
    assert str(failure.value) == (
        f"table weather violates data contract weather v2: 2 of {doubled.height} rows "
        f"({2 / doubled.height:.2%}) "
        "break a rule, over max_reject_fraction 0.0%: column 'origin, hour_utc' rule "
        f"multiple_fields_uniqueness (2 rows, e.g. observed '{origin}, {hour}')"
    )


def test_retyped_and_out_of_range_reference_columns_fail(tables) -> None:
    planes = tables["planes"].with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(-1).otherwise(pl.col("seats")).alias("seats")
    )
    with pytest.raises(ContractViolation) as failure:
        validate_table(planes, CONTRACTS.load("planes"))
    assert "3 of 3322 rows (0.09%) break a rule" in str(failure.value)
    assert "column 'seats' rule greater_than_or_equal_to(1.0) (3 rows, e.g. observed '-1')" in str(
        failure.value
    )
    airlines = tables["airlines"].with_columns(pl.col("carrier").cast(pl.Categorical))
    with pytest.raises(ContractViolation) as failure:
        validate_table(airlines, CONTRACTS.load("airlines"))
    assert str(failure.value) == (
        "table airlines violates data contract airlines v1: column 'carrier' has "
        "type Categorical, the contract requires String (rule: type)"
    )


def run_checks(warehouse, succeeds: bool = True) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [reference_table_contracts],
        selection=dg.AssetSelection.all_asset_checks(),
        resources={"warehouse": WarehouseResource(url=str(warehouse)), "contracts": CONTRACTS},
        raise_on_error=False,
    )
    assert result.success is succeeds  # a failed blocking check fails its step
    return {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
    }


def test_checks_show_each_expectation_with_its_observed_value_and_fail_a_broken_one(
    built_warehouse, warehouse_copy, tables
) -> None:
    passed = run_checks(built_warehouse)
    names = ("schema", "min_rows", "max_reject_fraction")
    assert {k: e.passed for k, e in passed.items()} == {
        (f"stg_{table}", name): True for table in REFERENCE_TABLES for name in names
    }
    observed = {k: v.value for k, v in passed[("stg_weather", "min_rows")].metadata.items()}
    assert observed == {"rows": tables["weather"].height, "limit": 1}
    assert passed[("stg_weather", "schema")].metadata["contract"].value == "weather v2"
    assert passed[("stg_planes", "max_reject_fraction")].metadata["rejected_rows"].value == 0

    with duckdb.connect(str(warehouse_copy)) as conn:
        conn.execute("update raw.airports set lat = 123.0 where faa = 'JFK'")
        # A value the staging view cannot cast: named, never a conversion error of the read.
        conn.execute("alter table raw.airports alter alt type varchar")
        conn.execute("update raw.airports set alt = '13 ft' where faa = 'LGA'")
        conn.execute("create or replace view main.stg_airlines as select carrier from raw.airlines")
    failed = run_checks(warehouse_copy, succeeds=False)
    # Schema drift: the first expectation fails, the later ones are not evaluated.
    assert {n for t, n in failed if t == "stg_airlines"} == {"schema"}
    assert "column 'airline_name' is missing (rule: required column)" in str(
        failed[("stg_airlines", "schema")].metadata["violation"].value
    )
    airports = {name: failed[("stg_airports", name)].passed for name in names}
    assert airports == {"schema": True, "min_rows": True, "max_reject_fraction": False}
    rejects = failed[("stg_airports", "max_reject_fraction")]
    assert rejects.severity == dg.AssetCheckSeverity.ERROR
    assert rejects.metadata["violation"].value == (
        "table airports violates data contract airports v2: 2 of 1458 rows (0.14%) break a "
        "rule, over max_reject_fraction 0.0%: column 'altitude_ft' rule castable_to(Int32) "
        "(1 rows, e.g. observed '13 ft'), column 'lat' rule less_than_or_equal_to(90.0) "
        "(1 rows, e.g. observed '123.0')"
    )
    assert failed[("stg_planes", "max_reject_fraction")].passed
