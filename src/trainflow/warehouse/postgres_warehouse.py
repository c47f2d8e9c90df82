"""The production warehouse: a PostgreSQL database (the `prod` profile).

The location is a URL without a password (`postgresql://USER@HOST:PORT/DB`); libpq reads the
password from PGPASSWORD (or PGPASSFILE) itself, so it never enters trainflow's settings,
resource config, logs or metadata. dbt reads the same variable through its profile.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl
import psycopg2
import psycopg2.extensions

from trainflow.credentials import (
    WAREHOUSE,
    CredentialsRefusedError,
    postgres_login_refused,
    postgres_reason,
)
from trainflow.warehouse.base import MODEL_SCHEMA, WarehouseUnavailableError

# Seconds to wait for a connection: a server that stops answering fails the step (and
# reaches the retry policy) instead of hanging it. `?connect_timeout=N` in the URL overrides.
DEFAULT_CONNECT_TIMEOUT = 10

# PostgreSQL type OIDs -> the polars types DuckDB returns for the same dbt model, so both
# warehouses hand the data contract identical schemas.
_POLARS_TYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    700: pl.Float32(),
    701: pl.Float64(),
    1700: pl.Float64(),
    18: pl.String(),
    19: pl.String(),
    25: pl.String(),
    1043: pl.String(),
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
}
_POSTGRES_TYPES = {
    pl.Boolean: "boolean",
    pl.Int16: "smallint",
    pl.Int32: "integer",
    pl.Int64: "bigint",
    pl.Float32: "real",
    pl.Float64: "double precision",
    pl.String: "text",
    pl.Date: "date",
    pl.Datetime: "timestamp",
}
_NULL = r"\N"  # COPY's null marker: an empty string stays an empty string


def _sql(statement: str) -> str:
    """trainflow's `?` placeholders in psycopg2's spelling."""
    return statement.replace("%", "%%").replace("?", "%s")


def _column_type(name: str, dtype: pl.DataType) -> str:
    for polars_type, postgres_type in _POSTGRES_TYPES.items():
        if isinstance(dtype, polars_type):
            return postgres_type
    raise TypeError(f"column {name!r}: no PostgreSQL type for polars {dtype}")


@dataclass(frozen=True)
class PostgresWriter:
    cursor: psycopg2.extensions.cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.cursor.execute(_sql(sql), list(params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.cursor.execute(_sql(sql), list(params))
        row = self.cursor.fetchone()
        return row[0] if row else None

    def _create(self, table: str, frame: pl.DataFrame) -> None:
        columns = ", ".join(f'"{name}" {_column_type(name, t)}' for name, t in frame.schema.items())
        self.cursor.execute(f"create table if not exists {table} ({columns})")

    def _copy(self, table: str, frame: pl.DataFrame) -> None:
        """Bulk insert through COPY (one round trip, not one INSERT per row)."""
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, null_value=_NULL, quote_style="necessary")
        buffer.seek(0)
        columns = ", ".join(f'"{name}"' for name in frame.columns)
        self.cursor.copy_expert(
            f"copy {table} ({columns}) from stdin with (format csv, null '{_NULL}')", buffer
        )

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        self.cursor.execute(f"drop table if exists {table}")
        self._create(table, frame)
        self._copy(table, frame)

    def append(self, table: str, frame: pl.DataFrame) -> None:
        self._create(table, frame)
        self._copy(table, frame)

    def delete_days(self, table: str, date_column: str, days: Sequence[dt.date]) -> None:
        if days:
            self.cursor.execute(f"delete from {table} where {date_column} = any(%s)", [list(days)])


@dataclass(frozen=True)
class PostgresWarehouse:
    url: str
    kind: str = "postgres"

    def describe(self) -> str:
        return self.url  # settings refuse a URL that holds a password

    @property
    def _parts(self) -> dict[str, Any]:
        parts = urlsplit(self.url)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return {
            "host": parts.hostname or "localhost",
            "port": parts.port or 5432,
            "user": parts.username or "postgres",
            "dbname": parts.path.lstrip("/"),
            "connect_timeout": int(query.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
            "sslmode": query.get("sslmode"),
        }

    def _connect(self) -> psycopg2.extensions.connection:
        parts = {k: v for k, v in self._parts.items() if v is not None}
        try:
            return psycopg2.connect(application_name="trainflow", **parts)
        except psycopg2.OperationalError as exc:
            if postgres_login_refused(exc):  # a wrong password is no outage: never retried
                raise CredentialsRefusedError(
                    WAREHOUSE, postgres_reason(exc), where=self.describe()
                ) from exc
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WarehouseUnavailableError(
                f"warehouse {self.describe()} is unreachable: {reason}"
            ) from exc

    def is_initialised(self) -> bool:
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute("select count(*) from pg_namespace where nspname = 'raw'")
                row = cursor.fetchone()
            return bool(row and row[0])
        finally:
            conn.close()

    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        conn = self._connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(_sql(sql), list(params))
                rows = cursor.fetchall()
                description = cursor.description or []
        except psycopg2.OperationalError as exc:  # the connection dropped mid-query
            raise WarehouseUnavailableError(
                f"warehouse {self.describe()} failed during a read: {str(exc).strip()}"
            ) from exc
        finally:
            conn.close()
        schema: dict[str, pl.DataType] = {}
        for column in description:
            if column.type_code not in _POLARS_TYPES:
                raise TypeError(
                    f"warehouse column {column.name!r}: PostgreSQL type oid {column.type_code} "
                    "has no polars mapping in trainflow"
                )
            schema[column.name] = _POLARS_TYPES[column.type_code]
        return pl.DataFrame(rows, schema=schema, orient="row")

    @contextmanager
    def transaction(self) -> Iterator[PostgresWriter]:
        conn = self._connect()
        try:
            with conn, conn.cursor() as cursor:  # commits on success, rolls back on error
                yield PostgresWriter(cursor)
        finally:
            conn.close()

    def dbt_target(self) -> dict[str, Any]:
        parts = self._parts
        target = {
            "type": "postgres",
            "host": parts["host"],
            "port": parts["port"],
            "user": parts["user"],
            "dbname": parts["dbname"],
            "schema": MODEL_SCHEMA,
            "threads": 1,
            "connect_timeout": parts["connect_timeout"],
            # dbt, like libpq, takes the password from the environment when it connects;
            # the rendered profile holds only this reference.
            "password": "{{ env_var('PGPASSWORD', '') }}",
        }
        if parts["sslmode"]:
            target["sslmode"] = parts["sslmode"]
        return target
