"""Which warehouse a location names: the one place that knows both implementations.

Apart from `base.py` (the interface both implementations import), so no module imports
an implementation that imports it back.
"""

from __future__ import annotations

from pathlib import Path

from trainflow.warehouse.base import Warehouse, is_postgres_url
from trainflow.warehouse.duckdb_warehouse import DuckDBWarehouse
from trainflow.warehouse.postgres_warehouse import PostgresWarehouse


def warehouse_at(location: str | Path) -> Warehouse:
    """The warehouse at a location: a PostgreSQL URL, or a DuckDB file path."""
    text = str(location)
    if is_postgres_url(text):
        return PostgresWarehouse(text)
    return DuckDBWarehouse(Path(text))
