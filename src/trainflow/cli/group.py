"""The `trainflow` command group and what its commands share."""

from __future__ import annotations

import datetime as dt

import click


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


@click.group()
def main() -> None:
    """trainflow: a Dagster training pipeline on NYC 2013 flights."""


def _checked_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a partition (YYYY-MM-DD)") from exc


LAKE_TABLES = (
    "raw_snapshot",
    "validated_flights",
    "quarantine_flights",
    "flight_features",
    "training_dataset",
    "model",
    "evaluation_report",
    "registry_entry",
)
