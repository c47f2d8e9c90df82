"""Land the nycflights13 tables into the warehouse's `raw` schema, flights one day at a time.

Production warehouses receive a new partition per day; landing the demo data the same way
gives the pipeline (and later the sensor) real new days to find. Landing is idempotent: a
day's rows are deleted and re-inserted in one transaction, so landing a day twice never
duplicates rows and a reader never sees half a day.

Every landing also appends to `raw.landings` (day, batch, newest day landed before the
batch): the warehouse's own record of landing order, from which the data contract measures
how late a day arrived, without reading the wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from trainflow.sources import nycflights13
from trainflow.warehouse.base import Warehouse, WarehouseWriter, table_exists, warehouse_at

FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)
DIMENSION_TABLES = ("planes", "airports", "airlines")


class LandingError(ValueError):
    """A landing request names days outside the data or is contradictory."""


@dataclass(frozen=True)
class LandingReport:
    days: list[dt.date]
    flights_rows: int
    weather_rows: int
    dimension_rows: dict[str, int]


def landed_days(warehouse: Warehouse | Path | str) -> list[dt.date]:
    """Days present in raw.flights, in order; empty when nothing was landed yet."""
    wh = _as_warehouse(warehouse)
    if not wh.is_initialised():
        return []
    exists = wh.read(
        "select count(*) as n from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'flights'"
    )
    if not exists["n"][0]:
        return []
    days = wh.read("select distinct flight_date from raw.flights order by 1")
    return list(days["flight_date"])


def _as_warehouse(warehouse: Warehouse | Path | str) -> Warehouse:
    """A Warehouse, or the location of one (a DuckDB path or a PostgreSQL URL)."""
    return warehouse_at(warehouse) if isinstance(warehouse, Path | str) else warehouse


def plan_days(
    already_landed: Sequence[dt.date],
    *,
    through: dt.date | None = None,
    days: int | None = None,
    explicit: Iterable[dt.date] = (),
) -> list[dt.date]:
    """Which days a `trainflow land` call lands.

    `through` lands every day up to and including it that is not landed yet; `days` lands
    the next N days after the last landed one; `explicit` days are (re-)landed as given.
    """
    chosen = set(explicit)
    landed = set(already_landed)
    if through is not None and days is not None:
        raise LandingError("give either --through or --days, not both")
    if through is not None:
        _check_in_range(through)
        span = (through - FIRST_DAY).days + 1
        chosen |= {FIRST_DAY + dt.timedelta(i) for i in range(span)} - landed
    if days is not None:
        if days < 1:
            raise LandingError(f"--days must be at least 1, got {days}")
        start = max(landed) + dt.timedelta(1) if landed else FIRST_DAY
        chosen |= {
            start + dt.timedelta(i) for i in range(days) if start + dt.timedelta(i) <= LAST_DAY
        }
    for day in chosen:
        _check_in_range(day)
    return sorted(chosen)


def _check_in_range(day: dt.date) -> None:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise LandingError(f"day {day} is outside the demo data ({FIRST_DAY}..{LAST_DAY})")


def land(warehouse: Warehouse | Path | str, days: Sequence[dt.date]) -> LandingReport:
    """Land the given days of flights and weather, and refresh the small dimension tables,
    in one transaction."""
    wh = _as_warehouse(warehouse)
    day_set = sorted(set(days))
    flights = nycflights13.read_table("flights").filter(pl.col("flight_date").is_in(day_set))
    weather = nycflights13.read_table("weather").filter(pl.col("weather_date").is_in(day_set))
    dimensions = {name: nycflights13.read_table(name) for name in DIMENSION_TABLES}
    with wh.transaction() as tx:
        tx.execute("create schema if not exists raw")
        for name, frame in dimensions.items():
            tx.replace_table(f"raw.{name}", frame)
        _record_landing(tx, day_set)
        _replace_days(tx, "flights", "flight_date", flights, day_set)
        _replace_days(tx, "weather", "weather_date", weather, day_set)
    return LandingReport(
        days=day_set,
        flights_rows=flights.height,
        weather_rows=weather.height,
        dimension_rows={name: frame.height for name, frame in dimensions.items()},
    )


def _replace_days(
    tx: WarehouseWriter,
    table: str,
    date_column: str,
    frame: pl.DataFrame,
    days: Sequence[dt.date],
) -> None:
    if table_exists(tx, "raw", table):
        tx.delete_days(f"raw.{table}", date_column, days)
    tx.append(f"raw.{table}", frame)


def _record_landing(tx: WarehouseWriter, days: Sequence[dt.date]) -> None:
    """Append the batch to raw.landings, before its days are written (so a day is never
    counted as landed before itself)."""
    tx.execute(
        "create table if not exists raw.landings "
        "(day date not null, batch integer not null, newest_day_before date)"
    )
    newest = None
    if table_exists(tx, "raw", "flights"):
        newest = tx.scalar("select max(flight_date) from raw.flights")
    batch = tx.scalar("select coalesce(max(batch), 0) + 1 from raw.landings") or 1
    tx.append(
        "raw.landings",
        pl.DataFrame(
            {
                "day": list(days),
                "batch": [batch] * len(days),
                "newest_day_before": [newest] * len(days),
            },
            schema={"day": pl.Date, "batch": pl.Int32, "newest_day_before": pl.Date},
        ),
    )
