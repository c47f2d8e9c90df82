"""Hashing for lineage: content hashes of frames (the run manifest grows here later)."""

from __future__ import annotations

import hashlib

import polars as pl


def content_hash(frame: pl.DataFrame) -> str:
    """sha256 of the frame's CSV form: independent of Arrow/Parquet encoding details,
    sensitive to every value, column name and row order (callers sort by a stable key).
    Nested columns (lists, structs) are hashed through their JSON encoding."""
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    flat = frame.with_columns(
        pl.struct(pl.col(name)).struct.json_encode().alias(name) for name in nested
    )
    return hashlib.sha256(flat.write_csv().encode()).hexdigest()
