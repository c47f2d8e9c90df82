"""The local warehouse: one DuckDB file (the `local` profile's default)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from trainflow.warehouse.base import WarehouseUnavailableError

# How long a writer waits for other processes' readers to let go of the file.
WRITER_WAIT_SECONDS = 30


@dataclass(frozen=True)
class DuckDBWriter:
    conn: duckdb.DuckDBPyConnection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, list(params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.conn.execute(sql, list(params)).fetchall()  # fetchall completes the result
        return rows[0][0] if rows else None

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        self.conn.register("incoming", frame.to_arrow())
        self.conn.execute(f"create or replace table {table} as select * from incoming")
        self.conn.unregister("incoming")

    def append(self, table: str, frame: pl.DataFrame) -> None:
        self.conn.register("incoming", frame.to_arrow())
        self.conn.execute(f"create table if not exists {table} as select * from incoming limit 0")
        self.conn.execute(f"insert into {table} by name select * from incoming")
        self.conn.unregister("incoming")

    def delete_days(self, table: str, date_column: str, days: Sequence[dt.date]) -> None:
        if days:
            self.conn.execute(
                f"delete from {table} where {date_column} in (select unnest(?::date[]))",
                [list(days)],
            )


@dataclass(frozen=True)
class DuckDBWarehouse:
    path: Path
    kind: str = "duckdb"

    def describe(self) -> str:
        return str(self.path)

    def is_initialised(self) -> bool:
        return self.path.exists()

    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        if not self.path.exists():
            raise FileNotFoundError(
                f"warehouse {self.path} does not exist: run `trainflow land` first"
            )
        # read_only: any number of readers; the dbt step and landing are the writers.
        try:
            conn = duckdb.connect(str(self.path), read_only=True)
        except duckdb.IOException as exc:
            # DuckDB locks the whole file while a writer (landing, dbt) holds it: transient.
            raise WarehouseUnavailableError(f"warehouse {self.path} is locked: {exc}") from exc
        with conn:
            table = conn.sql(sql, params=list(params)).to_arrow_table()
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame

    @contextmanager
    def transaction(self) -> Iterator[DuckDBWriter]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._writer_connection() as conn:
            conn.execute("begin transaction")
            try:
                yield DuckDBWriter(conn)
                conn.execute("commit")
            except BaseException:
                conn.execute("rollback")
                raise

    def _writer_connection(self) -> duckdb.DuckDBPyConnection:
        """A read-write connection, waiting out readers of other processes (the sensor's
        tick, a snapshot's read) that hold the file for a moment; locked for longer than
        WRITER_WAIT_SECONDS -> WarehouseUnavailableError."""
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if time.monotonic() > deadline:
                    raise WarehouseUnavailableError(
                        f"warehouse {self.path} stayed locked for {WRITER_WAIT_SECONDS} s: {exc}"
                    ) from exc
                time.sleep(0.2)

    def dbt_target(self) -> dict[str, Any]:
        return {"type": "duckdb", "path": str(self.path), "threads": 1}
