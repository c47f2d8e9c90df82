"""Stage 1, the raw snapshot: a window of the warehouse's `flights_enriched`, frozen for the lake.

Every later stage reads the snapshot, never the warehouse, so a run can be replayed from
Delta versions even after the warehouse changes. A day whose warehouse rows are unchanged
keeps its snapshot (cache hit); a restated day gets a new one.
"""

from __future__ import annotations

import datetime as dt
import time

import polars as pl

from trainflow.cache import cache_key, split_days, stamp_days
from trainflow.contracts import ROWS_LANDED_RULE, Contract, ContractViolation
from trainflow.lake.delta_lake import DayWindow, DeltaLake
from trainflow.lake.spool import OutputRows, chunk_days
from trainflow.lake.tables import LakeOutput
from trainflow.manifest import content_hash
from trainflow.stages.reference_tables import check_reference_tables
from trainflow.stages.step import Progress, Step, plan_days, report_computed_days
from trainflow.warehouse.models import WarehouseModels

TABLE = "raw_snapshot"


def snapshot_flights(
    step: Step,
    warehouse: WarehouseModels,
    reference_contracts: dict[str, Contract],
    lake: DeltaLake,
    window: DayWindow,
    chunk_rows: int,
) -> LakeOutput:
    """The window's new or restated days of the warehouse's flights, stamped with their
    cache keys (unchanged days are hits and are not rewritten).

    Fails if a day has no rows (saying whether to land it or what removed it), or if a
    reference table every flight joins (weather, planes, airports, airlines) breaks its
    data contract.
    """
    started = time.perf_counter()
    for outcome in check_reference_tables(warehouse, reference_contracts).values():
        if isinstance(outcome, ContractViolation):
            raise outcome
    counts = warehouse.flight_counts(window)
    missing = [day for day in window.days() if day not in counts]
    if missing:
        raise ValueError(no_rows_message(warehouse, window, missing))
    stored = lake.stored_versions(TABLE, window)
    read = Progress(step, "read", window.n_days)
    snapshot = OutputRows()
    misses: list[dt.date] = []
    rows_read = 0
    # One query per chunk (the whole real year is one: per-month reads take 2.5x as long).
    for days in chunk_days(counts, window.days(), chunk_rows):
        frame = warehouse.read_flights(DayWindow(days[0], days[-1]))
        read.advance(len(days), frame.height)
        rows_read += frame.height
        wanted = {
            day: cache_key(step.code_version, "", {"warehouse_rows": content_hash(rows)})
            for day, rows in split_days(frame).items()
        }
        plan = plan_days(step, lake, TABLE, window, wanted, stored)
        stamped = stamp_days(
            frame.filter(pl.col("day").is_in(plan.misses)), plan.keys, step.code_version
        )
        report_computed_days(step, stamped)
        snapshot.add(stamped)
        misses += plan.misses
        del frame, stamped
    step.info(
        f"raw_snapshot: {rows_read} warehouse rows for {window.n_days} day(s) ({window}), "
        f"{snapshot.rows} rows in {len(misses)} new or restated day(s)"
    )
    step.add_output_metadata(
        {"days": window.n_days, "read_seconds": round(time.perf_counter() - started, 3)}
    )
    return LakeOutput(frame=snapshot.result(), days=misses)


def no_rows_message(warehouse: WarehouseModels, window: DayWindow, missing: list[dt.date]) -> str:
    """Why days have no rows: never landed (land them), or landed and gone, which the
    landing log shows, with the likely cause (a neighbour holding more rows than landed)."""
    around = DayWindow(missing[0] - dt.timedelta(days=3), missing[-1] + dt.timedelta(days=3))
    landed, found = warehouse.landed_rows(around), warehouse.flight_counts(around)
    listed = ", ".join(str(day) for day in missing[:10]) + (" ..." if len(missing) > 10 else "")
    message = f"raw_snapshot: no rows in the warehouse for partition(s) {listed}"
    never = [day for day in missing if not landed.get(day)]
    if never:
        message += f"; land them first (trainflow land --through {window.last})"
    surplus = [
        f"{day} holds {found[day]} rows where {landed[day]} were landed"
        for day in sorted(found)
        if day in landed and found[day] > landed[day]
    ]
    cause = (
        f"rows stamped with another date: {', '.join(surplus)}"
        if surplus
        else "a partial load, or rows deleted after landing"
    )
    for day in [day for day in missing if landed.get(day)][:10]:
        message += (
            f"; partition {day}: the landing log records {landed[day]} rows landed, the "
            f"warehouse holds 0 (rule: {ROWS_LANDED_RULE}; likely cause: {cause})"
        )
    return message
