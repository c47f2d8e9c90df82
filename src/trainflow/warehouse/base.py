"""What trainflow asks of a warehouse, whichever kind it is (DuckDB file or PostgreSQL).

Landing, the reads of `raw_snapshot` and the reference-table contracts, and dbt's profile go
through this small interface, so no asset knows which warehouse it talks to. One module per
kind implements it (`duckdb_warehouse.py`, `postgres_warehouse.py`); `factory.warehouse_at`
picks by the location's form. SQL passed to `read` and `execute` uses `?` placeholders and the subset of
SQL both dialects share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import polars as pl

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# The schema dbt builds its models in, in both kinds (DuckDB's default schema).
MODEL_SCHEMA = "main"


class WarehouseUnavailableError(ConnectionError):
    """The warehouse cannot be reached (server down, database gone, network): transient for
    the retry policy; the message names the warehouse (never its password). A refused
    login is `credentials.CredentialsRefusedError` instead: no retry heals it."""


class WarehouseWriter(Protocol):
    """Statements inside one transaction: all of them land, or none."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        """Create or replace `schema.table` with exactly these rows and columns."""
        ...

    def append(self, table: str, frame: pl.DataFrame) -> None:
        """Insert the rows by column name, creating the table from the frame if missing."""
        ...

    def delete_days(self, table: str, date_column: str, days: Sequence[dt.date]) -> None: ...


class Warehouse(Protocol):
    @property
    def kind(self) -> str:
        """ "duckdb" or "postgres": dbt's adapter type and the profile's target name."""
        ...

    def describe(self) -> str:
        """Where the warehouse is, safe to print and log (no password)."""
        ...

    def is_initialised(self) -> bool:
        """Whether anything was ever landed here (a DuckDB file exists, a database has the
        `raw` schema); raises WarehouseUnavailableError when it cannot be asked,
        CredentialsRefusedError when it refuses the login."""
        ...

    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame: ...

    def transaction(self) -> AbstractContextManager[WarehouseWriter]: ...

    def dbt_target(self) -> dict[str, Any]:
        """The dbt profile output for this warehouse (no secret values in it)."""
        ...


def table_exists(tx: WarehouseWriter, schema: str, table: str) -> bool:
    """Whether `schema.table` exists (information_schema: the same in both kinds)."""
    return bool(
        tx.scalar(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, table],
        )
    )


def is_postgres_url(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)
