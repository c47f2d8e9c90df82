"""The warehouse's dbt models as the pipeline reads them: a few queries, no Dagster.

Stages (`trainflow.stages`) read the warehouse only through this class; the Dagster
resource (`defs/resources.py`) hands one out for its connection.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from trainflow.lake.delta_lake import DayWindow
from trainflow.warehouse.base import MODEL_SCHEMA, Warehouse
from trainflow.warehouse.landing import landed_days

WAREHOUSE_MODEL = f"{MODEL_SCHEMA}.flights_enriched"


class WarehouseModels:
    """Reads of the models `dbt build` maintains (schema `MODEL_SCHEMA`)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def read_flights(self, window: DayWindow) -> pl.DataFrame:
        """The dbt model's rows for the window, sorted by flight_id (a stable order)."""
        return self.warehouse.read(
            f"select * from {WAREHOUSE_MODEL} where day between ? and ? order by flight_id",
            [window.first, window.last],
        )

    def flight_counts(self, window: DayWindow) -> dict[dt.date, int]:
        """Rows per day of the window in the warehouse (how a step sizes its chunks)."""
        counts = self.warehouse.read(
            f"select day, count(*) as n_rows from {MODEL_SCHEMA}.stg_flights "
            "where day between ? and ? group by day",
            [window.first, window.last],
        )
        return {day: int(n) for day, n in counts.iter_rows()}

    def landed_rows(self, window: DayWindow) -> dict[dt.date, int]:
        """Flight rows the landing log records for each day of the window (its latest
        landing; days whose count predates the log's column are left out)."""
        landed = self.warehouse.read(
            f"select day, landed_rows from {MODEL_SCHEMA}.stg_landings "
            "where day between ? and ? and landed_rows is not null",
            [window.first, window.last],
        )
        return {day: int(n) for day, n in landed.iter_rows()}

    def read_model(self, model: str) -> pl.DataFrame:
        """A whole (small) warehouse model, e.g. a reference table such as `stg_planes`."""
        return self.warehouse.read(f"select * from {MODEL_SCHEMA}.{model}")

    def newest_landed_day(self) -> dt.date | None:
        days = landed_days(self.warehouse)
        return days[-1] if days else None
