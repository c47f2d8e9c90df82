"""What a stage knows about the run it is part of, and what it reports back, without Dagster.

A stage function (`trainflow.stages.*`) takes a `Step`: the asset it computes, the run, its
code version and the code versions of the assets upstream, whether the run forces a
recompute, and three sinks (log lines, per-partition metadata, output metadata). The
Dagster layer (`defs/step_context.py`) fills one from an asset's context and forwards what
the stage reports to Dagster's log and event metadata; a test or the CLI uses a `Step` as it
is and reads what was recorded. The cache decisions every stage makes (hit or miss per
partition, reported the same way by every asset) live here too, so they work alike in both.

Metadata values are plain Python (numbers, text, JSON-able dicts) or one of the small
markers below (`Json`, `Markdown`, `Link`, `ColumnLineage`, `Table`), which the Dagster
layer turns into Dagster's metadata types in one place (`defs/metadata.py`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from trainflow.cache import CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN, CachePlan, stale_code_days
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.tables import DeltaInput

_log = logging.getLogger("trainflow.stages")

StoredVersions = dict[dt.date | None, tuple[str, str, int]]


@dataclass(frozen=True)
class Json:
    """A JSON document (the UI shows it folded)."""

    value: Any


@dataclass(frozen=True)
class Markdown:
    text: str


@dataclass(frozen=True)
class Link:
    """A file trainflow stored: an S3 object shows as a URL, a local file as a path."""

    uri: str


@dataclass(frozen=True)
class Url:
    url: str


@dataclass(frozen=True)
class ColumnLineage:
    """Output column -> the (asset, column) pairs it is computed from."""

    deps: dict[str, list[tuple[str, str]]]


@dataclass(frozen=True)
class Table:
    """Rows of a small table; `columns` maps each column to its type ("string", "float")."""

    records: list[dict[str, Any]]
    columns: dict[str, str]


@dataclass
class Step:
    """One asset's computation in one run, as a stage function sees it.

    `upstream_code_versions`: the current code version of each upstream asset (what a
    window that reads partitions computed by older code is refused against);
    `code_versions`: every asset's code version in the run (recorded in manifests).
    """

    asset: str
    run_id: str
    code_version: str
    force: bool = False
    job_name: str = ""
    upstream_code_versions: dict[str, str | None] = field(default_factory=dict)
    code_versions: dict[str, str] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)
    partition_metadata: dict[dt.date, dict[str, Any]] = field(default_factory=dict)
    output_metadata: dict[str, Any] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)

    def info(self, message: str) -> None:
        self.logs.append(("info", message))
        _log.info(message)

    def warning(self, message: str) -> None:
        self.logs.append(("warning", message))
        _log.warning(message)

    def add_partition_metadata(self, day: dt.date, metadata: dict[str, Any]) -> None:
        self.partition_metadata.setdefault(day, {}).update(metadata)

    def add_output_metadata(self, metadata: dict[str, Any]) -> None:
        self.output_metadata.update(metadata)

    def tag_run(self, tags: dict[str, str]) -> None:
        """Tags on the run itself (what the UI's run list shows and filters by)."""
        self.run_tags.update(tags)


class Progress:
    """Logs `<step>: <what> 62/365 partitions, 57,312 rows, 120,410 rows/s` per batch.

    A year-long step that works through its days a batch at a time says after each batch how
    far it is; Dagster has no progress event, and a log line is what the UI's run view and
    the terminal both show.
    """

    def __init__(self, step: Step, what: str, total: int) -> None:
        self.step, self.what, self.total = step, what, total
        self.done = 0
        self.rows = 0
        self.started = time.perf_counter()  # wall clock for the rate only, never in data

    def advance(self, partitions: int, rows: int) -> None:
        self.done += partitions
        self.rows += rows
        self.step.info(
            f"{self.step.asset}: {self.what} {self.done}/{self.total} partitions, "
            f"{self.rows:,} rows, {self.rows_per_second:,.0f} rows/s"
        )

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(time.perf_counter() - self.started, 1e-9)


def refuse_mixed_code(step: Step, upstream: DeltaInput, days: Iterable[dt.date]) -> None:
    """Fail if any upstream partition read was computed by other code than the upstream
    asset's current version: one output never mixes days of old and new logic.

    A run over part of the range after a code change recomputes only that part; the days
    outside it keep the old logic until they are materialized again, and a window or span
    that reaches them is refused, naming them and the range to materialize.
    """
    current = step.upstream_code_versions.get(upstream.table)
    if current is None:
        return
    stale = stale_code_days(upstream.day_code_versions, days, current)
    if stale:
        days_text = ", ".join(str(d) for d in list(stale)[:5]) + (" ..." if len(stale) > 5 else "")
        older = ", ".join(sorted(set(stale.values())))
        raise ValueError(
            f"{step.asset}: {len(stale)} {upstream.table} "
            f"partition(s) read were computed by other code ({older}) than its current "
            f"version {current}: {days_text}. Materialize {upstream.table} for "
            f"{min(stale)}...{max(stale)} first, so that old and new logic never mix."
        )


def plan_days(
    step: Step,
    lake: DeltaLake,
    table: str,
    window: DayWindow,
    wanted: dict[dt.date, str],
    stored: StoredVersions | None = None,
) -> CachePlan:
    """Hits and misses for each day of `wanted` (the window, or a chunk of it with the
    window's `stored` versions read once); each partition's event says which."""
    if stored is None:
        stored = lake.stored_versions(table, window)
    plan = CachePlan.decide(
        wanted, {day: pair[0] for day, pair in stored.items() if day is not None},
        force=step.force,
    )  # fmt: skip
    hits = set(plan.hits)
    for day in sorted(wanted):
        report_decision(step, day, wanted[day], day in hits, stored)
    step.info(
        f"{table}: {len(plan.hits)} of {len(wanted)} partition(s) reused from cache, "
        f"{len(plan.misses)} to compute"
    )
    return plan


def report_decision(step: Step, day: dt.date, key: str, hit: bool, stored: StoredVersions) -> None:
    """`cache: hit|miss` and the data version on the partition's event (a hit also its
    stored content hash and rows)."""
    metadata: dict[str, str | int] = {"cache": "hit" if hit else "miss", "data_version": key}
    if hit:
        metadata["content_hash"] = stored[day][1]
        metadata["dagster/row_count"] = stored[day][2]
    step.add_partition_metadata(day, metadata)


def report_computed_days(step: Step, stamped: pl.DataFrame) -> None:
    """Content hash and row count of each recomputed day, on that partition's event."""
    if stamped.is_empty():
        return
    per_day = stamped.group_by("day", CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN).len()
    for day, key, hashed, rows in per_day.iter_rows():
        step.add_partition_metadata(
            day, {"data_version": key, "content_hash": hashed, "dagster/row_count": rows}
        )


def table_hit(step: Step, lake: DeltaLake, table: str, wanted: str, experiment: str) -> bool:
    """Whether an experiment's stored rows of a training-side table have exactly this cache
    key (another experiment's rows never count)."""
    stored = lake.stored_versions(table, None, experiment).get(None)
    hit = not step.force and stored is not None and stored[0] == wanted
    metadata: dict[str, str | int] = {"cache": "hit" if hit else "miss", "data_version": wanted}
    if hit and stored is not None:
        metadata["content_hash"] = stored[1]
        metadata["dagster/row_count"] = stored[2]
    step.add_output_metadata(metadata)
    step.info(f"{table}: cache {'hit, stored output reused' if hit else 'miss'}")
    return hit
