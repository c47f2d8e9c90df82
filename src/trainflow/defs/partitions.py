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


# The training side's dimension: one partition per experiment config, keyed by its `name`.
# Dynamic, not a static list of config files: a key is added when an experiment is
# (`trainflow experiments add FILE`, which stores the config in the lake for every step to
# read) or by a search, for each trial, while the code location runs; a static list would
# need a code-location reload per trial. The code location's own config is added the same
# way (make materialize does it) or by the automation when it requests a retrain.
EXPERIMENTS = "experiments"
experiments = dg.DynamicPartitionsDefinition(name=EXPERIMENTS)


def add_experiment(instance: dg.DagsterInstance, name: str) -> str:
    """Experiment `name` as a key of the instance's `experiments` partitions (added once)."""
    if not instance.has_dynamic_partition(EXPERIMENTS, name):
        instance.add_dynamic_partitions(EXPERIMENTS, [name])
    return name


# Every training-side step reads every landed day it needs from the shared daily tables;
# a day's predictions come from the champion, whichever experiment registered it.
ALL_DAYS = dg.AllPartitionMapping()
ALL_EXPERIMENTS = dg.AllPartitionMapping()
ONE_EXPERIMENT_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
