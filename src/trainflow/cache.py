"""Cache keys: when a stored output may be reused instead of recomputed (docs/architecture.md).

An output's cache key is the hash of
- its asset's code version,
- the hash of the config values that asset uses (not the whole config), and
- the data versions of the exact inputs it read (every upstream partition of its window).

The cache key doubles as the output's data version (a provenance version, as Dagster's
own data versions are): downstream keys are built from upstream keys, so a code-version
change recomputes everything downstream even when the new output happens to be equal.
Beside it each row carries the content hash of its partition (what a manifest records to
detect tampering). Both are columns of the output's own rows, committed in the same atomic
Delta commit as the data: a failed or killed run commits neither, and can never leave a
key that a later run would take as a hit.

Dagster marks assets stale on a code-version change but never skips work by itself, so the
decision is made here, per partition, inside the asset.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from trainflow.manifest import content_hash

CACHE_KEY_COLUMN = "_cache_key"
CONTENT_HASH_COLUMN = "_content_hash"
# Daily tables also record which code version computed each partition, so a reader of a
# window can refuse to mix partitions of old and new logic.
CODE_VERSION_COLUMN = "_code_version"
# ... and the Delta version of the upstream table it was computed from (null for
# raw_snapshot, whose source is the warehouse): the chain `reproduce --from-raw` walks back.
UPSTREAM_VERSION_COLUMN = "_upstream_version"
# Every Delta commit an asset writes carries the asset's code version in its commit info,
# so a whole (unpartitioned) table also says which code wrote it (`trainflow code-versions`).
CODE_VERSION_COMMIT_KEY = "trainflow.code_version"
# validated_flights also keeps each day's profile (contracts/reference.py, JSON) on the
# day's first row (null on the others): what the reference windows of later days read.
PROFILE_COLUMN = "_day_profile"
# The training-side tables hold every experiment's rows side by side, partitioned by this
# column (the experiment config's `name`); a step reads and replaces one experiment's only
# (lake/delta_lake.py). Not part of the data: content hashes are the same as unscoped.
EXPERIMENT_COLUMN = "experiment"
BOOKKEEPING_COLUMNS = (
    CACHE_KEY_COLUMN,
    CONTENT_HASH_COLUMN,
    CODE_VERSION_COLUMN,
    UPSTREAM_VERSION_COLUMN,
    PROFILE_COLUMN,
    EXPERIMENT_COLUMN,
)


def stable_hash(value: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(code_version: str, config_hash: str, input_versions: Mapping[str, Any]) -> str:
    return stable_hash(
        {"code_version": code_version, "config": config_hash, "inputs": dict(input_versions)}
    )


def data_hash(frame: pl.DataFrame) -> str:
    """Content hash of the data itself (bookkeeping columns excluded)."""
    return content_hash(without_bookkeeping(frame))


def without_bookkeeping(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop([c for c in BOOKKEEPING_COLUMNS if c in frame.columns])


def with_bookkeeping(frame: pl.DataFrame, key: str, hashed: str | None = None) -> pl.DataFrame:
    """Stamp a whole (unpartitioned) table with its cache key and content hash."""
    data = without_bookkeeping(frame)
    return data.with_columns(
        pl.lit(key).alias(CACHE_KEY_COLUMN),
        pl.lit(hashed or content_hash(data)).alias(CONTENT_HASH_COLUMN),
    )


def stored_per_day(frame: pl.DataFrame, column: str) -> dict[dt.date, Any]:
    """day -> the (non-null) value of a bookkeeping column, for a daily table as read."""
    if column not in frame.columns:
        return {}
    pairs = frame.select("day", column).unique().drop_nulls().sort("day")
    return dict(pairs.iter_rows())


def stamp_days(
    frame: pl.DataFrame,
    keys: Mapping[dt.date, str],
    code_version: str,
    upstream_version: int | None = None,
) -> pl.DataFrame:
    """Add each day's cache key, content hash (of that day's rows), the code version that
    computed it and the upstream Delta version it was computed from to its rows."""
    by_day = split_days(without_bookkeeping(frame))
    parts = []
    for day in sorted(keys):
        rows = by_day.get(day)
        if rows is None:
            continue
        if "flight_id" in rows.columns:  # a stable row order, so the hash is reproducible
            rows = rows.sort("flight_id")
        stamped = with_bookkeeping(rows, keys[day])
        parts.append(
            stamped.with_columns(
                pl.lit(code_version).alias(CODE_VERSION_COLUMN),
                pl.lit(upstream_version, dtype=pl.Int64).alias(UPSTREAM_VERSION_COLUMN),
            )
        )
    return pl.concat(parts) if parts else frame.head(0)


def stamp_first_row(
    frame: pl.DataFrame, column: str, values: Mapping[dt.date, str]
) -> pl.DataFrame:
    """Put each day's value in `column` on the day's first row (null on the others): one
    value per day at the cost of a null per row."""
    first = pl.int_range(pl.len()).over("day") == 0
    value = pl.col("day").replace_strict(values, default=None, return_dtype=pl.String)
    return frame.with_columns(pl.when(first).then(value).otherwise(None).alias(column))


def day_content_hashes(frame: pl.DataFrame) -> dict[dt.date, str]:
    """day -> content hash of that day's rows, exactly as `stamp_days` records it."""
    found = {}
    for day, rows in split_days(without_bookkeeping(frame)).items():
        if "flight_id" in rows.columns:
            rows = rows.sort("flight_id")
        found[day] = content_hash(rows)
    return found


def split_days(frame: pl.DataFrame) -> dict[dt.date, pl.DataFrame]:
    """One frame per day, in one pass (filtering day by day is quadratic on a year)."""
    return {key[0]: part for key, part in frame.partition_by("day", as_dict=True).items()}


@dataclass(frozen=True)
class CachePlan:
    """Which partitions (days) may reuse their stored output and which must be recomputed."""

    keys: dict[dt.date, str]
    hits: list[dt.date]
    misses: list[dt.date]
    # The keys stored before this run, per day (what is committed now).
    stored: dict[dt.date, str] = field(default_factory=dict)

    @classmethod
    def decide(
        cls,
        wanted: Mapping[dt.date, str],
        stored: Mapping[dt.date, str],
        *,
        force: bool = False,
    ) -> CachePlan:
        hits = [] if force else [d for d in sorted(wanted) if stored.get(d) == wanted[d]]
        misses = [d for d in sorted(wanted) if d not in set(hits)]
        return cls(keys=dict(wanted), hits=hits, misses=misses, stored=dict(stored))


def window_versions(versions: Mapping[dt.date, str], days: Iterable[dt.date]) -> dict[str, str]:
    """The input versions a window-reading partition depends on, keyed by ISO day."""
    return {day.isoformat(): versions[day] for day in days if day in versions}


def stale_code_days(
    code_versions: Mapping[dt.date, str], days: Iterable[dt.date], current: str
) -> dict[dt.date, str]:
    """day -> the other code version that computed it, for the days read that the current
    code did not compute ("unknown" where a partition predates the record)."""
    return {
        day: code_versions.get(day) or "unknown"
        for day in sorted(days)
        if code_versions.get(day) != current
    }
