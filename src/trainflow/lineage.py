"""Lineage from a model's feature partitions back to the raw snapshots, for its manifest.

Each daily row records the Delta version of the upstream table it was computed from
(`_upstream_version`): a feature day, the validated_flights version its 29-day window was
read at; a validated day, the raw_snapshot version it was validated from. Walking that back
gives, for every partition a model rests on, the exact version to time-travel to and the
content hash to expect, which is what `trainflow reproduce --from-raw` rebuilds and checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainflow.cache import (
    CODE_VERSION_COLUMN,
    CODE_VERSION_COMMIT_KEY,
    CONTENT_HASH_COLUMN,
    EXPERIMENT_COLUMN,
    UPSTREAM_VERSION_COLUMN,
)
from trainflow.lake.delta_lake import DeltaLake


def _bookkeeping_at(lake: DeltaLake, table: str, version: int) -> list[tuple[Any, ...]]:
    """(day, content hash, upstream version) of every partition of `table` at `version`."""
    scan = lake.scan(table, version=version)
    columns = ["day", CONTENT_HASH_COLUMN]
    if UPSTREAM_VERSION_COLUMN in scan.collect_schema().names():
        columns.append(UPSTREAM_VERSION_COLUMN)
    return list(scan.select(columns).unique().collect().iter_rows())


def upstream_lineage(
    lake: DeltaLake, feature_partitions: Mapping[str, Mapping[str, Any]], lookback_days: int
) -> dict[str, Any]:
    """The validated_flights days the feature days read (per version read: content hash
    and the raw_snapshot version each came from) and those raw_snapshot days (per version:
    content hash). Days without a recorded upstream version are listed as `unrecorded`."""
    needed: dict[int, set[dt.date]] = {}
    unrecorded = []
    for day, entry in sorted(feature_partitions.items()):
        version = entry.get("validated_flights_version")
        if version is None:
            unrecorded.append(day)
            continue
        first = dt.date.fromisoformat(day)
        window = {first - dt.timedelta(days=n) for n in range(lookback_days + 1)}
        needed.setdefault(int(version), set()).update(window)
    validated: dict[str, dict[str, Any]] = {}
    raw_needed: dict[int, set[dt.date]] = {}
    for version, days in sorted(needed.items()):
        entries = {}
        for row in _bookkeeping_at(lake, "validated_flights", version):
            day, hashed, raw_version = row[0], row[1], row[2] if len(row) > 2 else None
            if day in days:
                entries[day.isoformat()] = {
                    "content_hash": hashed,
                    "raw_snapshot_version": raw_version,
                }
                if raw_version is not None:
                    raw_needed.setdefault(int(raw_version), set()).add(day)
        validated[str(version)] = dict(sorted(entries.items()))
    raw = {
        str(version): {
            row[0].isoformat(): row[1]
            for row in sorted(_bookkeeping_at(lake, "raw_snapshot", version))
            if row[0] in days
        }
        for version, days in sorted(raw_needed.items())
    }
    return {
        "validated_flights": {"versions": validated},
        "raw_snapshot": {"versions": raw},
        "unrecorded_feature_days": unrecorded,
    }


@dataclass(frozen=True)
class StoredCode:
    """What one code version of an asset left in the lake: the days of a daily table it
    computed (`days` empty for a whole table, written as one)."""

    code_version: str
    days: tuple[dt.date, ...] = ()


def stored_code_versions(lake: DeltaLake, table: str) -> list[StoredCode]:
    """Which code versions computed what is in `table` now: per day for a daily table (its
    `_code_version` column), else the code version stamped on the commit of its current
    Delta version ("unknown" where neither was recorded). Empty for a missing table.

    After a bad pipeline version is rolled back, these are the outputs it left: each is a
    cache miss for the restored code (its key holds the code version), so the next run over
    those days recomputes them, and readers refuse to mix them with the restored ones.
    """
    version = lake.version(table)
    if version is None:
        return []
    scan = lake.scan(table)
    if CODE_VERSION_COLUMN in scan.collect_schema().names():
        pairs = scan.select("day", CODE_VERSION_COLUMN).unique().collect()
        by_version: dict[str, list[dt.date]] = {}
        for day, code in pairs.iter_rows():
            by_version.setdefault(code or "unknown", []).append(day)
        return [StoredCode(code, tuple(sorted(days))) for code, days in sorted(by_version.items())]
    if EXPERIMENT_COLUMN in scan.collect_schema().names():  # per experiment: its last commit
        experiments = scan.select(EXPERIMENT_COLUMN).unique().collect().to_series().to_list()
        written = [lake.experiment_version(table, name) for name in sorted(experiments)]
        version_codes = {
            lake.commit_metadata(table, v).get(CODE_VERSION_COMMIT_KEY, "unknown")
            for v in written
            if v is not None
        }
        return [StoredCode(code) for code in sorted(version_codes)]
    code = lake.commit_metadata(table, version).get(CODE_VERSION_COMMIT_KEY, "unknown")
    return [StoredCode(code)]
