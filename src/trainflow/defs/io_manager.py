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

from typing import Any

import dagster as dg
import polars as pl

from trainflow.cache import (
    BOOKKEEPING_COLUMNS,
)
from trainflow.defs.partitions import day_window
from trainflow.defs.resources import LakeResource
from trainflow.defs.retries import fail_fast
from trainflow.experiments import EXPERIMENT_TABLES
from trainflow.lake.delta_lake import DayWindow, WriteResult
from trainflow.lake.spool import Spool
from trainflow.lake.tables import (
    DeltaInput,
    LakeOutput,
    commit_output,
    pinned_scan,
    read_input,
    without_bookkeeping_columns,
)


class DeltaLakeIOManager(dg.ConfigurableIOManager):
    lake: LakeResource

    @staticmethod
    def _experiment(context: dg.InputContext | dg.OutputContext, table: str) -> str | None:
        """The experiment partition a training-side table is read or written for (None for
        the daily tables, which every experiment shares)."""
        if table not in EXPERIMENT_TABLES:
            return None
        if not context.has_asset_partitions:
            raise ValueError(
                f"{table} is stored per experiment: name one (an experiments partition)"
            )
        return context.asset_partition_key

    @staticmethod
    def _table(context: dg.InputContext | dg.OutputContext) -> str:
        return context.asset_key.path[-1]

    @staticmethod
    def _window(context: dg.InputContext | dg.OutputContext) -> DayWindow | None:
        if not _is_daily(context):
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
        code_version = context.asset_spec.code_version if context.has_asset_key else None
        result = commit_output(
            lake, table, output, window, code_version, self._experiment(context, table)
        )
        if result is None or output.frame is None:
            context.add_output_metadata(
                {"delta_version": lake.version(table), "dagster/uri": lake.table_uri(table)}
            )
            return
        context.add_output_metadata(_written_metadata(result, output.frame, output, window))

    @fail_fast
    def load_input(self, context: dg.InputContext) -> Any:
        table = self._table(context)
        window = self._window(context)
        lazy, version = pinned_scan(
            self.lake.lake(), table, window, self._experiment(context, table)
        )
        # (add_input_metadata cannot describe a multi-partition input, so this goes to the log.)
        context.log.info(f"reading {table} at Delta version {version}, days {window or 'all'}")
        wanted = context.dagster_type.typing_type
        if wanted is pl.LazyFrame:
            return without_bookkeeping_columns(lazy)
        if wanted is not DeltaInput:
            return without_bookkeeping_columns(lazy).collect()
        return read_input(lazy, table, version, daily=_is_daily(context))


def _is_daily(context: dg.InputContext | dg.OutputContext) -> bool:
    """A daily asset (its partitions are days), not an experiment's or an unpartitioned one."""
    return context.has_asset_partitions and isinstance(
        context.asset_partitions_def, dg.TimeWindowPartitionsDefinition
    )


def _written_metadata(
    result: WriteResult, frame: pl.DataFrame | Spool, output: LakeOutput, window: DayWindow | None
) -> dict[str, Any]:
    """What the UI shows for a commit: where, which version, the columns, the rows written."""
    schema = frame.polars_schema if isinstance(frame, Spool) else frame.schema
    data_columns = {k: v for k, v in schema.items() if k not in BOOKKEEPING_COLUMNS}
    metadata: dict[str, Any] = {
        "dagster/uri": result.table_uri,
        "delta_version": result.version,
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name, str(dtype), description=output.column_descriptions.get(name))
                for name, dtype in data_columns.items()
            ]
        ),
    }
    if window is None:
        metadata["dagster/row_count"] = result.rows
    else:
        metadata["rows_written"] = result.rows
        metadata["partitions_written"] = len(output.days) if output.days else window.n_days
    return metadata
