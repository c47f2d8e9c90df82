"""Storage layout of the lake: one Delta table per asset at `<lake root>/<asset name>`.

Daily tables are partitioned by a `day` date column, so any Delta reader (polars,
deltalake, Spark, DuckDB) can open them without trainflow (DESIGN.md §7).

Why not dagster-deltalake(-polars): its IO manager reads and writes only the first day of a
time window, and trainflow's assets read 28-day windows and write multi-day ranges in one
step. The rules here are few: a write replaces exactly the days of its window in one Delta
commit (atomic: a reader sees the old days or the new ones, never half), and refuses rows
outside that window, so a bug cannot overwrite neighbouring partitions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

PARTITION_COLUMN = "day"


class LakeError(RuntimeError):
    """A lake read or write that cannot be done as asked."""


@dataclass(frozen=True)
class DayWindow:
    """Inclusive range of days, the unit a daily asset reads or writes."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"day window ends ({self.last}) before it starts ({self.first})")

    @property
    def n_days(self) -> int:
        return (self.last - self.first).days + 1

    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range(self.n_days)]

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"


@dataclass(frozen=True)
class WriteResult:
    table_uri: str
    version: int
    rows: int


@dataclass(frozen=True)
class DeltaLake:
    """A lake root (local folder or `s3://bucket/prefix`) plus object-store options."""

    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict)

    def table_uri(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{table}"

    def _options(self) -> dict[str, str] | None:
        return dict(self.storage_options) or None

    def version(self, table: str) -> int | None:
        """Current Delta version of a table, None when it does not exist yet."""
        try:
            return DeltaTable(self.table_uri(table), storage_options=self._options()).version()
        except TableNotFoundError:
            return None

    def write(self, table: str, frame: pl.DataFrame, window: DayWindow | None) -> WriteResult:
        """Replace the window's days (or the whole table when `window` is None) in one commit."""
        uri = self.table_uri(table)
        if window is None:
            write_deltalake(
                uri,
                frame.to_arrow(),
                mode="overwrite",
                schema_mode="overwrite",
                storage_options=self._options(),
            )
        else:
            _check_rows_in_window(table, frame, window)
            predicate = (
                f"{PARTITION_COLUMN} >= '{window.first.isoformat()}' AND "
                f"{PARTITION_COLUMN} <= '{window.last.isoformat()}'"
            )
            exists = self.version(table) is not None
            write_deltalake(
                uri,
                frame.to_arrow(),
                mode="overwrite",
                partition_by=[PARTITION_COLUMN],
                predicate=predicate if exists else None,
                storage_options=self._options(),
            )
        version = self.version(table)
        assert version is not None
        return WriteResult(table_uri=uri, version=version, rows=frame.height)

    def scan(
        self, table: str, window: DayWindow | None = None, version: int | None = None
    ) -> pl.LazyFrame:
        """Lazy read of a table (optionally at a Delta version), filtered to a window."""
        uri = self.table_uri(table)
        try:
            lazy = pl.scan_delta(uri, version=version, storage_options=self._options())
        except TableNotFoundError as exc:
            raise LakeError(f"lake table {table!r} does not exist at {uri}") from exc
        if window is not None:
            lazy = lazy.filter(pl.col(PARTITION_COLUMN).is_between(window.first, window.last))
        return lazy

    def read(
        self, table: str, window: DayWindow | None = None, version: int | None = None
    ) -> pl.DataFrame:
        return self.scan(table, window, version).collect()


def _check_rows_in_window(table: str, frame: pl.DataFrame, window: DayWindow) -> None:
    if PARTITION_COLUMN not in frame.columns:
        raise LakeError(f"{table}: a daily table needs a {PARTITION_COLUMN!r} date column")
    outside = frame.filter(~pl.col(PARTITION_COLUMN).is_between(window.first, window.last))
    if outside.height:
        days = sorted(set(outside[PARTITION_COLUMN].to_list()))[:5]
        raise LakeError(
            f"{table}: refusing to write {outside.height} rows outside partition window "
            f"{window} (e.g. days {', '.join(map(str, days))})"
        )
