"""The IO manager: every asset output is a polars frame stored as one Delta table.

It owns the storage layout (via `DeltaLake`); assets never build paths. Daily assets
write exactly their partition window (one day or a backfill range) in one atomic commit,
and read any window of upstream partitions that a partition mapping asks for.
An input annotated `pl.LazyFrame` is a lazy scan (the asset filters before anything is
read); `DeltaInput` also returns the Delta version read, for lineage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from trainflow.defs.partitions import day_window
from trainflow.lake.delta_lake import DayWindow, DeltaLake


@dataclass(frozen=True)
class DeltaInput:
    """An upstream table as read, with the Delta version it was read at."""

    frame: pl.DataFrame
    table: str
    version: int


class DeltaLakeIOManager(dg.ConfigurableIOManager):
    lake_uri: str
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    aws_allow_http: bool = False

    def lake(self) -> DeltaLake:
        options: dict[str, str] = {}
        if self.aws_endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        if self.aws_region:
            options["AWS_REGION"] = self.aws_region
        if self.aws_allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        return DeltaLake(root=self.lake_uri, storage_options=options)

    @staticmethod
    def _table(context: dg.InputContext | dg.OutputContext) -> str:
        return context.asset_key.path[-1]

    @staticmethod
    def _window(context: dg.InputContext | dg.OutputContext) -> DayWindow | None:
        if not context.has_asset_partitions:
            return None
        return day_window(context.asset_partitions_time_window)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "trainflow assets return polars DataFrames"
            )
        table = self._table(context)
        window = self._window(context)
        result = self.lake().write(table, obj, window)
        metadata: dict[str, Any] = {
            "dagster/row_count": result.rows,
            "dagster/uri": result.table_uri,
            "delta_version": result.version,
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, str(dtype)) for name, dtype in obj.schema.items()]
            ),
        }
        if window is not None:
            metadata["partitions_written"] = str(window)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> Any:
        table = self._table(context)
        window = self._window(context)
        lake = self.lake()
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
        wanted = context.dagster_type.typing_type
        if wanted is pl.LazyFrame:
            return lazy
        frame = lazy.collect()
        if wanted is DeltaInput:
            return DeltaInput(frame=frame, table=table, version=version)
        return frame
