"""The `experiment` partition of the training-side tables: the name rule, what each
experiment's commit records, and finding that commit again (DeltaLake.write / scan).

Every commit that writes an experiment's rows names it, with the columns it wrote: the
experiments of one table may have different columns (each its own features), and a reader
of one sees its columns only, never another's (null for it) after a schema merge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from trainflow.cache import EXPERIMENT_COLUMN

EXPERIMENT_COMMIT_KEY = "trainflow.experiment"
COLUMNS_COMMIT_KEY = "trainflow.columns"
EXPERIMENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # safe in a Delta predicate and path


class ExperimentNameError(ValueError):
    """An experiment name that cannot be a partition value."""


def check_name(name: str) -> None:
    if not re.match(EXPERIMENT_NAME_PATTERN, name):
        raise ExperimentNameError(
            f"experiment name {name!r} must be letters, digits, '.', '_' or '-' "
            "(it is a Delta partition value and a predicate literal)"
        )


def commit_info(experiment: str, frame: pl.DataFrame) -> dict[str, str]:
    """What the commit of an experiment's rows records: the experiment and its columns."""
    check_name(experiment)
    return {EXPERIMENT_COMMIT_KEY: experiment, COLUMNS_COMMIT_KEY: json.dumps(frame.columns)}


def rows_of(experiment: str, frame: pl.DataFrame) -> pl.DataFrame:
    """The rows as stored: with the partition column set to the experiment."""
    own = frame.drop(EXPERIMENT_COLUMN) if EXPERIMENT_COLUMN in frame.columns else frame
    return own.with_columns(pl.lit(experiment).alias(EXPERIMENT_COLUMN))


def predicate(experiment: str) -> str:
    check_name(experiment)
    return f"{EXPERIMENT_COLUMN} = '{experiment}'"


def last_commit_of(
    history: Sequence[Mapping[str, Any]], experiment: str, at: int | None = None
) -> int | None:
    """The version of the newest commit (at or before `at`) that wrote the experiment's
    rows, from a table's history (newest first); None when none did."""
    for entry in history:
        version = entry.get("version")
        if at is not None and version is not None and version > at:
            continue
        if entry.get(EXPERIMENT_COMMIT_KEY) == experiment:
            return None if version is None else int(version)
    return None


def columns_of(commit: Mapping[str, str]) -> list[str]:
    """The columns an experiment's commit wrote."""
    return list(json.loads(commit[COLUMNS_COMMIT_KEY]))
