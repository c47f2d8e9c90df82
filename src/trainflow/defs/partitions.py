"""The daily partitions of the NYC 2013 data; the range ends with the data, not today."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from trainflow.lake.delta_lake import DayWindow

daily_2013 = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")


def day_window(time_window: dg.TimeWindow) -> DayWindow:
    """Dagster's half-open datetime window as the inclusive day range the lake uses."""
    first = time_window.start.date()
    last = time_window.end.date() - dt.timedelta(days=1)
    return DayWindow(first, max(first, last))
