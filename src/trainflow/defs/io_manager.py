"""The IO manager: every asset output is a polars frame stored as one Delta table.

It owns the storage layout (via `DeltaLake`); assets never build paths. Daily assets
write their partition window (one day or a backfill range) in one atomic commit, and read
any window of upstream partitions that a partition mapping asks for.

Inputs: `pl.DataFrame` is the data; `pl.LazyFrame` a lazy scan (the asset filters before
anything is read); `DeltaInput` also carries the Delta version read and the stored data
versions, which cache keys and lineage are built from. Bookkeeping columns (`_cache_key`,
`_content_hash`) are never part of the data an asset sees.

Outputs: a `pl.DataFrame` replaces the whole window (or table); a `LakeOutput` says which
days were recomputed (cache misses), or that an unpartitioned table is reused as stored;
its rows may be a `Spool` (a big output computed chunk by chunk, `lake/spool.py`), streamed
into the same single commit.

Reads and writes are classified like the assets' own failures (`defs/retries.py`): a
missing table or a schema mismatch fails at once, a store that does not answer is retried.
"""

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dagster as dg
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
from trainflow.defs.partitions import day_window
from trainflow.defs.resources import LakeResource
from trainflow.defs.retries import fail_fast
from trainflow.lake.delta_lake import DayWindow
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


class DeltaLakeIOManager(dg.ConfigurableIOManager):
    lake: LakeResource

    @staticmethod
    def _table(context: dg.InputContext | dg.OutputContext) -> str:
        return context.asset_key.path[-1]

    @staticmethod
    def _window(context: dg.InputContext | dg.OutputContext) -> DayWindow | None:
        if not context.has_asset_partitions:
            return None
        return day_window(context.asset_partitions_time_window)

    @fail_fast
    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | LakeOutput) -> None:
        output = obj if isinstance(obj, LakeOutput) else LakeOutput(frame=obj)
        if output.frame is not None and not isinstance(output.frame, (pl.DataFrame, Spool)):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(output.frame).__name__}; "
                "trainflow assets return polars DataFrames"
            )
        table = self._table(context)
        window = self._window(context)
        lake = self.lake.lake()
        if output.frame is None or output.days == []:
            context.add_output_metadata(
                {"delta_version": lake.version(table), "dagster/uri": lake.table_uri(table)}
            )
            return
        code_version = context.asset_spec.code_version if context.has_asset_key else None
        stamp = {CODE_VERSION_COMMIT_KEY: code_version} if code_version else {}
        try:
            result = lake.write(
                table,
                output.frame,
                window,
                days=output.days,
                commit_metadata={**stamp, **output.commit_metadata},
            )
        finally:
            if isinstance(output.frame, Spool):
                output.frame.remove()
        schema = (
            output.frame.polars_schema if isinstance(output.frame, Spool) else output.frame.schema
        )
        data_columns = {k: v for k, v in schema.items() if k not in BOOKKEEPING_COLUMNS}
        metadata: dict[str, Any] = {
            "dagster/uri": result.table_uri,
            "delta_version": result.version,
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(
                        name,
                        str(dtype),
                        description=output.column_descriptions.get(name),
                    )
                    for name, dtype in data_columns.items()
                ]
            ),
        }
        if window is None:
            metadata["dagster/row_count"] = result.rows
        else:
            metadata["rows_written"] = result.rows
            metadata["partitions_written"] = len(output.days) if output.days else window.n_days
        context.add_output_metadata(metadata)

    @fail_fast
    def load_input(self, context: dg.InputContext) -> Any:
        table = self._table(context)
        window = self._window(context)
        lake = self.lake.lake()
        version = lake.version(table)
        if version is None:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no Delta table yet at "
                f"{lake.table_uri(table)}: materialize it first"
            )
        # Read at a pinned version so the data and the version recorded for it agree
        # even if another run commits to the table meanwhile.
        lazy = lake.scan(table, window, version=version)
        # (add_input_metadata cannot describe a multi-partition input, so this goes to the log.)
        context.log.info(f"reading {table} at Delta version {version}, days {window or 'all'}")
        columns = lazy.collect_schema().names()
        data_columns = [c for c in columns if c not in BOOKKEEPING_COLUMNS]
        wanted = context.dagster_type.typing_type
        if wanted is pl.LazyFrame:
            return lazy.select(data_columns)
        if wanted is not DeltaInput:
            return lazy.select(data_columns).collect()
        # Only the bookkeeping columns now (a few small, dictionary-encoded columns).
        # One row per day and bookkeeping value with its row count, aggregated while
        # streaming: a year at scale is 34M rows of 64-character keys otherwise.
        kept = [c for c in ("day", *BOOKKEEPING_COLUMNS) if c in columns]
        frame = lazy.group_by(kept).len().collect(engine="streaming") if kept else pl.DataFrame()
        daily = context.has_asset_partitions
        table_version = table_hash = None
        if not daily and CACHE_KEY_COLUMN in columns and frame.height:
            table_version = str(frame[CACHE_KEY_COLUMN][0])
            table_hash = str(frame[CONTENT_HASH_COLUMN][0])
        return DeltaInput(
            lazy=lazy.select(data_columns),
            table=table,
            version=version,
            day_versions=stored_per_day(frame, CACHE_KEY_COLUMN) if daily else {},
            day_content_hashes=stored_per_day(frame, CONTENT_HASH_COLUMN) if daily else {},
            day_code_versions=stored_per_day(frame, CODE_VERSION_COLUMN) if daily else {},
            day_upstream_versions=stored_per_day(frame, UPSTREAM_VERSION_COLUMN) if daily else {},
            day_rows=dict(frame.group_by("day").agg(pl.col("len").sum()).iter_rows())
            if daily
            else {},
            table_data_version=table_version,
            table_content_hash=table_hash,
        )


def stored_object_link(uri: str) -> dg.MetadataValue:
    """A file trainflow stored (report, model card, manifest) as the UI should show it: an
    S3 object as a URL, a local file as a path."""
    return dg.MetadataValue.url(uri) if uri.startswith("s3://") else dg.MetadataValue.path(uri)
