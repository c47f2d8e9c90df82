"""What a step reads from the lake and what it hands back to be written: plain values.

`DeltaInput` is an upstream table as read (data pinned to a Delta version, plus the stored
data versions that cache keys and lineage are built from); `LakeOutput` is what a step
decided to write. The IO manager (`defs/io_manager.py`) builds the one and commits the
other; stage functions (`trainflow.stages`) take and return them without Dagster.
"""

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from trainflow.cache import (
    BOOKKEEPING_COLUMNS,
    CACHE_KEY_COLUMN,
    CODE_VERSION_COLUMN,
    CODE_VERSION_COMMIT_KEY,
    CONTENT_HASH_COLUMN,
    UPSTREAM_VERSION_COLUMN,
    stable_hash,
    stored_per_day,
)
from trainflow.lake.delta_lake import DayWindow, DeltaLake, WriteResult
from trainflow.lake.spool import Spool


@dataclass(frozen=True)
class DeltaInput:
    """An upstream table as read: data, Delta version, and the stored data versions (cache
    keys) and content hashes, per day for a daily table.

    The data is read when `frame` is first used: a step whose every output is a cache hit
    decides from the bookkeeping columns alone and never loads the rows.
    """

    lazy: pl.LazyFrame  # the data columns, pinned to `version`
    table: str
    version: int
    day_versions: dict[dt.date, str] = field(default_factory=dict)
    day_content_hashes: dict[dt.date, str] = field(default_factory=dict)
    day_code_versions: dict[dt.date, str] = field(default_factory=dict)
    day_upstream_versions: dict[dt.date, int] = field(default_factory=dict)
    table_data_version: str | None = None
    table_content_hash: str | None = None

    day_rows: dict[dt.date, int] = field(default_factory=dict)

    @cached_property
    def frame(self) -> pl.DataFrame:
        return self.lazy.collect()

    def days(self, days: list[dt.date]) -> pl.DataFrame:
        """The rows of some days only (what a step reads one chunk at a time)."""
        return self.lazy.filter(pl.col("day").is_in(days)).collect()

    def between(self, first: dt.date, last: dt.date) -> pl.DataFrame:
        """The rows of the days from `first` to `last` (a chunk with its look-back)."""
        return self.lazy.filter(pl.col("day").is_between(first, last)).collect()

    @property
    def data_version(self) -> str:
        """One version for everything read: the table's, or a hash of the days' versions."""
        if self.table_data_version is not None:
            return self.table_data_version
        return stable_hash({d.isoformat(): v for d, v in sorted(self.day_versions.items())})


@dataclass(frozen=True)
class LakeOutput:
    """What an asset hands the IO manager when it decided hits and misses itself.

    `frame` None: the stored table is reused unchanged (unpartitioned cache hit).
    `days`: for a daily asset, the days `frame` replaces; the window's other days stay.
    `commit_metadata`: stored with the Delta commit (lineage that must travel with data).
    `column_descriptions`: column -> what it means, for the UI's column schema (the feature
    tables' come from features/catalog.py, which this module must not import: every asset
    imports it, so its code version would cover the catalog).
    """

    frame: pl.DataFrame | Spool | None
    days: list[dt.date] | None = None
    commit_metadata: dict[str, str] = field(default_factory=dict)
    column_descriptions: dict[str, str] = field(default_factory=dict)


def without_bookkeeping_columns(lazy: pl.LazyFrame) -> pl.LazyFrame:
    """The data columns only: bookkeeping is never part of the data a step sees."""
    return lazy.select([c for c in lazy.collect_schema().names() if c not in BOOKKEEPING_COLUMNS])


def pinned_scan(
    lake: DeltaLake, table: str, window: DayWindow | None, experiment: str | None = None
) -> tuple[pl.LazyFrame, int]:
    """A scan of a window of a daily table, a whole table, or one experiment's rows of a
    training-side table, pinned to a Delta version so that the data and the version recorded
    for it agree even if another run commits meanwhile (for an experiment, the version of the
    commit that wrote its rows: the one whose metadata holds its lineage). Raises
    FileNotFoundError when there is nothing to read."""
    version = (
        lake.version(table) if experiment is None else lake.experiment_version(table, experiment)
    )
    if version is None:
        scope = "" if experiment is None else f" for experiment {experiment!r}"
        raise FileNotFoundError(
            f"{table} has no Delta table{scope} yet at {lake.table_uri(table)}: materialize it first"
        )
    return lake.scan(table, window, version=version, experiment=experiment), version


def read_input(lazy: pl.LazyFrame, table: str, version: int, *, daily: bool) -> DeltaInput:
    """A table's scan (pinned to `version`) as a step's input, with its stored versions.

    Only the bookkeeping columns are read now (a few small, dictionary-encoded columns):
    one row per day and bookkeeping value with its row count, aggregated while streaming:
    a year at scale is 34M rows of 64-character keys otherwise.
    """
    columns = lazy.collect_schema().names()
    kept = [c for c in ("day", *BOOKKEEPING_COLUMNS) if c in columns]
    frame = lazy.group_by(kept).len().collect(engine="streaming") if kept else pl.DataFrame()
    table_version = table_hash = None
    if not daily and CACHE_KEY_COLUMN in columns and frame.height:
        table_version = str(frame[CACHE_KEY_COLUMN][0])
        table_hash = str(frame[CONTENT_HASH_COLUMN][0])
    return DeltaInput(
        lazy=without_bookkeeping_columns(lazy),
        table=table,
        version=version,
        day_versions=stored_per_day(frame, CACHE_KEY_COLUMN) if daily else {},
        day_content_hashes=stored_per_day(frame, CONTENT_HASH_COLUMN) if daily else {},
        day_code_versions=stored_per_day(frame, CODE_VERSION_COLUMN) if daily else {},
        day_upstream_versions=stored_per_day(frame, UPSTREAM_VERSION_COLUMN) if daily else {},
        day_rows=dict(frame.group_by("day").agg(pl.col("len").sum()).iter_rows()) if daily else {},
        table_data_version=table_version,
        table_content_hash=table_hash,
    )


def commit_output(
    lake: DeltaLake,
    table: str,
    output: LakeOutput,
    window: DayWindow | None,
    code_version: str | None,
    experiment: str | None = None,
) -> WriteResult | None:
    """Write what a step decided in one atomic Delta commit stamped with its code version
    (of one experiment's rows where `experiment` names one); None when there is nothing to
    write (a hit, or no day recomputed)."""
    if output.frame is None or output.days == []:
        return None
    stamp = {CODE_VERSION_COMMIT_KEY: code_version} if code_version else {}
    try:
        return lake.write(
            table,
            output.frame,
            window,
            days=output.days,
            commit_metadata={**stamp, **output.commit_metadata},
            experiment=experiment,
        )
    finally:
        if isinstance(output.frame, Spool):
            output.frame.remove()
