"""Big daily writes in bounded memory: compute a chunk of days at a time, commit once.

A daily step over a year at scale (34M rows at `trainflow land --scale 100`) cannot hold
its input and output together, yet its write must stay one atomic Delta commit. So a step
works through its days in chunks of about `chunk_rows` rows (`chunk_days`) and hands each
chunk's output to an `OutputRows`: while the output is one chunk it stays in memory (the
usual case at real scale, and no extra cost); from the second chunk on, every chunk goes
to a local Parquet file, and `DeltaLake.write` commits them in one Delta transaction,
holding one chunk at a time.

Why not polars' streaming engine end to end: the steps' work is not one lazy query (cache
decisions per day, contract checks with quarantine, rolling windows over look-back days),
and deltalake cannot append files to a commit that is still open, hence the local spool.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

# Rows per record batch streamed from the spool into the Delta writer.
STREAM_BATCH_ROWS = 65_536


def chunk_days(
    rows_per_day: Mapping[dt.date, int], days: Sequence[dt.date], chunk_rows: int
) -> list[list[dt.date]]:
    """`days` in order, cut into runs of consecutive days of at most `chunk_rows` rows each
    (a day with more rows than that is a chunk of its own). Days never split: every
    rule of a daily step (contract checks, cache keys, content hashes) is per day."""
    chunks: list[list[dt.date]] = []
    rows = 0
    for day in sorted(days):
        n = rows_per_day.get(day, 0)
        if chunks and rows + n <= chunk_rows:
            chunks[-1].append(day)
            rows += n
        else:
            chunks.append([day])
            rows = n
    return chunks


class Spool:
    """An output's rows as local Parquet files, one per chunk, in a temporary folder that
    is removed when the spool is garbage-collected (or the process exits)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="trainflow-spool-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        self.parts: list[Path] = []
        self.schema: pa.Schema | None = None
        self.rows = 0
        self.days: set[dt.date] = set()

    def add(self, frame: pl.DataFrame) -> None:
        table = frame.to_arrow()
        if self.schema is None:
            self.schema = table.schema
        elif table.schema != self.schema:
            # Same code, same columns; only a column's type may differ (a chunk where it is
            # all null). A real difference fails here, naming the columns.
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, ValueError) as error:
                raise ValueError(
                    f"spooled chunks disagree on their schema: {self.schema} vs {table.schema}"
                ) from error
        path = self.folder / f"part-{len(self.parts):05d}.parquet"
        pq.write_table(table, path)
        self.parts.append(path)
        self.rows += frame.height
        if "day" in frame.columns:
            self.days.update(frame["day"].unique().to_list())

    @property
    def polars_schema(self) -> pl.Schema:
        assert self.schema is not None, "an empty spool has no schema"
        return pl.from_arrow(self.schema.empty_table()).schema  # type: ignore[union-attr]

    def reader(self) -> pa.RecordBatchReader:
        """Every spooled row, streamed in record batches (one batch in memory at a time):
        what `write_deltalake` is given when a write must merge a new column's schema."""
        assert self.schema is not None, "an empty spool has no rows to stream"
        dataset = pads.dataset([str(p) for p in self.parts], schema=self.schema, format="parquet")
        # No read-ahead: by default the scanner reads several files ahead as soon as the
        # reader exists (1.5 GiB of spooled chunks, measured), which is what a spool avoids.
        scanner = dataset.scanner(
            batch_size=STREAM_BATCH_ROWS, batch_readahead=0, fragment_readahead=0
        )
        return scanner.to_reader()

    def remove(self) -> None:
        self._cleanup()


class OutputRows:
    """A daily step's output, added chunk by chunk: one frame while it is one chunk, a
    `Spool` from the second chunk on. `result()` is what the step hands the IO manager."""

    def __init__(self) -> None:
        self._frame: pl.DataFrame | None = None
        self._spool: Spool | None = None
        self.rows = 0

    def add(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        if self._spool is not None:
            if not frame.is_empty():
                self._spool.add(frame)
        elif self._frame is None or self._frame.is_empty():
            self._frame = frame  # an empty first chunk still gives the output its columns
        elif not frame.is_empty():
            self._spool = Spool()
            self._spool.add(self._frame)
            self._spool.add(frame)
            self._frame = None

    def result(self) -> pl.DataFrame | Spool:
        if self._spool is not None:
            return self._spool
        assert self._frame is not None, "no chunk was added"
        return self._frame
