"""A run's as-of day: the day a rolling config's windows end at (docs/continuous-training.md).

Resolved once per run, by the step that builds the training dataset, from the data and never
from the wall clock: the day the run names in its `trainflow/as_of` tag, else the newest day
whose features exist. The model and the report read it back from the dataset they train and
score on, so one run cannot mix two as-of days even if a day lands while it runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

# The run tag that names (or, once resolved, records) a run's as-of day.
AS_OF_TAG = "trainflow/as_of"


class AsOfError(ValueError):
    """The as-of day cannot be resolved from what the lake holds."""


def resolve_as_of(named: str | None, feature_days: Iterable[dt.date]) -> dt.date:
    """The day the run names, which must have features, else the newest feature day."""
    days = sorted(feature_days)
    if not days:
        raise AsOfError("no flight_features partition exists: there is no as-of day to train at")
    if named is None:
        return days[-1]
    try:
        day = dt.date.fromisoformat(named)
    except ValueError as exc:
        raise AsOfError(f"run tag {AS_OF_TAG}={named!r} is not a date (YYYY-MM-DD)") from exc
    if day not in set(days):
        raise AsOfError(
            f"run tag {AS_OF_TAG}={named}: no flight_features partition for that day "
            f"(features exist {days[0]}..{days[-1]})"
        )
    return day
