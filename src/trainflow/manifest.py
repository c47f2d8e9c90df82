"""Hashing for lineage: content hashes of frames (the run manifest grows here later)."""

from __future__ import annotations

import hashlib

import polars as pl


def content_hash(frame: pl.DataFrame) -> str:
    """sha256 of the frame's CSV form: independent of Arrow/Parquet encoding details,
    sensitive to every value, column name and row order (callers sort by a stable key)."""
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()
