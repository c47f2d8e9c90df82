"""The daily partitions of the NYC 2013 data; the range ends with the data, not today."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import dagster as dg

from trainflow.lake.delta_lake import DayWindow
from trainflow.sources.nycflights13 import FIRST_DAY, LAST_DAY

daily_2013 = dg.DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(), end_date=(LAST_DAY + dt.timedelta(days=1)).isoformat()
)


def day_window(time_window: dg.TimeWindow) -> DayWindow:
    """Dagster's half-open datetime window as the inclusive day range the lake uses."""
    first = time_window.start.date()
    last = time_window.end.date() - dt.timedelta(days=1)
    return DayWindow(first, max(first, last))


# How Dagster tags a run over daily partitions: a range (`--partition-range`, a single-run
# backfill, the warehouse sensor's runs) or one partition (`--partition`).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"


def run_day_window(tags: Mapping[str, str]) -> DayWindow | None:
    """The days of a run's daily partitions, from its tags; None for a run over no partition
    (or over keys that are not days), which stands for every day."""
    first, last = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if first is None and last is None:
        first = last = tags.get(PARTITION_TAG)
    if first is None or last is None:
        return None
    try:
        return DayWindow(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    except ValueError:
        return None
