"""Cache decisions inside assets: compare wanted keys with stored ones, report per partition.

The keys themselves are `trainflow.cache`; this module only talks to Dagster (run tags,
per-partition metadata, logs) and the lake.
"""

import datetime as dt
from collections.abc import Iterable

import dagster as dg
import polars as pl

from trainflow.cache import CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN, CachePlan, stale_code_days
from trainflow.defs.io_manager import DeltaInput
from trainflow.lake.delta_lake import DayWindow, DeltaLake

FORCE_TAG = "trainflow/force_recompute"


class CachePolicyResource(dg.ConfigurableResource):
    """`force_recompute: true` in run config (or the run tag `trainflow/force_recompute`)
    recomputes every selected asset whatever its cache key."""

    force_recompute: bool = False

    def forced(self, context: dg.AssetExecutionContext) -> bool:
        tagged = context.run.tags.get(FORCE_TAG, "").lower() in {"1", "true", "yes"}
        return self.force_recompute or tagged


def code_version_of(context: dg.AssetExecutionContext) -> str:
    """The running asset's code version as Dagster knows it (what the UI shows)."""
    version = context.assets_def.code_versions_by_key[context.asset_key]
    if version is None:
        raise ValueError(f"{context.asset_key.to_user_string()} has no code_version")
    return version


def refuse_mixed_code(
    context: dg.AssetExecutionContext, upstream: DeltaInput, days: Iterable[dt.date]
) -> None:
    """Fail if any upstream partition read was computed by other code than the upstream
    asset's current version: one output never mixes days of old and new logic.

    A run over part of the range after a code change recomputes only that part; the days
    outside it keep the old logic until they are materialized again, and a window or span
    that reaches them is refused, naming them and the range to materialize.
    """
    graph = context.job_def.asset_layer.asset_graph
    key = dg.AssetKey(upstream.table)
    current = graph.get(key).code_version if graph.has(key) else None
    if current is None:
        return
    stale = stale_code_days(upstream.day_code_versions, days, current)
    if stale:
        days_text = ", ".join(str(d) for d in list(stale)[:5]) + (" ..." if len(stale) > 5 else "")
        older = ", ".join(sorted(set(stale.values())))
        raise ValueError(
            f"{context.asset_key.to_user_string()}: {len(stale)} {upstream.table} "
            f"partition(s) read were computed by other code ({older}) than its current "
            f"version {current}: {days_text}. Materialize {upstream.table} for "
            f"{min(stale)}...{max(stale)} first, so that old and new logic never mix."
        )


def plan_days(
    context: dg.AssetExecutionContext,
    policy: CachePolicyResource,
    lake: DeltaLake,
    table: str,
    window: DayWindow,
    wanted: dict[dt.date, str],
    stored: dict[dt.date | None, tuple[str, str, int]] | None = None,
) -> CachePlan:
    """Hits and misses for each day of `wanted` (the window, or a chunk of it with the
    window's `stored` versions read once); each partition's event says which."""
    if stored is None:
        stored = lake.stored_versions(table, window)
    plan = CachePlan.decide(
        wanted, {day: pair[0] for day, pair in stored.items() if day is not None},
        force=policy.forced(context),
    )  # fmt: skip
    hits = set(plan.hits)
    for day in sorted(wanted):
        report_decision(context, day, wanted[day], day in hits, stored)
    context.log.info(
        f"{table}: {len(plan.hits)} of {len(wanted)} partition(s) reused from cache, "
        f"{len(plan.misses)} to compute"
    )
    return plan


def report_decision(
    context: dg.AssetExecutionContext,
    day: dt.date,
    key: str,
    hit: bool,
    stored: dict[dt.date | None, tuple[str, str, int]],
) -> None:
    """`cache: hit|miss` and the data version on the partition's event (a hit also its
    stored content hash and rows)."""
    metadata: dict[str, str | int] = {"cache": "hit" if hit else "miss", "data_version": key}
    if hit:
        metadata["content_hash"] = stored[day][1]
        metadata["dagster/row_count"] = stored[day][2]
    context.add_asset_metadata(metadata, partition_key=day.isoformat())


def report_computed_days(context: dg.AssetExecutionContext, stamped: pl.DataFrame) -> None:
    """Content hash and row count of each recomputed day, on that partition's event."""
    if stamped.is_empty():
        return
    per_day = stamped.group_by("day", CACHE_KEY_COLUMN, CONTENT_HASH_COLUMN).len()
    for day, key, hashed, rows in per_day.iter_rows():
        context.add_asset_metadata(
            {"data_version": key, "content_hash": hashed, "dagster/row_count": rows},
            partition_key=day.isoformat(),
        )


def table_hit(
    context: dg.AssetExecutionContext,
    policy: CachePolicyResource,
    lake: DeltaLake,
    table: str,
    wanted: str,
) -> bool:
    """Whether an unpartitioned table's stored output has exactly this cache key."""
    stored = lake.stored_versions(table, None).get(None)
    hit = not policy.forced(context) and stored is not None and stored[0] == wanted
    metadata: dict[str, str | int] = {"cache": "hit" if hit else "miss", "data_version": wanted}
    if hit and stored is not None:
        metadata["content_hash"] = stored[1]
        metadata["dagster/row_count"] = stored[2]
    context.add_asset_metadata(metadata)
    context.log.info(f"{table}: cache {'hit, stored output reused' if hit else 'miss'}")
    return hit
